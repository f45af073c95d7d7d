"""Is a small prover ready for FD: how often its student, and its teacher, prove the mini test tasks.

The student should solve some tasks, and the teacher (the same weights with feedback in the prompt)
clearly more: that gap is what FD distills into the student (arXiv 2605.30861, Section 3).

    python -m scripts.calibrate                                # the small-prover preset (built on first use)
    python -m scripts.calibrate --model runs/fd/final --eval-limit 120

Student: pass@1 (temperature 1) and pass@n on the mini test split. Teacher: pass@1 with each feedback
source computed on the student's FIRST attempt at the task (exactly what FD's teacher reads): ground truth,
the tutor at each of its four levels (tutor:1 .. tutor:4) and Lean's output. Per level; printed as a
table and written to calibration.json in the model's folder.

At turn 2 of a multi-turn attempt (turns.py; `--turns 2`): on the tasks whose first attempt failed,
the context is that attempt and Lean's message on it. There the student writes a second candidate,
and the teacher (feedback in its prompt, the same failed turn in its context) too: their pass@1, and
how often each ranks the reference proof's first token first. FD over multi-turn attempts needs
the teacher clearly ahead there as well.

    python -m scripts.calibrate --model runs/small-prover-turns --turns 2
"""
import json
import os
import time
from dataclasses import dataclass

import torch

import evaluate
import feedback
import lean_env
from fdlean import cli, lm, prompting, sampling, turns
from mini import tasks
from small_prover import sft


@dataclass
class Config:
    model: str = sft.PRESET   # the model to measure: the small-prover preset or a local folder
    eval_n: int = 16          # samples per test task for the student's pass@1 / pass@n
    eval_n_feedback: int = 4  # samples per task with feedback in context
    eval_limit: int = 0       # first N test tasks (0 = all)
    seed: int = 0             # seed of the sampling generator
    threads: int = 2          # torch CPU threads
    turns: int = 1            # 2: also measure student and teacher at the second turn of a failed attempt


RULES = [(f, lambda v: v >= 1, "at least 1") for f in ("eval_n", "eval_n_feedback", "threads")]
RULES += [("eval_limit", lambda v: v >= 0, "0 or more (0: every task)"), ("turns", lambda v: v in (1, 2), "1 or 2")]


def calibrate(path: str, cfg: Config) -> dict:
    """Student and teacher pass rates (percent) per level of the mini test split, for the model in
    `path`. Identical (task, proof) pairs are checked by Lean once."""
    torch.set_num_threads(cfg.threads)
    policy, env = lm.load(path), lean_env.load("mini")
    test = tasks.load("mini", split="test")[: cfg.eval_limit or None]
    generator, verdicts = torch.Generator(policy.device).manual_seed(cfg.seed), {}

    def attempts(feedback_texts, k, after=None):  # k samples per task -> (samples, results), task-major
        prompts = [prompting.encode(policy.tokenizer, t, f) for t, f in zip(test, feedback_texts)]
        prompts = [p + a for p, a in zip(prompts, after)] if after else prompts  # a failed turn, Lean's message
        jobs = [i for i in range(len(test)) for _ in range(k)]
        samples = sampling.sample(policy, [prompts[i] for i in jobs], max_new_tokens=64, generator=generator)
        keys = [(i, prompting.proof_text(x, test[i])) for i, x in zip(jobs, samples)]
        todo = sorted(set(keys) - set(verdicts))
        verdicts.update(zip(todo, env.check_many([(test[i], p) for i, p in todo])))
        return samples, [verdicts[key] for key in keys]

    def pass_at(results, k, n):  # per task, unbiased pass@k from n samples
        return [evaluate.pass_at_k(n, sum(r.ok for r in results[i * n:(i + 1) * n]), k) for i in range(len(test))]

    t0, n = time.time(), cfg.eval_n
    samples, results = attempts([None] * len(test), n)
    columns = {"student pass@1": pass_at(results, 1, n), f"student pass@{n}": pass_at(results, n, n)}
    first = [(samples[i * n], results[i * n]) for i in range(len(test))]
    for source in ("ground-truth", *(f"tutor:{n}" for n in feedback.TUTOR_LEVELS), "lean"):
        fb = feedback.load(source)
        texts = [fb(t, a, r) for t, (a, r) in zip(test, first)]
        columns[f"{source} pass@1"] = pass_at(attempts(texts, cfg.eval_n_feedback)[1], 1, cfg.eval_n_feedback)
    table = {}
    for level in sorted({t.level for t in test}) + ["all"]:
        rows = [i for i, t in enumerate(test) if level in ("all", t.level)]
        table[str(level)] = {c: round(100 * sum(v[i] for i in rows) / len(rows), 1) for c, v in columns.items()}
        table[str(level)]["tasks"] = len(rows)
    print(f"calibration of {path} ({len(verdicts)} distinct Lean checks, {time.time() - t0:.0f} s):")
    print("level  " + "  ".join(f"{c:>18s}" for c in columns))
    for level, row in table.items():
        print(f"{level:5s}  " + "  ".join(f"{row[c]:18.1f}" for c in columns))
    out = {"model": path, "test_tasks": len(test), "eval_n": n, "eval_n_feedback": cfg.eval_n_feedback,
           "seed": cfg.seed, "lean": env.version, "pass_percent": table}
    if cfg.turns == 2:
        out["turn_2"] = turn_two(policy, test, first, attempts, pass_at, cfg.eval_n_feedback)
    return out


