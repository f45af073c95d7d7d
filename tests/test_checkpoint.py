"""checkpoint.py: a saved state restores weights, optimizer, RNG and trims later metric lines."""
import json
import os
import random

import pytest
import torch

import checkpoint


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


def test_missing_state_is_a_clear_error(tmp_path):
    net, opt, sched = _setup(0)
    with pytest.raises(SystemExit, match="no state.pt"):
        checkpoint.load_state(str(tmp_path), {"student": net}, opt, sched)
    with pytest.raises(SystemExit, match="no config.json"):
        checkpoint.read_config(str(tmp_path))
