"""The evaluation's outputs: the results table (results.md), the pass@k plot, and training curves
from runs' metrics.jsonl (evaluate.py writes them; the figures come from evaluate.summarize).
"""
import json
import math
import os


def write_markdown(results: dict, path: str) -> None:
    ks = results["k"]
    f = lambda x: "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"
    lines = [f"# Evaluation on {results['tasks']['name']} ({results['tasks']['n_tasks']} tasks, "
             f"n = {results['n']} samples each, temperature {results['temperature']}, "
             f"top-p {results['top_p']}, seed {results['seed']})", "",
             "| model | " + " | ".join(f"pass@{k}" for k in ks) +
             " | entropy | distinct correct / task | identifiers | tokens / attempt | truncated |",
             "|---" * (len(ks) + 6) + "|"]
    for m in results["models"]:
        lines.append(f"| {m['model']} | " + " | ".join(f(m["pass_at_k"].get(str(k))) for k in ks) +
                     f" | {f(m['entropy'])} | {f(m['distinct_correct_proofs_per_task'])} | "
                     f"{m['n_distinct_identifiers']} | {m['mean_attempt_tokens']:.1f} | "
                     f"{f(m['fraction_truncated'])} |")
    for m in results["models"]:
        lines += ["", f"## {m['model']}", "", "| level | tasks | " +
                  " | ".join(f"pass@{k}" for k in ks) + " |", "|---" * (len(ks) + 2) + "|"]
        for lv, table in m["per_level"].items():
            lines.append(f"| {lv} | {m['tasks_per_level'][lv]} | " +
                         " | ".join(f(table.get(str(k))) for k in ks) + " |")
        by_turns = m.get("pass_at_k_by_turns", {})
        if len(by_turns) > 1:  # an N-turn attempt cut after b turns is a b-turn attempt
            lines += ["", f"Turn budget (attempts of up to {len(by_turns)} candidates, "
                      f"{m['mean_turns']:.2f} written on average):", "",
                      "| turns | " + " | ".join(f"pass@{k}" for k in ks) + " |", "|---" * (len(ks) + 1) + "|"]
            lines += [f"| {b} | " + " | ".join(f(t.get(str(k))) for k in ks) + " |" for b, t in by_turns.items()]
        idents = ", ".join(f"{name} ({c})" for name, c in m["identifiers_in_correct_proofs"].items())
        words = ", ".join(f"{w} {c}" for w, c in m["epistemic_words"].items() if c) or "none"
        lines += ["", f"- Lean status counts: {m['status_counts']}",
                  f"- identifiers in correct proofs (proofs using them): {idents or 'none'}",
                  f"- epistemic words: {words}"]
    r = results
    lines += ["", "## Reproduce", "", f"- tasks: {r['tasks']['name']} (limit {r['limit'] or 'none'}), "
              f"sha256 {r['tasks']['sha256']}", f"- Lean: {r['lean_version']}",
              f"- versions: {r['versions']}", f"- command: `{r['command']}`", ""]
    with open(path, "w") as fh:
        fh.write("\n".join(lines))


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")           # files only: no display on the training machines
    import matplotlib.pyplot as plt
    return plt