@torch.no_grad()
def turn_two(policy, test, first, attempts, pass_at, k) -> dict:
    """Student and teachers at the second turn of each failed first attempt: pass@1 of the second
    candidate (percent) and how often the reference's first token is the most likely next token."""
    tok = policy.tokenizer
    failed = [i for i, (_, r) in enumerate(first) if not r.ok]
    after = [first[i][0].ids + turns.tool_ids(tok, first[i][1]) if i in set(failed) else [] for i in range(len(test))]
    rows = {}
    for source in ("none", "ground-truth", "tutor"):
        fb = feedback.load(source)
        texts = [fb(t, a, r) if source != "none" else None for t, (a, r) in zip(test, first)]
        solved = pass_at(attempts(texts, k, after)[1], 1, k)
        top1 = []
        for i in failed:
            context = prompting.encode(tok, test[i], texts[i]) + after[i]
            reference = tok(" " + test[i].solution, add_special_tokens=False)["input_ids"]
            logits = policy.model(torch.tensor([context], device=policy.device)).logits[0, -1]
            top1.append(int(logits.argmax()) == reference[0])
        name = "student" if source == "none" else f"teacher ({source})"
        rows[name] = {"pass@1": round(100 * sum(solved[i] for i in failed) / max(len(failed), 1), 1),
                      "reference first token top-1": round(100 * sum(top1) / max(len(top1), 1), 1)}
    print(f"turn 2, on the {len(failed)} failed first attempts (their message in context):")
    for name, row in rows.items():
        print(f"  {name:24s} " + "  ".join(f"{c} {v:5.1f}" for c, v in row.items()))
    return {"failed_first_attempts": len(failed), **rows}


def main(argv=None) -> dict:
    cfg = cli.parse(Config, argv, prog="calibrate.py", description=__doc__.split("\n")[0])
    cli.check(cfg, RULES, "calibrate.py")
    with cli.user_errors(f"calibrate.py: --model {cfg.model}", lm.ModelNotFound):
        lm.check_name(cfg.model)
    if cfg.model != sft.PRESET and not os.path.isdir(os.path.expanduser(cfg.model)):
        cli.fail(f"calibrate.py: --model {cfg.model}: give a local model folder (calibration.json is written "
                 f"into it) or {sft.PRESET}")
    path = os.path.expanduser(sft.resolve_model(cfg.model))
    report = calibrate(path, cfg)
    with open(os.path.join(path, "calibration.json"), "w") as f:
        json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    cli.main(main, "calibrate.py", lambda: "Nothing was written: run it again.")
