"""Two evaluations of the same tasks, paired over them: how much did pass@1 change, and is it more than luck?

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Section 5 compares methods on one
test set. With a few hundred tasks and a few samples each, two evaluations differ by a point or two by chance;
pairing removes most of that: each task's own change counts, so the spread between easy and hard tasks cancels.
This reads two evaluate.py outputs (a folder: its first model; or one of its attempts_K.jsonl files: model K) and
prints AFTER - BEFORE, overall and per level, with the paired standard error and 95% interval.

    python evaluate.py --model M --turns 3 --no-message --out runs/eval_nomsg
    python evaluate.py --model M --turns 3 --out runs/eval_msg
    python -m scripts.compare runs/eval_nomsg runs/eval_msg        # what Lean's message adds to a 3-turn attempt
    python -m scripts.compare runs/eval/attempts_1.jsonl runs/eval/attempts_2.jsonl   # two models of one evaluation
"""
import json
import os
from dataclasses import dataclass

from fdlean import cli, intervals, measure
from mini import tasks


@dataclass
class Config:
    before: str = ""              # an evaluate.py folder (its first model) or one of its attempts_K.jsonl files
    after: str = ""               # the same for the other evaluation: the change printed is AFTER - BEFORE


def read(path: str):
    """(results.json of the evaluation, each task's pass@1) for a folder (its first model) or an attempts_K.jsonl."""
    folder, attempts = (os.path.dirname(path) or ".", path) if path.endswith(".jsonl") else \
        (path, os.path.join(path, "attempts_1.jsonl"))
    with open(os.path.join(folder, "results.json")) as f:
        results = json.load(f)
    if not path.endswith(".jsonl") and len(results.get("models", [])) > 1:
        raise ValueError(f"{path} evaluated {len(results['models'])} models: name one, e.g. "
                         f"{os.path.join(path, 'attempts_2.jsonl')} for the second")
    return results, measure.pass1_per_task(attempts, results["tasks"]["n_tasks"])


def compare(before: str, after: str) -> str:
    (ra, a), (rb, b) = read(before), read(after)
    if ra["tasks"]["sha256"] != rb["tasks"]["sha256"]:
        raise ValueError(f"{before} and {after} evaluated different tasks ({ra['tasks']['name']}, "
                         f"{ra['tasks']['n_tasks']} vs {rb['tasks']['name']}, {rb['tasks']['n_tasks']}): nothing to pair")
    task_list = tasks.load(ra["tasks"]["name"], limit=ra["limit"])        # for the levels
    if tasks.sha256(task_list) != ra["tasks"]["sha256"]:
        raise ValueError(f"{ra['tasks']['name']} no longer holds the tasks {before} evaluated (the file changed?)")
    c = intervals.paired_change(task_list, a, b)
    lines = [f"{after} - {before}, paired over {len(task_list)} tasks ({ra['n']} and {rb['n']} samples each):"]
    for key, g in c.items():
        low, high = g["change"] - g["half95"], g["change"] + g["half95"]
        lines.append(f"  {'all' if key == 'all' else f'level {key}'} ({g['tasks']} tasks): pass@1 {g['before']:.3f} -> "
                     f"{g['after']:.3f}, {100 * g['change']:+.1f} points (SE {100 * g['se']:.1f}; 95% "
                     f"{100 * low:+.1f} to {100 * high:+.1f})")
    return "\n".join(lines)


def main(argv=None):
    cfg = cli.parse(Config, argv, prog="compare.py", description=__doc__.split("\n")[0], positional=("before", "after"))
    if not cfg.before or not cfg.after:
        cli.fail("compare.py: give two evaluations: BEFORE AFTER (evaluate.py folders or attempts_K.jsonl files)")
    with cli.user_errors("compare.py", OSError, ValueError, KeyError):
        print(compare(cfg.before, cfg.after))


if __name__ == "__main__":
    cli.main(main, "compare.py")
