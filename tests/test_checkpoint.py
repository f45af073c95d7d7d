"""checkpoint.py: a saved state restores weights, optimizer, RNG and trims later metric lines; a run
folder holds one run; settings out of range are one line and exit status 2."""
import json
import os
import random
from types import SimpleNamespace

import pytest
import torch

from fdlean import cli
from training import checkpoint
from training import run as training_run


def _setup(seed):
    torch.manual_seed(seed)
    net = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 3))
    return net, opt, sched


def _train(net, opt, sched, steps):
    for _ in range(steps):
        loss = net(torch.randn(8, 4)).pow(2).mean() + random.random()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return loss.item()


def test_resume_is_exact(tmp_path):
    out = str(tmp_path)
    net, opt, sched = _setup(0)
    random.seed(1)
    _train(net, opt, sched, 3)
    for s in range(1, 6):
        checkpoint.append_metrics(out, {"step": s, "loss": float(s)})
    checkpoint.save_state(out, 3, {"student": net}, opt, sched, {"data_pos": 24})
    expected = _train(net, opt, sched, 2)

    net2, opt2, sched2 = _setup(123)  # different init: everything must come from the state
    info = checkpoint.load_state(out, {"student": net2}, opt2, sched2)
    assert info == {"step": 3, "extra": {"data_pos": 24}}
    assert [r["step"] for r in checkpoint.read_metrics(out)] == [1, 2, 3]
    assert _train(net2, opt2, sched2, 2) == expected
    assert torch.equal(net.weight, net2.weight)


def test_nonfinite_metrics_stay_json(tmp_path):
    checkpoint.append_metrics(str(tmp_path), {"step": 1, "loss": float("nan"), "kl": float("inf")})
    row = json.loads(open(os.path.join(tmp_path, "metrics.jsonl")).read())
    assert row == {"step": 1, "loss": None, "kl": None}


def test_missing_state_is_a_clear_error(tmp_path, capsys):
    net, opt, sched = _setup(0)
    with pytest.raises(SystemExit) as e:
        checkpoint.load_state(str(tmp_path), {"student": net}, opt, sched)
    assert e.value.code == 2 and "no state.pt" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        checkpoint.read_config(str(tmp_path))
    assert e.value.code == 2 and "no config.json" in capsys.readouterr().err


def refusal(cfg, capsys):
    """check_out's one line, or None when it lets the run start."""
    try:
        checkpoint.check_out(cfg, "fd.py")
    except SystemExit as e:
        assert e.code == 2
        [line] = capsys.readouterr().err.splitlines()
        return line
    return None


def test_a_run_folder_holds_one_run(tmp_path, capsys):
    out = tmp_path / "run"
    new = SimpleNamespace(out=str(out), resume="")
    assert refusal(new, capsys) is None  # no folder yet
    out.mkdir()
    (out / "feedback_cache").mkdir()
    assert refusal(new, capsys) is None  # a folder without a run (a start that failed early)
    checkpoint.write_config(str(out), {"steps": 1})
    checkpoint.append_metrics(str(out), {"step": 0, "heldout_pass1": 0.2})
    line = refusal(new, capsys)  # a run killed before its first save: nothing to resume
    assert "never saved" in line and f"delete {out}" in line and "new --out" in line
    assert "no state.pt" in refusal(SimpleNamespace(out=str(out), resume=str(out)), capsys)
    (out / "state.pt").write_bytes(b"")
    line = refusal(new, capsys)
    assert line.startswith(f"fd.py: --out {out} already holds a run")
    assert f"--resume {out}" in line and "--steps N" in line and "new --out" in line
    assert refusal(SimpleNamespace(out=str(out), resume=str(out)), capsys) is None


def test_rules_name_the_option_and_the_range(capsys):
    rules = [r for r in training_run.RULES if r[0] in ("steps", "top_p", "lr")]
    good = dict(steps=1, top_p=1.0, lr=1e-4)
    cli.check(SimpleNamespace(**good), rules, "fd.py")
    for field, bad, line in [("steps", 0, "fd.py: --steps 0: must be at least 1"),
                             ("top_p", 1.5, "fd.py: --top-p 1.5: must be above 0 and at most 1"),
                             ("lr", float("nan"), "fd.py: --lr nan: must be above 0")]:
        with pytest.raises(SystemExit) as e:
            cli.check(SimpleNamespace(**{**good, field: bad}), rules, "fd.py")
        assert e.value.code == 2 and capsys.readouterr().err == line + "\n"


class _Payload:
    """Unpickling this runs os.system: what a crafted state.pt in someone else's run folder would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_state_runs_no_code_on_resume(tmp_path, capsys):
    """Issue 29, row 1: torch.load(weights_only=False) ran a __reduce__ payload; now a state is data only."""
    marker = tmp_path / "pwned"
    net, opt, sched = _setup(0)
    checkpoint.save_state(str(tmp_path), 1, {"student": net}, opt, sched)
    state = torch.load(tmp_path / "state.pt", weights_only=True)   # what save_state writes loads as data...
    state["extra"] = {"x": _Payload(str(marker))}
    torch.save(state, tmp_path / "state.pt")
    with pytest.raises(SystemExit) as e:
        checkpoint.load_state(str(tmp_path), {"student": net}, opt, sched)
    assert e.value.code == 2 and not marker.exists()
    assert "is not a training state this project wrote" in capsys.readouterr().err
    (tmp_path / "state.pt").write_bytes(b"\x80\x04cut")   # a cut or foreign file: one line too
    with pytest.raises(SystemExit):
        checkpoint.load_state(str(tmp_path), {"student": net}, opt, sched)


def test_what_save_state_writes_loads_as_data(tmp_path):
    """Every kind of state the trainers save (weights, AdamW, the warmup schedule, RNG, extra lists) loads with
    weights_only=True; sharded and CUDA states are the same containers (tests/test_parallel.py resumes one)."""
    net, opt, sched = _setup(0)
    _train(net, opt, sched, 2)
    checkpoint.save_state(str(tmp_path), 2, {"student": net, "teacher": torch.nn.Linear(4, 3)}, opt, sched,
                          {"skipped": 0, "before": 0.5, "before_tasks": [0.0, 1.0], "lemmas": ["Or.inl"]})
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["step"] == 2 and state["extra"]["lemmas"] == ["Or.inl"] and "teacher" in state["nets"]


def test_resume_hint_says_resume_only_when_a_state_was_saved(tmp_path):
    """A run stopped before its first save has nothing to resume: the hint says to start again, naming the
    folder to delete (fd.py refuses an --out that holds a run); after a save it gives the --resume command."""
    out = tmp_path / "run"
    out.mkdir()
    cfg = SimpleNamespace(resume="", out=str(out))
    assert checkpoint.resume_hint(cfg, "fd.py") == f"Nothing was saved yet: start it again (delete {out} first: rm -r {out})"
    (out / "state.pt").write_bytes(b"")
    assert checkpoint.resume_hint(cfg, "grpo.py") == f"`python grpo.py --resume {out}` continues it from its last save"
    assert checkpoint.resume_hint(SimpleNamespace(resume=str(out), out="elsewhere"), "fd.py").endswith(
        f"--resume {out}` continues it from its last save")
