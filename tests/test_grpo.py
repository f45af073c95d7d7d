"""grpo.py: advantages on hand-made reward tables, the loss against a plain per-token reference
(value and gradient, each aggregation), the chunked log-probs against a full log_softmax, and the
training loop end to end on the real small prover with real Lean (two steps, checkpoint, resume)."""
import json
import math
import os

import pytest
import torch

import grpo
from fdlean import lm

torch.set_num_threads(1)


# ------------------------------------------------------------------------------ advantages
def test_advantages_on_hand_made_rewards():
    r = torch.tensor([[1., 0., 0., 0., 0.],   # one success in five
                      [1., 1., 1., 1., 1.],   # all solved: no signal
                      [0., 0., 0., 0., 0.],   # none solved: no signal
                      [1., 1., 0., 0., 1.]])
    a = grpo.group_advantages(r)
    std1 = math.sqrt((0.8 ** 2 + 4 * 0.2 ** 2) / 4)  # unbiased std of [1, 0, 0, 0, 0]
    assert a[0].tolist() == pytest.approx([0.8 / (std1 + 1e-4)] + [-0.2 / (std1 + 1e-4)] * 4)
    assert (a[1] == 0).all() and (a[2] == 0).all()
    std3 = math.sqrt((3 * 0.4 ** 2 + 2 * 0.6 ** 2) / 4)
    assert a[3].tolist() == pytest.approx([0.4 / (std3 + 1e-4)] * 2 + [-0.6 / (std3 + 1e-4)] * 2
                                          + [0.4 / (std3 + 1e-4)])
    assert a.sum(1).abs().max() < 1e-5  # every group's advantages sum to zero

    dr = grpo.group_advantages(r, std_scale=False)  # Dr. GRPO: r - mean, no scaling
    assert dr[0].tolist() == pytest.approx([0.8, -0.2, -0.2, -0.2, -0.2])
    assert dr[3].tolist() == pytest.approx([0.4, 0.4, -0.6, -0.6, 0.4])
    assert (dr[1] == 0).all() and (dr[2] == 0).all()


def test_all_equal_groups_are_exactly_zero_even_for_non_binary_rewards():
    # 0.45938294312745087 * 3 / 3 != 0.45938294312745087 in floating point: r - mean leaves a residue
    x = 0.45938294312745087
    r = torch.tensor([[x, x, x], [0.7, 0.7, 0.7], [0.3, 0.3, 0.30001]], dtype=torch.float64)
    assert (r[:1] - r[:1].mean(1, keepdim=True)).abs().max() > 0
    for scale in (True, False):
        a = grpo.group_advantages(r, std_scale=scale)
        assert (a[:2] == 0).all(), a  # exactly: no rounding residue
        assert (a[2] != 0).all()


# ------------------------------------------------------------------------------ the loss
def plain_grpo_loss(logp, old, ref, adv, mask, eps, beta, agg, max_len):
    """Token by token, with Python loops: the definition the vectorised loss must match.
    Returns (loss, fraction of tokens where the clip zeroes the policy gradient, mean k3 KL)."""
    B, T = logp.shape
    per_seq, n_tok, total, n_clip, kl_sum = [], 0, 0, 0, 0.0
    for i in range(B):
        s, n = 0, 0
        for t in range(T):
            if not mask[i, t]:
                continue
            rho = torch.exp(logp[i, t] - old[i, t])
            surr = torch.minimum(rho * adv[i], torch.clamp(rho, 1 - eps, 1 + eps) * adv[i])
            d = ref[i, t] - logp[i, t]
            kl = torch.exp(d) - d - 1
            s = s - surr + beta * kl
            n += 1
            kl_sum += kl.item()
            n_clip += bool((rho > 1 + eps and adv[i] > 0) or (rho < 1 - eps and adv[i] < 0))
        per_seq.append((s, n))
        n_tok += n
        total = total + s
    if agg == "token":
        loss = total / n_tok
    elif agg == "seq":
        loss = sum(s / max(n, 1) for s, n in per_seq) / B
    else:
        loss = total / (B * max_len)
    return loss, n_clip / n_tok, kl_sum / n_tok


def random_batch(seed, B=6, T=9):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
    old = logp + 0.4 * torch.randn(B, T, generator=g, dtype=torch.float64)  # ratios well beyond 1 +- 0.2
    ref = logp + 0.5 * torch.randn(B, T, generator=g, dtype=torch.float64)
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    lengths = torch.tensor([9, 1, 5, 3, 7, 2])[:B]
    mask = torch.arange(T)[None] < lengths[:, None]
    return logp, old, ref, adv, mask


