"""explain.py on the real tiny prover, a tiny chat model and the real Lean: one row per attempt token, real
probabilities, and per-token losses that average to what FD's training loss (fd_loss's fused path, as
fd.py calls it) gives on the same attempt; a bad option is one clear line."""
import json
import math
import os

import pytest
import torch

from fd_loss import TOPK, fused_loss, teacher_topk
from fdlean import lm, prompting
from mini import tasks
from scripts import explain


def run(tmp_path, *args):
    out = explain.main([*args, "--out", str(tmp_path), "--threads", "1"])
    with open(tmp_path / "explain.json") as f:
        assert json.load(f) == json.loads(json.dumps(out))  # the file holds what the run returned
    assert os.path.getsize(tmp_path / "explain.png") > 5000
    return out


def fd_step_loss(model_dir, out):
    """The loss fd.py's step computes on these attempts and feedback texts, recomputed from scratch."""
    policy = lm.load(model_dir, dtype=torch.float32)
    tok, net = policy.tokenizer, policy.model
    named = {t.name: t for t in tasks.load(out["settings"]["tasks"])}
    batch = [named[e["task"]] for e in out["attempts"]]
    ids = [[r["id"] for r in e["tokens"]] for e in out["attempts"]]
    with torch.no_grad():
        students = [prompting.encode(tok, t) for t in batch]
        teachers = [prompting.encode(tok, t, e["feedback"]) for t, e in zip(batch, out["attempts"])]
        t_hidden, _, mask = lm.attempt_hidden(net, teachers, ids, tok.pad_token_id)
        top_ids, top_logprobs = teacher_topk(t_hidden, lm.head_weight(net), TOPK, mask=mask)
        s_hidden, _, _ = lm.attempt_hidden(net, students, ids, tok.pad_token_id)
        return fused_loss(s_hidden, lm.head_weight(net), top_ids, top_logprobs, mask).item()


def check_rows(out, model_dir):
    rows = [r for e in out["attempts"] for r in e["tokens"]]
    for r in rows:
        assert 0 <= r["p_student"] <= 1 and 0 <= r["p_teacher"] <= 1  # (KL on the top K only: it may dip below 0)
        assert len(r["teacher_top3"]) == 3 and all(0 <= p <= 1 for _, p in r["teacher_top3"])
        assert r["teacher_top3"][0][1] >= r["p_teacher"] - 1e-6  # the teacher's top token is at least as likely
    assert sum(r["loss"] for r in rows) / len(rows) == pytest.approx(fd_step_loss(model_dir, out), abs=1e-5)
    for e in out["attempts"]:
        assert e["loss"] == pytest.approx(sum(r["loss"] for r in e["tokens"]) / len(e["tokens"]), abs=1e-5)


def test_given_attempt_on_the_tiny_prover(tiny_prover, tmp_path, capsys):
    out = run(tmp_path, "--model", tiny_prover, "--task", "mini_test_0003", "--attempt", "Iff.intro hb ha")
    [e] = out["attempts"]
    tok = lm.load_tokenizer(tiny_prover)
    assert [r["id"] for r in e["tokens"]] == tok("Iff.intro hb ha", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert e["lean"]["ok"] and e["feedback"] == "Example of a correct solution: Iff.intro hb ha"
    assert any(abs(r["p_teacher"] - r["p_student"]) > 1e-3 for r in e["tokens"])  # the feedback changes something
    check_rows(out, tiny_prover)
    printed = capsys.readouterr().out
    assert sum("<= largest loss" in line for line in printed.splitlines()) == 3 and "teacher's top 3" in printed


def test_sampled_batch_and_positions(tiny_prover, tmp_path, capsys):
    out = run(tmp_path, "--model", tiny_prover, "--n", "3", "--max-new-tokens", "16", "--feedback", "tutor")
    assert [e["task"] for e in out["attempts"]] == ["mini_test_0001", "mini_test_0002", "mini_test_0003"]
    assert all(1 <= len(e["tokens"]) <= 16 for e in out["attempts"])
    assert all(e["feedback"].startswith("Hint:") for e in out["attempts"])
    check_rows(out, tiny_prover)
    counted = sum(d["tokens"] for d in out["positions"]["deciles"])
    assert counted == sum(len(e["tokens"]) for e in out["attempts"])
    assert os.path.getsize(tmp_path / "positions.png") > 5000
    assert "by position in the attempt" in capsys.readouterr().out
    # accepted / rejected: the mean log ratio of the attempt's own tokens and the entropy gap, from the rows
    for key, ok in (("accepted attempts", True), ("rejected attempts", False)):
        rows = [r for e in out["attempts"] if e["lean"]["ok"] == ok for r in e["tokens"]]
        if rows:
            got = out["positions"]["where"][key]
            assert got["log_ratio"] == pytest.approx(
                sum(math.log(r["p_teacher"] / r["p_student"]) for r in rows) / len(rows), abs=1e-6)
            assert got["entropy_gap"] == pytest.approx(
                sum(r["entropy_teacher"] - r["entropy_student"] for r in rows) / len(rows), abs=1e-6)
    vocab = len(lm.load_tokenizer(tiny_prover))
    assert all(0 <= r[k] <= math.log(vocab) + 1e-4 for e in out["attempts"] for r in e["tokens"]
               for k in ("entropy_student", "entropy_teacher"))


def test_chat_model_sampled_and_given(qwen_dir, tmp_path):
    out = run(tmp_path / "sampled", "--model", qwen_dir, "--max-new-tokens", "10")
    check_rows(out, qwen_dir)
    assert 1 <= len(out["attempts"][0]["tokens"]) <= 10  # the assistant's tokens only, not the chat prompt's
    given = run(tmp_path / "given", "--model", qwen_dir, "--attempt", "⟨a, h1⟩", "--feedback", "none")
    [e] = given["attempts"]
    assert e["feedback"] == "" and e["proof"] == "⟨a, h1⟩" and e["lean"]["ok"]  # mini_test_0001's reference
    tok = lm.load_tokenizer(qwen_dir)
    assert [r["id"] for r in e["tokens"]][-1] == tok.eos_token_id  # the assistant turn's end
    # without feedback the teacher's prompt IS the student's: nothing to distill
    assert all(abs(r["p_teacher"] - r["p_student"]) < 1e-6 and abs(r["kl"]) < 1e-6 for r in e["tokens"])
    check_rows(given, qwen_dir)


@pytest.mark.parametrize("args, says", [
    (["--task", "no_such_task"], "explain.py: --task no_such_task: no task of that name in --tasks mini:test"),
    (["--attempt", "h1", "--n", "2"], "explain.py: --attempt with --n 2:"),
    (["--n", "0"], "explain.py: --n 0: must be at least 1"),
    (["--feedback", "bogus"], "explain.py: --feedback bogus: unknown feedback spec"),
])
def test_bad_options_are_one_clear_line(tmp_path, capsys, args, says):
    with pytest.raises(SystemExit) as stop:
        explain.main(["--out", str(tmp_path / "out")] + args)  # the preset: refused before it is built or loaded
    assert stop.value.code == 2
    assert says in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out")
