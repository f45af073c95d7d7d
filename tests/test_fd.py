"""fd.py's teacher and training loop, on the real tiny prover and the real Lean.

The loss functions have their own file (test_fd_loss.py); here: the EMA teacher, that the teacher
never receives gradients, the metrics and checkpoints a run writes, exact resume, skipped NaN steps,
and a real HF (Qwen2-style, chat template) model through two steps.
"""
import os

import pytest
import torch

import fd
from fdlean import lm, prompting
from mini import tasks
from training import checkpoint
from training import run as training_run


def small_config(path, out, **kw):
    base = dict(model=path, out=str(out), steps=4, prompts=4, eval_limit=4, eval_n=2, eval_every=2,
                save_every=2, max_new_tokens=20, threads=1, seed=3)
    return fd.Config(**{**base, **kw})


def without_times(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time_")} for r in rows]


def test_ema_update_is_the_papers_average():
    torch.manual_seed(0)
    student, teacher = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    mu0 = [p.detach().clone() for p in teacher.parameters()]
    fd.ema_update(teacher, student, 0.9)
    for mu, m0, theta in zip(teacher.parameters(), mu0, student.parameters()):
        torch.testing.assert_close(mu, 0.9 * m0 + 0.1 * theta)
    fd.ema_update(teacher, student, 0.0)  # alpha = 0: a copy of the student
    for mu, theta in zip(teacher.parameters(), student.parameters()):
        torch.testing.assert_close(mu, theta)
    frozen = [p.detach().clone() for p in teacher.parameters()]
    with torch.no_grad():
        student.weight.add_(1.0)
    fd.ema_update(teacher, student, 1.0)  # alpha = 1: frozen
    assert all(torch.equal(a, b) for a, b in zip(teacher.parameters(), frozen))


def test_teacher_never_receives_gradients(tiny_prover):
    import feedback
    import lean_env
    from mini import tasks
    cfg = small_config(tiny_prover, "unused")
    policy = lm.load(tiny_prover)
    policy.model.train()
    teacher = fd.make_teacher(policy.model)
    teacher_before = [p.clone() for p in teacher.parameters()]
    student_before = [p.detach().clone() for p in policy.model.parameters()]
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=1e-3)
    batch = tasks.load("mini", split="train", n=4, seed=1)
    row = fd.fd_step(cfg, policy, teacher, lean_env.load("mini"), feedback.load("tutor"), optimizer,
                     batch, torch.Generator().manual_seed(0))
    assert row["loss"] > 0 and row["grad_norm"] > 0 and policy.model.training
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(a, b) for a, b in zip(teacher.parameters(), teacher_before))
    assert any(not torch.equal(a, b) for a, b in zip(policy.model.parameters(), student_before))
    assert row["feedback_len"] > 0 and 0 <= row["train_acc"] <= 1 and row["kl"] >= -1e-6


def test_run_writes_metrics_and_loadable_checkpoints(tiny_prover, tmp_path):
    out = tmp_path / "run"
    result = fd.train(small_config(tiny_prover, out, steps=2, save_every=1))
    rows = checkpoint.read_metrics(str(out))
    assert rows[0]["step"] == 0 and "heldout_pass1" in rows[0]
    for key in ("step", "loss", "train_acc", "entropy", "kl", "attempt_len", "feedback_len",
                "feedback_failures", "grad_norm", "lr", "time_sample", "time_lean", "time_feedback",
                "time_teacher", "time_student", "time_update", "distinct_lemmas", "epistemic_words",
                "long_prompts_skipped", "verifier_errors"):
        assert key in rows[1], key
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert result["before"] == rows[0]["heldout_pass1"] and result["after"] == rows[2]["heldout_pass1"]
    for ckpt in ("step_000001", "final"):
        assert os.path.isfile(out / ckpt / "model.safetensors")
    reloaded = lm.load(str(out / "final"))
    ids = torch.tensor([prompting.encode(reloaded.tokenizer, tasks.load("mini")[0])])
    assert torch.isfinite(reloaded.model(ids).logits).all()
    # a second run with the same --out is refused: the finished run stays exactly as it was
    files = {name: (out / name).read_bytes() for name in ("config.json", "metrics.jsonl", "final/model.safetensors")}
    with pytest.raises(SystemExit) as e:
        fd.train(small_config(tiny_prover, out, steps=1, alpha=0.5))
    assert e.value.code == 2
    assert all((out / name).read_bytes() == data for name, data in files.items())


def test_resumed_run_equals_an_uninterrupted_one(tiny_prover, tmp_path):
    fd.train(small_config(tiny_prover, tmp_path / "straight"))
    fd.train(small_config(tiny_prover, tmp_path / "killed", steps=2))
    # what a killed run leaves behind past its last save must not leak into the resumed run
    checkpoint.append_metrics(str(tmp_path / "killed"), {"step": 3, "loss": 123.0})
    fd.train(fd.parse_args(["--resume", str(tmp_path / "killed"), "--steps", "4"]))
    straight = without_times(checkpoint.read_metrics(str(tmp_path / "straight")))
    resumed = without_times(checkpoint.read_metrics(str(tmp_path / "killed")))
    assert resumed == straight


