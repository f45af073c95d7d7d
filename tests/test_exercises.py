"""The classroom exercises (exercises/): the checker fails every untouched exercise with "not written yet",
passes the project's own implementation (--reference), and tells a wrong solution what is wrong.
Run: python -m pytest -q tests/test_exercises.py"""
import importlib.util
import os
import re
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("exercises_check", os.path.join(ROOT, "exercises", "check.py"))
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)
IDS = list(check.EXERCISES)


def run(capsys, *argv):
    rc = check.main(list(argv))
    return rc, capsys.readouterr().out


def test_at_least_six_exercises_each_with_its_file_listed(capsys):
    assert len(IDS) >= 6
    rc, out = run(capsys, "--list")
    assert rc == 0
    for ex in check.EXERCISES.values():
        line = next(x for x in out.splitlines() if f" {ex.id} " in x)
        assert "min" in line and ex.file in line
        assert os.path.isfile(os.path.join(ROOT, "exercises", ex.file))


@pytest.mark.parametrize("ex", IDS)
def test_untouched_exercise_fails_with_not_written_yet(capsys, ex):
    rc, out = run(capsys, ex)
    assert rc == 1
    assert "not written yet: " in out and re.search(r": 0 of \d+ cases pass", out)


@pytest.mark.parametrize("ex", IDS)
def test_reference_passes(capsys, ex):
    rc, out = run(capsys, ex, "--reference")
    assert rc == 0, out
    assert "FAIL" not in out


def test_exercise_files_hold_no_solution_and_import_without_work():
    # each file imports standalone (no project module, nothing run) and every function only raises
    for ex in check.EXERCISES.values():
        path = os.path.join(ROOT, "exercises", ex.file)
        module = check.load_student(path, ex.id)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        assert "arXiv 2605.30861" in text and "python exercises/check.py " + ex.id in text
        bodies = re.findall(r"^def \w+\(.*\).*:\n((?:    .*\n|\n)+)", text, flags=re.M)
        assert bodies and all(b.strip().startswith("raise NotImplementedError(\"write me") for b in bodies), ex.file
        assert not re.search(r"^\s*#.*(return|=)", text, flags=re.M), f"{ex.file}: a commented-out line of code"
        assert callable(getattr(module, re.search(r"^def (\w+)", text, flags=re.M).group(1)))


def write(tmp_path, text):
    path = tmp_path / "mine.py"
    path.write_text(text)
    return str(path)


def test_biased_pass_at_k_is_named_with_expected_and_got(capsys, tmp_path):
    mine = write(tmp_path, "def pass_at_k(n, c, k):\n    return 1 - (1 - c / n) ** k\n")
    rc, out = run(capsys, "pass_at_k", "--file", mine)
    assert rc == 1
    case = out[out.index("FAIL  n=10, c=3, k=2"):]
    assert "expected 0.5333333333" in case and "got      0.51" in case and "biased" in case
    assert "ok    n=10, c=3, k=1" in out   # k = 1 is c / n either way: that case passes


def test_a_correct_student_solution_passes_and_an_exception_is_located(capsys, tmp_path):
    mine = write(tmp_path, "from math import comb\n\ndef pass_at_k(n, c, k):\n"
                           "    return 1.0 - comb(n - c, k) / comb(n, k)\n")
    rc, out = run(capsys, "pass_at_k", "--file", mine)
    assert rc == 0 and "12 of 12 cases pass" in out
    mine = write(tmp_path, "def pass_at_k(n, c, k):\n    return 1 - (n - c) / 0\n")
    rc, out = run(capsys, "pass_at_k", "--file", mine)
    assert rc == 1 and "your code raised ZeroDivisionError" in out and "mine.py line 2, in pass_at_k" in out


def test_fd_loss_that_trains_the_teacher_or_overflows_is_caught(capsys, tmp_path):
    mine = write(tmp_path, "import torch\n\ndef fd_loss(s, t, mask, k):\n"
                           "    q, p = torch.softmax(s, -1), torch.softmax(t, -1)\n"
                           "    pk, ids = p.topk(k, -1)\n"
                           "    m = mask.float()\n"
                           "    return (-(pk * torch.log(q.gather(-1, ids))).sum(-1) * m).sum() / m.sum()\n")
    rc, out = run(capsys, "fd_loss", "--file", mine)
    assert rc == 1
    assert "the teacher received a gradient" in out
    assert re.search(r"FAIL  large logits.*\n.*non-finite value", out)
    assert re.search(r"FAIL  mask all 0.*\n.*non-finite value \(nan\).*expected 0", out)


