"""compare.py: two evaluations paired over their tasks, checked by hand on written attempt records; and the
clear one-line errors for evaluations that cannot be paired (other tasks, a cut-off file, a missing task)."""
import json
import math
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mini import tasks  # noqa: E402
from scripts import compare  # noqa: E402

TASKS = tasks.load("mini:test", limit=6)


def write_eval(folder, oks, limit=6, models=1):
    """An evaluate.py output folder: results.json (the task set's identity) and attempts_K.jsonl, whose
    records say per task which samples Lean accepted (oks[k][task] = [bool, ...])."""
    os.makedirs(folder, exist_ok=True)
    task_list = tasks.load("mini:test", limit=limit)
    results = {"tasks": {"name": "mini:test", "n_tasks": len(task_list), "sha256": tasks.sha256(task_list)},
               "limit": limit, "n": len(oks[0][0])}
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(results, f)
    for k, per_task in enumerate(oks[:models], 1):
        with open(os.path.join(folder, f"attempts_{k}.jsonl"), "w") as f:
            for t, samples in enumerate(per_task):
                f.writelines(json.dumps({"task": t, "ok": ok, "text": "x"}) + "\n" for ok in samples)
    return str(folder)


def test_change_by_hand(tmp_path, capsys):
    before = [[True, False, False, False], [False] * 4, [True] * 4, [False] * 4, [True, True, False, False], [False] * 4]
    after = [[True, True, False, False], [True, False, False, False], [True] * 4, [False] * 4, [True, True, True, False],
             [True, True, True, True]]
    a, b = write_eval(tmp_path / "a", [before]), write_eval(tmp_path / "b", [after])
    compare.main([a, b])
    out = capsys.readouterr().out
    diffs = [sum(y) / 4 - sum(x) / 4 for x, y in zip(before, after)]          # each task's own change
    mean = sum(diffs) / 6
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 5 / 6)
    half = 2.57 * se                 # Student's t, 5 degrees of freedom: 6 tasks are too few for 1.96
    assert f"{100 * mean:+.1f} points (SE {100 * se:.1f}; 95% {100 * (mean - half):+.1f} to " \
           f"{100 * (mean + half):+.1f})" in out
    lv = {level: [i for i, t in enumerate(TASKS) if t.level == level] for level in {t.level for t in TASKS}}
    for level, rows in lv.items():   # per level: the same pairing over that level's tasks only
        assert f"level {level} ({len(rows)} tasks): pass@1 {sum(sum(before[i]) / 4 for i in rows) / len(rows):.3f}" in out
    compare.main([b, a])             # the other way round: the opposite change
    assert f"{-100 * mean:+.1f} points" in capsys.readouterr().out


def test_two_models_of_one_evaluation(tmp_path, capsys):
    one, two = [[False] * 2] * 6, [[True] * 2] * 6
    folder = write_eval(tmp_path / "e", [one, two], models=2)
    compare.main([os.path.join(folder, "attempts_1.jsonl"), os.path.join(folder, "attempts_2.jsonl")])
    assert "pass@1 0.000 -> 1.000, +100.0 points (SE 0.0" in capsys.readouterr().out


def run_error(argv, capsys):
    with pytest.raises(SystemExit) as e:
        compare.main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err.strip()


def test_errors_name_the_problem(tmp_path, capsys):
    some = [[True, False]] * 6
    a = write_eval(tmp_path / "a", [some])
    other = write_eval(tmp_path / "other", [[[True, False]] * 5], limit=5)
    assert "evaluated different tasks (mini:test, 6 vs mini:test, 5): nothing to pair" in run_error([a, other], capsys)
    assert run_error([a], capsys).startswith("compare.py: give two evaluations")
    assert "No such file or directory" in run_error([a, str(tmp_path / "none")], capsys)
    cut = write_eval(tmp_path / "cut", [some])
    with open(os.path.join(cut, "attempts_1.jsonl"), "a") as f:
        f.write('{"task": 3, "ok": tr')
    assert "attempts_1.jsonl, line 13: not a JSON record" in run_error([a, cut], capsys)
    short = write_eval(tmp_path / "short", [some[:5] + [[]]])     # the last task never sampled
    assert "task 5 has no attempt" in run_error([a, short], capsys)
    stray = write_eval(tmp_path / "stray", [some])
    with open(os.path.join(stray, "attempts_1.jsonl"), "a") as f:
        f.write('{"task": 6, "ok": true}\n')
    assert "attempts_1.jsonl, line 13: task 6 is not one of the 6 evaluated" in run_error([a, stray], capsys)
