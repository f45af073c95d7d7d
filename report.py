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
            pts = [(r["step"], r[metric]) for r in rows if r.get(metric) is not None]
            if pts:         # sparse metrics (held-out pass@1 every few steps) get markers
                sparse = len(pts) < 0.5 * len(rows)
                ax.plot(*zip(*pts), marker="o" if sparse else None, ms=3, label=label)
        ax.set_title(metric)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