def test_ema_over_the_state_dict_averages_a_tied_weight_twice(capsys, tmp_path):
    mine = write(tmp_path, "import torch\n\n@torch.no_grad()\ndef ema_update(teacher, student, alpha):\n"
                           "    sd = student.state_dict()\n"
                           "    for k, mu in teacher.state_dict().items():\n"
                           "        mu.mul_(alpha).add_(sd[k], alpha=1 - alpha)\n")
    rc, out = run(capsys, "ema", "--file", mine)
    assert rc == 1 and "averaged twice?" in out
    assert "ok    alpha=0.0" in out and "ok    alpha=1.0" in out   # there, twice is the same as once


FULL_LOGITS = """import torch

def fused_fd_loss(h, w, ids, lp, mask, c):
    logq = torch.log_softmax(h @ w.T, -1)
    m = mask.bool()
    return (-(lp.exp() * logq.gather(-1, ids)).sum(-1) * m).sum() / m.sum().clamp_min(1)
"""
CHUNKED_AUTOGRAD = """import torch

def fused_fd_loss(h, w, ids, lp, mask, c):
    hh, ii, ll = h.reshape(-1, h.shape[-1]), ids.reshape(-1, ids.shape[-1]), lp.reshape(-1, lp.shape[-1])
    rows = mask.reshape(-1).nonzero().squeeze(1)
    total = h.sum() * 0
    for s in range(0, rows.numel(), c):
        r = rows[s:s + c]
        total = total - (ll[r].exp() * torch.log_softmax(hh[r] @ w.T, -1).gather(-1, ii[r])).sum()
    return total / max(rows.numel(), 1)
"""
# recomputed in the backward, the gather inside (outside it, gather would keep each chunk's (rows, V) input)
RECOMPUTED = CHUNKED_AUTOGRAD.replace("torch.log_softmax(hh[r] @ w.T, -1).gather(-1, ii[r])",
                                      "checkpoint(lambda a, b, i: torch.log_softmax(a @ b.T, -1).gather(-1, i), "
                                      "hh[r], w, ii[r], use_reentrant=False)").replace(
    "import torch\n", "import torch\nfrom torch.utils.checkpoint import checkpoint\n")


def test_fused_loss_right_numbers_are_not_enough(capsys, tmp_path):
    rc, out = run(capsys, "fused_loss", "--file", write(tmp_path, FULL_LOGITS))
    assert rc == 1 and "right numbers, but a logits-sized tensor of shape (24, 50) was made" in out
    assert "ok    chunk 100" in out   # one chunk may hold every position
    rc, out = run(capsys, "fused_loss", "--file", write(tmp_path, CHUNKED_AUTOGRAD))
    assert rc == 1 and "autograd keeps" in out and "alive for the backward" in out
    rc, out = run(capsys, "fused_loss", "--file", write(tmp_path, RECOMPUTED))
    assert rc == 0, out


def test_weak_checker_refusal_is_explained(capsys, tmp_path):
    rc, out = run(capsys, "fool_the_checker", "--file", write(tmp_path, "def fooling_proof():\n    return 'p'\n"))
    assert rc == 1 and "the weak checker refused 'p': Lean reported an error" in out
    rc, out = run(capsys, "fool_the_checker", "--file", write(tmp_path, "def fooling_proof():\n    return 'by sorry'\n"))
    assert rc == 1 and "contains the word `sorry`" in out


def test_command_line_exit_codes(tmp_path):
    def cli(*argv):
        return subprocess.run([sys.executable, os.path.join(ROOT, "exercises", "check.py"), *argv],
                              capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    p = cli("ema")
    assert p.returncode == 1 and "not written yet: ema_update" in p.stdout
    p = cli("no_such_exercise")
    assert p.returncode == 2 and "unknown exercise 'no_such_exercise'" in p.stderr
    p = cli("ema", "--file", str(tmp_path / "missing.py"))
    assert p.returncode == 2 and "no file" in p.stderr


def test_a_function_that_never_returns_fails_its_case_with_a_message(capsys, tmp_path, monkeypatch):
    """Issue 30, row 9: `check.py pass_at_k --file loop.py` whose function never returns hung with no output."""
    monkeypatch.setattr(check, "CASE_SECONDS", 0.2)
    mine = write(tmp_path, "def pass_at_k(n, c, k):\n    while True:\n        pass\n")
    t0 = time.time()
    rc, out = run(capsys, "pass_at_k", "--file", mine)
    assert rc == 1 and "still running after 0.2 s (a loop that never ends?)" in out and "mine.py line" in out
    assert time.time() - t0 < 30


def test_an_exercise_by_its_number_in_the_list(capsys):
    rc, out = run(capsys, "1", "--reference")
    assert rc == 0 and out.startswith("pass_at_k: the project's own implementation")
