"""calibrate.py: the student / teacher table on a few test tasks with the real Lean, written into
the model's folder; and its command-line mistakes as one line.

    python -m pytest -q tests/test_calibrate.py
"""
import json
import shutil

import pytest

from scripts import calibrate


def test_calibration_table_in_the_model_folder(tiny_prover, tmp_path, capsys):
    path = tmp_path / "prover"
    shutil.copytree(tiny_prover, path)
    report = calibrate.main(["--model", str(path), "--eval-limit", "6", "--eval-n", "2", "--eval-n-feedback", "1",
                             "--threads", "1"])
    assert json.loads((path / "calibration.json").read_text()) == report
    assert report["test_tasks"] == 6 and report["eval_n"] == 2 and report["model"] == str(path)
    table = report["pass_percent"]
    assert set(table) == {"1", "2", "3", "all"} and table["all"]["tasks"] == 6  # the test split interleaves levels
    columns = {"student pass@1", "student pass@2", "ground-truth pass@1", "lean pass@1"} | {
        f"tutor:{n} pass@1" for n in (1, 2, 3, 4)}
    assert all(set(row) == columns | {"tasks"} for row in table.values())
    assert all(0 <= row[c] <= 100 for row in table.values() for c in columns)
    assert table["all"]["student pass@1"] <= table["all"]["student pass@2"]
    out = capsys.readouterr().out
    assert f"calibration of {path}" in out and "ground-truth pass@1" in out


@pytest.mark.parametrize("args, line", [
    (["--eval-n", "0"], "calibrate.py: --eval-n 0: must be at least 1"),
    (["--model", "nonexistent_dir"], "calibrate.py: --model nonexistent_dir: model 'nonexistent_dir'"),
    (["--model", "org/name"], "calibrate.py: --model org/name: give a local model folder"),
])
def test_mistakes_are_one_line(args, line, capsys):
    with pytest.raises(SystemExit) as exit:
        calibrate.main(args)
    err = capsys.readouterr().err.strip()
    assert exit.value.code == 2 and len(err.splitlines()) == 1 and line in err


def test_turn_two_student_and_teachers(tiny_prover, tmp_path):
    """--turns 2: student and teachers on the failed first attempts, their message in context."""
    path = tmp_path / "prover"
    shutil.copytree(tiny_prover, path)
    report = calibrate.main(["--model", str(path), "--eval-limit", "8", "--eval-n", "1", "--eval-n-feedback", "1",
                             "--threads", "1", "--turns", "2"])
    two = report["turn_2"]
    assert 1 <= two["failed_first_attempts"] <= 8
    assert set(two) == {"failed_first_attempts", "student", "teacher (ground-truth)", "teacher (tutor)"}
    assert all(0 <= row[c] <= 100 for name, row in two.items() if name != "failed_first_attempts" for c in row)
    assert json.loads((path / "calibration.json").read_text())["turn_2"] == two