def test_nonfinite_loss_skips_the_step(tiny_prover, tmp_path, monkeypatch):
    real = fd.fused_loss
    calls = []

    def poisoned(*args, **kwargs):
        loss, kl = real(*args, **kwargs)
        calls.append(1)
        return (loss * float("nan"), kl) if len(calls) == 2 else (loss, kl)

    monkeypatch.setattr(fd, "fused_loss", poisoned)
    out = tmp_path / "nan"
    fd.train(small_config(tiny_prover, out, steps=3, eval_every=0))
    rows = checkpoint.read_metrics(str(out))
    assert rows[2]["loss"] is None and rows[2]["skipped_nonfinite"] == 1
    assert rows[3]["skipped_nonfinite"] == 1 and rows[3]["loss"] is not None
    state = torch.load(out / "state.pt", weights_only=False)
    assert all(torch.isfinite(t).all() for t in state["nets"]["student"].values())


def test_bad_option_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        fd.parse_args(["--alpha", "not-a-number"])
    with pytest.raises(SystemExit):
        fd.parse_args(["--resume", str(tmp_path)])
    assert capsys.readouterr().err.endswith(f"fd.py: --resume {tmp_path}: no config.json there; "
                                            "is this a run folder of fd.py / grpo.py?\n")


@pytest.mark.parametrize("field, bad", [("steps", 0), ("prompts", 0), ("lr", 0.0), ("topk", -1), ("alpha", 1.5),
                                        ("alpha", -0.1), ("ema_every", 0), ("temperature", -1.0), ("top_p", 0.0),
                                        ("max_new_tokens", 0), ("chunk_size", 0), ("eval_limit", -1),
                                        ("threads", 0), ("save_every", 0), ("grad_clip", 0.0), ("temperature", 0.7),
                                        ("max_prompt", -1), ("feedback_prompt", 5), ("prompt", "llama")])
def test_every_setting_is_checked_before_a_model_loads(field, bad, tmp_path, capsys):
    cfg = fd.Config(model=str(tmp_path / "never-loaded"), out=str(tmp_path / "out"), **{field: bad})
    with pytest.raises(SystemExit) as e:
        fd.setup(cfg)
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith(f"fd.py: --{field.replace('_', '-')} {bad}: must be ")
    assert not os.path.exists(tmp_path / "out")


def test_real_hf_model_with_chat_template_two_steps(qwen_dir, tmp_path):
    out = tmp_path / "qwen"
    fd.train(small_config(qwen_dir, out, steps=2, feedback="ground-truth", max_new_tokens=8,
                          eval_limit=2, eval_every=0))
    rows = checkpoint.read_metrics(str(out))
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert all(r["loss"] is not None and r["loss"] > 0 for r in rows[1:])
    assert os.path.isfile(out / "final" / "model.safetensors")


def test_long_prompts_are_skipped_and_counted(tiny_prover, tmp_path):
    """--max-prompt (the paper's 2048 under --paper): statements whose prompt is longer are never trained on."""
    from mini import tasks
    policy = lm.load(tiny_prover)
    stream = tasks.stream("mini:1", seed=3)
    lengths = [len(prompting.encode(policy.tokenizer, next(stream))) for _ in range(40)]
    limit = sorted(lengths)[len(lengths) // 2]
    out = tmp_path / "short"
    fd.train(small_config(tiny_prover, out, steps=1, max_prompt=limit, eval_every=0, eval_limit=2))
    row = checkpoint.read_metrics(str(out))[1]
    assert row["long_prompts_skipped"] > 0


def test_a_critic_failing_every_call_stops_the_run_with_a_clear_error(tiny_prover, tmp_path, monkeypatch, capsys):
    import feedback
    real = feedback.Feedback.batch

    def failing(self, items):
        if failing.calls == 1:
            raise feedback.FeedbackError("feedback openai:x: every call failed in 3 batches in a row")
        failing.calls += 1
        return real(self, items)
    failing.calls = 0
    monkeypatch.setattr(feedback.Feedback, "batch", failing)
    out = tmp_path / "critic"
    with pytest.raises(SystemExit) as e:
        fd.train(small_config(tiny_prover, out, steps=3, save_every=1, eval_every=0, eval_limit=2))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "step 2" in err and f"--resume {out}" in err and "every call failed" in err
    assert os.path.isdir(out / "step_000001")    # what step 1 learnt is kept


def test_memory_estimate_counts_weights_optimizer_teacher_and_a_micro_batch(tiny_prover):
    policy = lm.load(tiny_prover)
    n = sum(p.numel() for p in policy.model.parameters())
    line = training_run.memory_estimate(small_config(tiny_prover, "unused", micro_batch=2), policy.model)
    assert f"weights {4 * n / 1e9:.3g}," in line and f"adamw {8 * n / 1e9:.3g}," in line and "micro-batch 2 x" in line
    whole = training_run.memory_estimate(small_config(tiny_prover, "unused", micro_batch=0, prompts=64), policy.model)
    act = lambda text: float(text.split("activations ")[1].split(";")[0])
    assert act(whole) > act(line)   # 64 attempts at once hold more than 2


def test_wandb_watches_the_run_offline_and_the_run_plots_its_curves(tiny_prover, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for key, value in dict(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(tmp_path)).items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "watched"
    fd.train(small_config(tiny_prover, out, steps=1, eval_every=0, eval_limit=2, wandb="fd-tests"))
    run_id = (out / "wandb_id.txt").read_text().strip()
    assert run_id and any(p.name.endswith(run_id) for p in (out / "wandb").glob("offline-run-*"))
    assert (out / "curves.png").stat().st_size > 0
