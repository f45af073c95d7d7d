"""Intervals: how sure is a pass@1, a change, a difference between methods? Paired over tasks, t over seeds.

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Section 5 reports methods side by
side; in miniature the differences are a few points, the size of the noise. Two rules keep the project honest:
- A change between two evaluations of the same tasks is paired: each task's own change counts, so the spread
  between easy and hard tasks cancels (paired_change; a point is resolved with a few hundred tasks x 16 samples).
- A figure over seeds (runs of a method) gets Student's t interval: with 2 or 3 seeds the normal 1.96 would
  claim twice the certainty there is (interval95).

    from fdlean import intervals
    intervals.paired_change(tasks, before, after)["all"]   # {tasks, before, after, change, se, half95}
    print(intervals.change_report(tasks, before, after, n=8))   # what fd.py and grpo.py print at the end
Test: python -m pytest -q tests/test_intervals.py
"""
import math

T_975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23,
         15: 2.13, 20: 2.09, 30: 2.04}  # Student's t, two-sided 95%, by degrees of freedom


def mean_se(values) -> tuple[float, float]:
    """Mean and its standard error (sample std / sqrt(n); 0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var / n)


def interval95(values) -> tuple[float, float]:
    """Mean and the half-width of its 95% interval: Student's t for few values (seeds), normal beyond 30."""
    mean, se = mean_se(values)
    df = len(values) - 1
    t = 1.96 if df > 30 else T_975[min(k for k in T_975 if k >= df)] if df else float("nan")
    return mean, t * se


def paired_change(tasks, before: list[float], after: list[float]) -> dict:
    """Before, after and the change with its standard error and 95% half-width, paired over tasks (each
    task's own change counts, so the between-task spread cancels), overall and per level: {"all" | level: {...}}."""
    groups = {"all": range(len(tasks))}
    for level in sorted({t.level for t in tasks}):
        groups[level] = [i for i, t in enumerate(tasks) if t.level == level]
    out = {}
    for key, rows in groups.items():
        rows = list(rows)
        diffs = [after[i] - before[i] for i in rows]
        change, se = mean_se(diffs)
        out[key] = dict(tasks=len(rows), before=sum(before[i] for i in rows) / len(rows),
                        after=sum(after[i] for i in rows) / len(rows), change=change, se=se,
                        half95=interval95(diffs)[1])
    return out


def change_report(tasks, before: list[float], after: list[float], n: int, turns: int = 1) -> str:
    """The before/after lines the training scripts print: overall and per level, with the paired
    standard error of each change (a change beyond two of them is unlikely to be luck)."""
    c = paired_change(tasks, before, after)
    a = c.pop("all")
    what = f"{a['tasks']} tasks x {n} samples" + (f", attempts of up to {turns} turns" if turns > 1 else "")
    lines = [f"held-out pass@1 ({what}): before {a['before']:.3f} -> after {a['after']:.3f}, "
             f"change {100 * a['change']:+.1f} points (paired standard error {100 * a['se']:.1f})"]
    lines += [f"  level {level} ({g['tasks']} tasks): {g['before']:.3f} -> {g['after']:.3f}, "
              f"{100 * g['change']:+.1f} points (SE {100 * g['se']:.1f})" for level, g in c.items()]
    return "\n".join(lines)