def plot_pass_at_k(results: dict, path: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for m in results["models"]:
        ks = sorted(int(k) for k in m["pass_at_k"])
        label = "/".join(os.path.normpath(m["model"]).split(os.sep)[-2:])   # e.g. fd/final
        ax.plot(ks, [m["pass_at_k"][str(k)] for k in ks], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(results["k"], [str(k) for k in results["k"]])
    ax.set_xlabel("k (samples)")
    ax.set_ylabel("pass@k")
    ax.set_ylim(-0.02, 1.02)        # a line at 0 or 1 stays visible
    ax.grid(alpha=0.3)
    ax.set_title(f"pass@k on {results['tasks']['name']} ({results['tasks']['n_tasks']} tasks, n={results['n']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(run_dirs, path: str, metrics=("loss", "train_acc", "entropy", "heldout_pass1", "kl")) -> None:
    """Training curves from runs' metrics.jsonl: one panel per metric, one line per run."""
    runs = {}
    for d in run_dirs:
        with open(os.path.join(d, "metrics.jsonl")) as fh:
            runs[os.path.basename(os.path.normpath(d))] = [json.loads(line) for line in fh if line.strip()]
    shown = [m for m in metrics if any(m in row for rows in runs.values() for row in rows)]
    plt = _pyplot()
    cols = min(3, len(shown))
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(shown):]:
        ax.set_visible(False)
    for ax, metric in zip(axes.flat, shown):
        for label, rows in runs.items():
            if metric in ("loss", "kl"):   # FD's loss and KL(teacher || student) are not GRPO's clipped objective and
                label = f"{label} ({'GRPO' if 'reward' in rows[-1] else 'FD'})"   # KL(policy || reference)
            pts = [(r["step"], r[metric]) for r in rows if r.get(metric) is not None]
            if pts:         # sparse metrics (held-out pass@1 every few steps) get markers
                sparse = len(pts) < 0.5 * len(rows)
                ax.plot(*zip(*pts), marker="o" if sparse else None, ms=3, label=label)
        ax.set_title({"loss": "loss (FD: top-K KL loss; GRPO: clipped objective)",
                      "kl": "kl (FD: teacher || student; GRPO: policy || reference)"}.get(metric, metric), fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- scripts/paper.py: every method over seeds, mean and 95% interval -----------------------------------
SET_TITLES = {"mini": "mini:test", "textbook": "hand-written textbook theorems", "probes": "balanced probes"}


def _pm(figure, digits=3) -> str:
    mean, half = figure
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    return f"{mean:.{digits}f}" if not half or math.isnan(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"


def write_paper_markdown(res: dict, path: str) -> None:
    s = res["settings"]
    lines = ["# The paper in miniature", "",
             f"{s['seeds']} seeds per method (mean ± 95% interval over seeds; `base`, the starting model, is one "
             f"evaluation), trained on {s.get('tasks', 'mini:1')} statements. FD: {s['steps']} steps x {s['prompts']} attempts, top K = {s.get('topk', 25)}; GRPO: {res['grpo_steps']} steps x "
             f"{s['grpo_prompts']} statements x {s['group']} attempts, the same number of sampled attempts; "
             f"FD -> GRPO: both. Every model: n = {s['eval_n']} samples per task at temperature 1 on "
             f"{'the first ' + str(s['eval_limit']) if s['eval_limit'] else 'all 600'} mini:test tasks, the 151 "
             f"textbook theorems and the 352 probes ({s['probes_n']} samples each)"
             + (f", attempts of up to {s['turns']} candidates (Lean's message after each rejected one). "
                if s.get("turns", 1) > 1 else ". ") +
             f"Wall time {res['minutes']} min (`{res.get('command', 'python -m scripts.paper' + (' --quick' if s['quick'] else ''))}`).", "",
             "## The paper's findings, checked", ""]
    lines += [f"- {'holds' if ok else '**does not hold**'}: {text}" for text, ok in res["targets"]]
    for which, title in SET_TITLES.items():
        first = next(iter(res["methods"].values()))[which]
        ks = list(first["pass_at_k"])
        lines += ["", f"## {title}", "", "| method | " + " | ".join(f"pass@{k}" for k in ks) +
                  " | entropy | tokens / attempt | distinct names in correct proofs |", "|---" * (len(ks) + 4) + "|"]
        for method, sets in res["methods"].items():
            m = sets[which]
            lines.append(f"| {method} | " + " | ".join(_pm(m["pass_at_k"][k]) for k in ks) +
                         f" | {_pm(m['entropy'], 2)} | {_pm(m['attempt_tokens'], 1)} | {_pm(m['distinct_identifiers'], 0)} |")
        if which != "probes":
            levels = list(first["per_level"])
            lines += ["", f"pass@1 per level ({title}):", "", "| method | " + " | ".join(f"level {lv}" for lv in levels)
                      + " |", "|---" * (len(levels) + 1) + "|"]
            lines += [f"| {method} | " + " | ".join(_pm(sets[which]["per_level"][lv]) for lv in levels) + " |"
                      for method, sets in res["methods"].items()]
    lines += ["", "## Differences in pass@1, seed by seed", "",
              "| difference | " + " | ".join(SET_TITLES.values()) + " |", "|---" * 4 + "|"]
    for name, sets in res["differences"].items():
        lines.append(f"| {name} | " + " | ".join(
            f"{100 * d['mean']:+.1f} points (SE {100 * d['se']:.1f}; 95%: {100 * (d['mean'] - d['ci95']):+.1f} to "
            f"{100 * (d['mean'] + d['ci95']):+.1f})" for d in sets.values()) + " |")
    methods = list(res["probes"])
    rules = res["probes"][methods[0]]
    lines += ["", "## Probes: pass@1 on each side of a rule (mean over seeds)", "",
              "A learnt rule scores both sides of its mirror images; a learnt prior scores one side, or both at chance.", "",
              "| rule (sides) | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for rule, sides in rules.items():
        names = [s for s in sides if s != "balance"]
        lines.append(f"| {rule} ({' / '.join(names)}) | " + " | ".join(
            " / ".join(f"{res['probes'][m][rule][s][0]:.2f}" for s in names) for m in methods) + " |")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def _half(h) -> float:
    """A band's half-width; none (one seed: NaN or None) is drawn as none."""
    return 0.0 if h is None or math.isnan(h) else h


def plot_paper(res: dict, folder: str) -> None:
    """pass@k per set and the training curves, each method's mean with its 95% band over seeds."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(SET_TITLES), figsize=(5 * len(SET_TITLES), 4))
    shown = [m for m in ("base", "fd", "control", "grpo", "fd_grpo") if m in res["methods"]]  # the ablation: table
    for ax, (which, title) in zip(axes, SET_TITLES.items()):
        for method in shown:
            sets = res["methods"][method]
            table = sets[which]["pass_at_k"]
            ks = [int(k) for k in table]
            mean = [table[str(k)][0] for k in ks]
            half = [_half(table[str(k)][1]) for k in ks]
            line, = ax.plot(ks, mean, marker="o", ms=3, label=method)
            ax.fill_between(ks, [max(0, m - h) for m, h in zip(mean, half)], [min(1, m + h) for m, h in zip(mean, half)],
                            color=line.get_color(), alpha=0.15)  # a pass rate stays within [0, 1]
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("k (samples)")
        ax.set_title(f"pass@k, {title}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("pass@k")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "pass_at_k.png"), dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key in zip(axes, ("train_acc", "entropy")):
        for method, curves in res["curves"].items():
            mean = [m for m, _ in curves[key]]
            half = [_half(h) for _, h in curves[key]]
            steps = range(1, len(mean) + 1)
            line, = ax.plot(steps, mean, label=method)
            low, high = [m - h for m, h in zip(mean, half)], [m + h for m, h in zip(mean, half)]
            low = [max(0, v) for v in low]   # neither a rate nor an entropy is negative
            if key == "train_acc":  # a rate stays within [0, 1]
                high = [min(1, v) for v in high]
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.15)
        ax.set_title(f"{key} (moving mean over 10 steps)")
        ax.set_xlabel("step of the run")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "curves.png"), dpi=110)
    plt.close(fig)
