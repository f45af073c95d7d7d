"""Data parallel (parallel.py): `torchrun --nproc_per_node 2` (gloo, CPU) takes the same steps as one process with
the same global batch, for fd.py and grpo.py; FD's micro-batches equal the whole batch; a run resumes on another
number of processes; evaluate.py gathers the shares. Real processes, the real tiny prover, the real Lean."""
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import fd
from fdlean import parallel
from training import checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINING = ("loss", "kl", "entropy", "attempt_len", "feedback_len", "truncated", "epistemic_words", "turns")


def torchrun(script, *args, n=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
           os.path.join(ROOT, script), *map(str, args)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def one_process(script, *args):
    done = subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, args)], cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def assert_same_steps(a, b, keys):
    rows_a, rows_b = checkpoint.read_metrics(str(a))[1:], checkpoint.read_metrics(str(b))[1:]
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b] and rows_a
    for ra, rb in zip(rows_a, rows_b):
        assert ra["train_acc"] == rb["train_acc"]
        for key in keys:
            assert ra[key] == pytest.approx(rb[key], rel=1e-4, abs=1e-7), (ra["step"], key)
        assert ra["distinct_lemmas"] == rb["distinct_lemmas"]


def assert_same_weights(a, b, name="final"):
    wa, wb = load_file(os.path.join(a, name, "model.safetensors")), load_file(os.path.join(b, name, "model.safetensors"))
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=1e-5, rtol=0)


def test_share_splits_contiguously_and_covers_everything(monkeypatch):
    got = []
    for r in range(3):
        monkeypatch.setattr(parallel, "rank", lambda r=r: r)
        monkeypatch.setattr(parallel, "size", lambda: 3)
        got.append(list(parallel.share(8)))
    assert got == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert parallel.statement_seed(0, 1, 2) != parallel.statement_seed(0, 1, 3)


def test_fd_on_two_processes_equals_one(tiny_prover, tmp_path):
    args = ["--model", tiny_prover, "--steps", 2, "--prompts", 8, "--eval-limit", 4, "--eval-n", 2, "--threads", 1,
            "--max-new-tokens", 20, "--save-every", 1]
    one_process("fd.py", *args, "--out", tmp_path / "one")
    out = torchrun("fd.py", *args, "--out", tmp_path / "two")
    assert out.count("held-out pass@1") == 2   # rank 0 alone prints: its "before" line and the change
    assert_same_steps(tmp_path / "one", tmp_path / "two", TRAINING)
    assert_same_weights(tmp_path / "one", tmp_path / "two")
    # a run started on 2 processes resumes on 1: the same third step as a straight one-process run
    one_process("fd.py", "--resume", tmp_path / "two", "--steps", 3)
    one_process("fd.py", *args, "--steps", 3, "--out", tmp_path / "straight")
    assert_same_steps(tmp_path / "straight", tmp_path / "two", TRAINING)
    assert_same_weights(tmp_path / "straight", tmp_path / "two")


@pytest.fixture(scope="module")
def easy_tasks(tmp_path_factory):
    """Statements any hypothesis proves: the tiny prover succeeds now and then, so GRPO's groups carry signal."""
    path = tmp_path_factory.mktemp("easy") / "easy.jsonl"
    with open(path, "w") as f:
        for i, v in enumerate("pqrs" * 2):
            hyps = " ".join(f"(h{k} : {v})" for k in range(6))
            f.write(json.dumps(dict(name=f"easy_{i}", statement=f"theorem easy_{i} (p q r s : Prop) {hyps} : {v} :=",
                                    solution="h0", level=1)) + "\n")
    return str(path)


@pytest.mark.parametrize("fsdp", [False, True])
def test_grpo_on_two_processes_equals_one(tiny_prover, easy_tasks, tmp_path, fsdp):
    """5 statements (shares of 3 and 2), G = 4, micro-batches of 6; with --fsdp the policy and the reference are
    sharded (FSDP2) and a full copy samples."""
    args = ["--model", tiny_prover, "--steps", 2, "--prompts", 5, "--group", 4, "--eval-limit", 4, "--eval-n", 2,
            "--threads", 1, "--max-new-tokens", 8, "--micro-batch", 6, "--lr", 3e-3, "--tasks", f"jsonl:{easy_tasks}",
            "--eval-tasks", f"jsonl:{easy_tasks}", "--seed", 3]
    one_process("grpo.py", *args, "--out", tmp_path / "one")
    torchrun("grpo.py", *args, *(["--fsdp"] if fsdp else []), "--out", tmp_path / "two")
    assert any(r["frac_groups_with_signal"] > 0 for r in checkpoint.read_metrics(str(tmp_path / "one"))[1:])
    assert_same_steps(tmp_path / "one", tmp_path / "two", ("loss", "kl", "entropy", "attempt_len", "clip_frac",
                                                           "frac_groups_with_signal", "grad_norm"))
    assert_same_weights(tmp_path / "one", tmp_path / "two")


def test_fd_sharded_equals_one_process_and_resumes_unsharded(tiny_prover, tmp_path):
    """--fsdp: student and EMA teacher sharded (the teacher averaged every step), micro-batches of 3 over shares
    of 4 and 3 statements; the run's state is saved whole, so it resumes on one process, unsharded."""
    args = ["--model", tiny_prover, "--steps", 2, "--prompts", 7, "--eval-limit", 4, "--eval-n", 2, "--threads", 1,
            "--max-new-tokens", 20, "--save-every", 1, "--micro-batch", 3, "--ema-every", 1]
    one_process("fd.py", *args, "--steps", 3, "--out", tmp_path / "one")
    torchrun("fd.py", *args, "--fsdp", "--out", tmp_path / "two")
    one_process("fd.py", "--resume", tmp_path / "two", "--steps", 3)
    assert_same_steps(tmp_path / "one", tmp_path / "two", TRAINING + ("grad_norm",))
    assert_same_weights(tmp_path / "one", tmp_path / "two")
    teachers = [torch.load(d / "state.pt", weights_only=False)["nets"]["teacher"] for d in (tmp_path / "one", tmp_path / "two")]
    for key in teachers[0]:
        torch.testing.assert_close(teachers[0][key], teachers[1][key], atol=1e-5, rtol=0)


def test_fd_micro_batches_equal_the_whole_batch(tiny_prover, tmp_path):
    base = dict(model=tiny_prover, steps=2, prompts=7, eval_limit=2, eval_n=1, eval_every=0, save_every=2,
                max_new_tokens=20, threads=1, seed=5)
    fd.train(fd.Config(out=str(tmp_path / "whole"), **base))
    fd.train(fd.Config(out=str(tmp_path / "micro"), micro_batch=3, **base))   # 3 + 3 + 1 attempts
    assert_same_steps(tmp_path / "whole", tmp_path / "micro", TRAINING)
    assert_same_weights(str(tmp_path / "whole"), str(tmp_path / "micro"))


def test_evaluate_gathers_the_shares(tiny_prover, tmp_path):
    torchrun("evaluate.py", "--model", tiny_prover, "--limit", 5, "-n", 4, "--k", "1,4", "--out", tmp_path / "eval")
    results = json.load(open(tmp_path / "eval" / "results.json"))
    attempts = [json.loads(line) for line in open(tmp_path / "eval" / "attempts_1.jsonl")]
    assert results["tasks"]["n_tasks"] == 5 and len(attempts) == 20
    assert [a["task"] for a in attempts] == [i for i in range(5) for _ in range(4)]   # every task, in order