@pytest.mark.parametrize("agg", ["token", "seq", "constant"])
def test_loss_matches_plain_reference_in_value_and_gradient(agg):
    for seed in range(3):
        logp, old, ref, adv, mask = random_batch(seed)
        x = logp.clone().requires_grad_()
        loss, stats = grpo.grpo_loss(x, old, ref, adv, mask, 0.2, 0.05, agg, max_len=12)
        loss.backward()
        y = logp.clone().requires_grad_()
        want, clip_frac, kl = plain_grpo_loss(y, old, ref, adv, mask, 0.2, 0.05, agg, 12)
        want.backward()
        assert loss.item() == pytest.approx(want.item(), rel=1e-10)
        assert torch.allclose(x.grad, y.grad, rtol=1e-9, atol=1e-12)
        assert (x.grad[~mask] == 0).all()  # padding never receives gradient
        assert stats["clip_frac"] == pytest.approx(clip_frac) and 0 < clip_frac < 1
        assert stats["kl"] == pytest.approx(kl) and kl > 0


def test_micro_batches_add_up_to_the_full_batch():
    logp, old, ref, adv, mask = random_batch(7)
    for agg in ("token", "seq", "constant"):
        full, _ = grpo.grpo_loss(logp, old, ref, adv, mask, agg=agg, max_len=12)
        parts = sum(grpo.grpo_loss(logp[i:i + 2], old[i:i + 2], ref[i:i + 2], adv[i:i + 2], mask[i:i + 2],
                                   agg=agg, max_len=12, n_tokens=mask.sum(), n_seqs=len(mask))[0]
                    for i in range(0, len(mask), 2))
        assert parts.item() == pytest.approx(full.item(), rel=1e-12), agg


def test_one_inner_step_is_the_plain_policy_gradient_plus_kl():
    """rho = 1 when old = logp.detach(): the gradient is -A / n per token (token mean), plus beta times
    the k3 gradient 1 - exp(ref - logp); nothing is clipped."""
    logp, _, ref, adv, mask = random_batch(3)
    x = logp.clone().requires_grad_()
    loss, stats = grpo.grpo_loss(x, x.detach(), ref, adv, mask, 0.2, 0.1)
    loss.backward()
    n = mask.sum()
    want = (-adv[:, None] + 0.1 * (1 - torch.exp(ref - logp))) / n * mask
    assert torch.allclose(x.grad, want, atol=1e-12) and stats["clip_frac"] == 0
    # with the policy equal to the reference, the KL term is exactly 0 and so is its gradient
    y = logp.clone().requires_grad_()
    loss, stats = grpo.grpo_loss(y, y.detach(), logp, torch.zeros(len(mask), dtype=torch.float64), mask)
    loss.backward()
    assert loss.item() == 0 and stats["kl"] == 0 and (y.grad == 0).all()


