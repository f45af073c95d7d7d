"""Intervals against hand computations: the mean and its standard error, Student's t for few seeds, the
change paired over tasks (overall and per level) and the lines the training scripts print."""
import math

import pytest

from fdlean import intervals


def test_intervals_and_the_paired_change():
    from lean_env import Task
    assert intervals.mean_se([1.0, 3.0]) == (2.0, 1.0)  # std sqrt(2), / sqrt(2)
    mean, half = intervals.interval95([0.2, 0.3, 0.4])  # 3 seeds: t with 2 degrees of freedom
    assert mean == pytest.approx(0.3) and half == pytest.approx(4.30 * 0.1 / math.sqrt(3))
    assert intervals.interval95([0.5] * 40)[1] == 0.0
    tasks = [Task(f"t{i}", "theorem t : True :=", level=1 + i % 2) for i in range(6)]
    before = [0.0, 0.5, 0.25, 0.5, 1.0, 0.0]
    after = [0.25, 0.5, 0.5, 0.5, 1.0, 0.25]    # +0.25 on tasks 0, 2, 5
    c = intervals.paired_change(tasks, before, after)
    assert c["all"]["tasks"] == 6 and c["all"]["change"] == pytest.approx(0.125)
    assert c["all"]["se"] == pytest.approx(math.sqrt(0.25 ** 2 * 3 / 6 * 6 / 5 - 0.125 ** 2 * 6 / 5) / math.sqrt(6))
    assert c[1]["tasks"] == 3 and c[1]["change"] == pytest.approx(0.5 / 3) and c[2]["change"] == pytest.approx(0.25 / 3)
    # an unpaired comparison would see the between-task spread; pairing leaves only the changes' own
    shifted = intervals.paired_change(tasks, before, [b + 0.1 for b in before])["all"]
    assert shifted["change"] == pytest.approx(0.1) and shifted["se"] == pytest.approx(0.0, abs=1e-12)
    text = intervals.change_report(tasks, before, after, n=4)
    assert text.splitlines()[0] == ("held-out pass@1 (6 tasks x 4 samples): before 0.375 -> after 0.500, "
                                    "change +12.5 points (paired standard error 5.6)")
    assert text.splitlines()[1] == "  level 1 (3 tasks): 0.417 -> 0.583, +16.7 points (SE 8.3)"