# ------------------------------------------------------------------------------ chunked log-probs
@pytest.mark.parametrize("chunk_size", [1, 5, 1000])
def test_chunked_logprobs_match_a_full_log_softmax(chunk_size):
    g = torch.Generator().manual_seed(0)
    B, T, H, V = 3, 7, 8, 50
    hidden = torch.randn(B, T, H, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(V, H, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(V, (B, T), generator=g)
    mask = torch.arange(T)[None] < torch.tensor([7, 2, 4])[:, None]
    upstream = torch.randn(B, T, generator=g, dtype=torch.float64)

    logp, ent = lm.chunked_logprobs(hidden, weight, targets, mask, chunk_size, entropy=True)
    (logp * upstream).sum().backward()
    got = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None

    full = torch.log_softmax(hidden @ weight.T, dim=-1)  # the (B, T, V) tensor the fast path avoids
    want = full.gather(-1, targets[..., None]).squeeze(-1) * mask
    (want * upstream).sum().backward()
    assert torch.allclose(logp, want, rtol=1e-12, atol=1e-12)
    assert torch.allclose(ent, -(full.exp() * full).sum(-1) * mask, rtol=1e-12, atol=1e-12)
    assert torch.allclose(got[0], hidden.grad, rtol=1e-12, atol=1e-12)
    assert torch.allclose(got[1], weight.grad, rtol=1e-12, atol=1e-12)
    assert (logp[~mask] == 0).all()


def test_chunked_logprobs_keep_no_logits_for_backward():
    """What autograd saves for backward: with checkpointing, no (rows, V) logits at all (backward
    recomputes one chunk at a time); a plain full log_softmax would save B*T*V numbers."""
    g = torch.Generator().manual_seed(1)
    B, T, H, V = 4, 16, 8, 300
    hidden = torch.randn(B, T, H, generator=g, requires_grad=True)
    weight = torch.randn(V, H, generator=g, requires_grad=True)
    targets = torch.randint(V, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.bool)

    def saved_logits(fn):
        sizes = []
        def pack(t):
            if t.dim() >= 1 and t.shape[-1] == V and t.shape != weight.shape:
                sizes.append(t.numel())
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = fn()
        out.sum().backward()
        return sum(sizes)

    full = lambda: torch.log_softmax(hidden @ weight.T, -1).gather(-1, targets[..., None])
    assert saved_logits(full) >= B * T * V
    assert saved_logits(lambda: lm.chunked_logprobs(hidden, weight, targets, mask, chunk_size=8)) == 0


# ------------------------------------------------------------------------------ the loop, end to end
HYPS = ["h", "h1", "h2", "h3", "h4", "hp", "hq", "hr"]


@pytest.fixture(scope="module")
def easy_tasks(tmp_path_factory):
    """Statements every hypothesis proves, so that even the test-sized prover succeeds sometimes
    (about 1 attempt in 10) and groups carry signal: the update is then not a no-op."""
    path = tmp_path_factory.mktemp("grpo-tasks") / "easy.jsonl"
    with open(path, "w") as f:
        for i, v in enumerate("pqrs" * 2):
            hyps = " ".join(f"({h} : {v})" for h in HYPS)
            statement = f"theorem easy_{i} (p q r s : Prop) {hyps} : {v} :="
            f.write(json.dumps(dict(name=f"easy_{i}", statement=statement, solution="h", level=1)) + "\n")
    return str(path)


def small_config(tiny_prover, easy_tasks, out, **kw):
    base = dict(model=tiny_prover, tasks=f"jsonl:{easy_tasks}", eval_tasks=f"jsonl:{easy_tasks}", eval_limit=4, eval_n=2,
                eval_every=2, steps=4, prompts=4, group=4, max_new_tokens=6, micro_batch=6, lr=3e-3, warmup=1,
                save_every=2, threads=1, seed=3, out=str(out))
    return grpo.Config(**{**base, **kw})


def without_times(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time_")} for r in rows]


def test_two_steps_then_resume_gives_the_same_run(tiny_prover, easy_tasks, tmp_path):
    from training import checkpoint
    a, b = tmp_path / "a", tmp_path / "b"
    result = grpo.train(small_config(tiny_prover, easy_tasks, b, steps=2, save_every=1))

    start, *rows = checkpoint.read_metrics(str(b))
    assert start == {"step": 0, "heldout_pass1": result["before"]}  # the initial model's held-out pass@1
    assert [r["step"] for r in rows] == [1, 2] and rows[1]["heldout_pass1"] == result["after"]
    for key in ("loss", "reward", "train_acc", "entropy", "kl", "clip_frac", "frac_groups_with_signal",
                "attempt_len", "lr", "grad_norm", "time_sample", "time_lean", "time_score", "time_update"):
        assert all(isinstance(r[key], (int, float)) for r in rows), key
    assert rows[0]["reward"] == rows[0]["train_acc"] and 0 <= rows[0]["reward"] <= 1
    assert rows[0]["clip_frac"] == 0  # one inner step: rho = 1 exactly
    assert rows[0]["kl"] == 0  # at step 1 the policy is still pi_ref
    assert rows[0]["lr"] == 3e-3 and rows[0]["skipped_nonfinite"] == 0

    # the checkpoints: HF folders lm.load reads, the state holds pi_ref = the initial model
    init, trained = lm.load(tiny_prover).model, lm.load(str(b / "final")).model
    assert os.path.isfile(b / "step_000001" / "model.safetensors")
    state = torch.load(b / "state.pt", weights_only=False)
    assert all(torch.equal(state["nets"]["reference"][k], v) for k, v in init.state_dict().items())
    assert all(torch.equal(trained.state_dict()[k], v) for k, v in state["nets"]["policy"].items())

    # 4 uninterrupted steps == 2 steps, then --resume for 2 more (up to the wall-clock fields)
    grpo.train(small_config(tiny_prover, easy_tasks, a, steps=4))
    with pytest.raises(SystemExit):  # a new run never writes into a run's folder: --resume continues it
        grpo.train(small_config(tiny_prover, easy_tasks, b, steps=4))
    grpo.train(grpo.parse_args(["--resume", str(b), "--steps", "4"]))
    ra, rb = without_times(checkpoint.read_metrics(str(a))), without_times(checkpoint.read_metrics(str(b)))
    assert [r["step"] for r in rb] == [0, 1, 2, 3, 4]
    assert ra == rb


def test_one_step_trains_the_policy_never_the_reference(tiny_prover, easy_tasks, monkeypatch):
    import lean_env
    from mini import tasks
    # 8 statements x G = 8: a group has signal with odds of about 1 in 2 at this prover's ~10% success
    cfg = small_config(tiny_prover, easy_tasks, "unused", group=8, micro_batch=32, kl_coef=0.1)
    policy = lm.load(tiny_prover, dtype=torch.float32)
    policy.model.train()
    ref = lm.load(tiny_prover).model.requires_grad_(False)
    env, batch = lean_env.load("mini"), tasks.load(cfg.tasks)
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=cfg.lr)
    ref_before = {k: v.clone() for k, v in ref.state_dict().items()}
    pol_before = {k: v.clone() for k, v in policy.model.state_dict().items()}
    row = grpo.grpo_step(cfg, policy, ref, env, optimizer, batch, torch.Generator().manual_seed(3))
    assert row["frac_groups_with_signal"] > 0 and math.isfinite(row["grad_norm"])
    assert row["clip_frac"] == 0  # one update per batch: rho = 1 exactly, the clip never binds
    assert not ref.training and all(p.grad is None and not p.requires_grad for p in ref.parameters())
    assert all(torch.equal(v, ref_before[k]) for k, v in ref.state_dict().items())
    assert any(not torch.equal(v, pol_before[k]) for k, v in policy.model.state_dict().items())

    # a non-finite loss never reaches the weights: the step is skipped and reported
    real_loss = grpo.grpo_loss

    def nan_loss(*args, **kwargs):
        loss, stats = real_loss(*args, **kwargs)
        return loss * float("nan"), stats

    monkeypatch.setattr(grpo, "grpo_loss", nan_loss)
    now = {k: v.clone() for k, v in policy.model.state_dict().items()}
    row = grpo.grpo_step(cfg, policy, ref, env, optimizer, batch[:2], torch.Generator().manual_seed(4))
    assert math.isnan(row["grad_norm"]) and math.isnan(row["loss"])
    assert all(torch.equal(v, now[k]) for k, v in policy.model.state_dict().items())


def test_paper_flag_and_options(tmp_path, capsys):
    cfg = grpo.parse_args(["--paper", "--lr", "1e-6", "--no-std", "--agg", "seq"])
    assert (cfg.prompts, cfg.group, cfg.kl_coef, cfg.warmup, cfg.lr) == (128, 5, 0.001, 50, 1e-6)
    assert cfg.no_std and cfg.agg == "seq"
    for args, line in [(["--agg", "mean"], "grpo.py: --agg mean: must be token, seq or constant"),
                       (["--group", "1"], "grpo.py: --group 1: must be at least 2"),
                       (["--kl-coef", "-0.1"], "grpo.py: --kl-coef -0.1: must be 0 or more"),
                       (["--micro-batch", "0"], "grpo.py: --micro-batch 0: must be at least 1")]:
        with pytest.raises(SystemExit) as e:  # before any model loads: this one does not exist
            grpo.setup(grpo.parse_args(args + ["--model", str(tmp_path / "never"), "--out", str(tmp_path / "o")]))
        assert e.value.code == 2 and capsys.readouterr().err.startswith(line)


def test_the_reference_model_is_fp32_like_the_policys_master_weights(tiny_prover, tmp_path, monkeypatch):
    """On a GPU lm.load defaults to bf16; pi_ref must not, or the KL is not 0 at step 0."""
    monkeypatch.setattr(lm, "default_dtype", lambda device: torch.bfloat16)
    cfg = grpo.Config(model=tiny_prover, out=str(tmp_path / "ref"), eval_limit=1, threads=1)
    _, policy, ref = grpo.setup(cfg)
    assert next(ref.parameters()).dtype == torch.float32 == next(policy.model.parameters()).dtype
