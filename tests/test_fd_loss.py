"""The FD loss (fd_loss.py; paper Section 3 / Appendix B): the reference is held to a
per-position loop that spells out the paper's formula, and the fused, chunked version is held to
the reference in value, KL estimate and gradient, for every option, in fp32 and fp64."""
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import fd_loss

torch.set_num_threads(1)

OPTIONS = ["plain", "renorm", "tail", "full"]


def make(seed, dtype, b=None, t=None, h=None, v=None, k=None):
    """Random sizes, a mask with an all-empty batch row and a few empty positions elsewhere."""
    g = torch.Generator().manual_seed(seed)
    b = b or int(torch.randint(2, 5, (1,), generator=g))
    t = t or int(torch.randint(3, 12, (1,), generator=g))
    h = h or int(torch.randint(4, 24, (1,), generator=g))
    v = v or int(torch.randint(30, 200, (1,), generator=g))
    k = k or int(torch.randint(1, 30, (1,), generator=g))
    hidden = torch.randn(b, t, h, generator=g, dtype=dtype).requires_grad_()
    weight = torch.randn(v, h, generator=g, dtype=dtype).requires_grad_()
    # A peaked teacher (as after training): larger logit gaps, so the top-K set is the same under
    # chunked and unchunked fp32 matmuls.
    t_hidden = 2 * torch.randn(b, t, h, generator=g, dtype=dtype)
    t_weight = torch.randn(v, h, generator=g, dtype=dtype)
    mask = torch.rand(b, t, generator=g) > 0.3
    mask[1] = False  # one sequence with no attempt token at all
    return hidden, weight, t_hidden, t_weight, mask, k


def run_reference(hidden, weight, t_hidden, t_weight, mask, k, option):
    kw = dict(topk=0 if option == "full" else k, renorm=option == "renorm",
              tail=option == "tail", return_kl=True)
    loss, kl = fd_loss.reference_loss(hidden @ weight.T, t_hidden @ t_weight.T, mask, **kw)
    gh, gw = torch.autograd.grad(loss, (hidden, weight))
    return loss, kl, gh, gw


def run_fused(hidden, weight, t_hidden, t_weight, mask, k, option, chunk_size):
    if option == "full":
        loss, kl = fd_loss.fused_full_kl(hidden, weight, t_hidden, t_weight, mask, chunk_size,
                                    return_kl=True)
    else:
        ids, logprobs = fd_loss.teacher_topk(t_hidden, t_weight, k, chunk_size=chunk_size + 1)
        loss, kl = fd_loss.fused_loss(hidden, weight, ids, logprobs, mask, chunk_size,
                                 renorm=option == "renorm", tail=option == "tail",
                                 return_kl=True)
    gh, gw = torch.autograd.grad(loss, (hidden, weight))
    return loss, kl, gh, gw


def literal(student_logits, teacher_logits, mask, k, option):
    """The paper's formula one position at a time, in fp64, with nothing shared with fd_loss.py."""
    total, kl_total, n = 0.0, 0.0, 0
    for bi in range(mask.shape[0]):
        for ti in range(mask.shape[1]):
            if not mask[bi, ti]:
                continue
            s = student_logits[bi, ti].double()
            q = torch.exp(s - torch.logsumexp(s, 0))
            p = torch.softmax(teacher_logits[bi, ti].double(), 0)
            order = sorted(range(len(p)), key=lambda a: -float(p[a]))
            top = order if option == "full" else order[:k]
            mass = sum(float(p[a]) for a in top)
            loss = kl = 0.0
            for a in top:
                w = float(p[a]) / mass if option == "renorm" else float(p[a])
                loss -= w * math.log(float(q[a]))
                kl += float(p[a]) * (math.log(float(p[a])) - math.log(float(q[a])))
            if option == "tail":
                rest_p, rest_q = 1 - mass, 1 - sum(float(q[a]) for a in top)
                loss -= rest_p * math.log(rest_q)
                kl += rest_p * (math.log(rest_p) - math.log(rest_q))
            total, kl_total, n = total + loss, kl_total + kl, n + 1
    return total / n, kl_total / n


@pytest.mark.parametrize("option", OPTIONS)
def test_reference_is_the_papers_formula(option):
    hidden, weight, t_hidden, t_weight, mask, k = make(0, torch.float64, v=40, k=7)
    s, t = (hidden @ weight.T).detach(), t_hidden @ t_weight.T
    want_loss, want_kl = literal(s, t, mask, k, option)
    loss, kl = fd_loss.reference_loss(s, t, mask, topk=0 if option == "full" else k,
                                 renorm=option == "renorm", tail=option == "tail", return_kl=True)
    assert loss.item() == pytest.approx(want_loss, rel=1e-10)
    assert kl.item() == pytest.approx(want_kl, rel=1e-10)


def test_reference_identities():
    hidden, weight, t_hidden, t_weight, mask, _ = make(1, torch.float64, v=50)
    s, t = hidden @ weight.T, t_hidden @ t_weight.T
    full, kl_full = fd_loss.reference_loss(s, t, mask, topk=0, return_kl=True)
    # K = V is the full-vocabulary loss.
    assert torch.allclose(fd_loss.reference_loss(s, t, mask, topk=50), full)
    # The loss is the KL plus the teacher's entropy (constant in the student): same gradient.
    p = torch.softmax(t, -1)
    entropy = (-(p * p.log()).sum(-1) * mask).sum() / mask.sum()
    assert torch.allclose(full, kl_full + entropy)
    # The tail bucket with the student's mass computed naively as 1 - sum_K q.
    k = 5
    loss_tail = fd_loss.reference_loss(s, t, mask, topk=k, tail=True)
    logp, ids = torch.log_softmax(t, -1).topk(k, -1)
    q_k = torch.softmax(s, -1).gather(-1, ids)
    naive = -(logp.exp() * q_k.log()).sum(-1) - (1 - logp.exp().sum(-1)) * torch.log1p(-q_k.sum(-1))
    assert torch.allclose(loss_tail, (naive * mask).sum() / mask.sum())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("option", OPTIONS)
def test_fused_equals_reference(dtype, option):
    tol = dict(rtol=1e-9, atol=1e-11) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-6)
    for seed in range(4):
        hidden, weight, t_hidden, t_weight, mask, k = make(seed, dtype)
        k = min(k, weight.shape[0] - 1)
        n_rows = mask.numel()
        for chunk_size in (1, 3, 7, n_rows + 5):  # mostly chunk sizes that do not divide the rows
            ref = run_reference(hidden, weight, t_hidden, t_weight, mask, k, option)
            got = run_fused(hidden, weight, t_hidden, t_weight, mask, k, option, chunk_size)
            for name, a, b in zip(("loss", "kl", "grad_hidden", "grad_weight"), ref, got):
                assert b.dtype == a.dtype, name
                torch.testing.assert_close(b, a, **tol, msg=f"{name} seed={seed} "
                                           f"chunk={chunk_size} {option}")


def test_teacher_topk_is_the_teachers_topk_and_gets_no_gradient():
    hidden, weight, t_hidden, t_weight, mask, k = make(2, torch.float64, k=9)
    t_hidden.requires_grad_()
    t_weight.requires_grad_()
    ids, logprobs = fd_loss.teacher_topk(t_hidden, t_weight, k, chunk_size=4)
    assert not ids.requires_grad and not logprobs.requires_grad
    assert ids.grad_fn is None and logprobs.grad_fn is None
    want_lp, want_ids = torch.log_softmax(t_hidden @ t_weight.T, -1).topk(k, -1)
    assert torch.equal(ids, want_ids)
    torch.testing.assert_close(logprobs, want_lp.detach())
    loss = fd_loss.fused_loss(hidden, weight, ids, logprobs, mask, chunk_size=5)
    loss.backward()
    assert hidden.grad is not None and weight.grad is not None
    assert t_hidden.grad is None and t_weight.grad is None
    # The full-KL path recomputes the teacher inside the loss: still no gradient for it.
    fd_loss.fused_full_kl(hidden, weight, t_hidden, t_weight, mask, chunk_size=5).backward()
    assert t_hidden.grad is None and t_weight.grad is None
    # With a mask, rows outside it are not computed: they come back as ids 0, logprobs -inf.
    ids_m, lp_m = fd_loss.teacher_topk(t_hidden, t_weight, k, chunk_size=4, mask=mask)
    assert torch.equal(ids_m[mask], ids[mask])
    torch.testing.assert_close(lp_m[mask], logprobs[mask])
    assert torch.isneginf(lp_m[~mask]).all()


def test_k_larger_than_vocabulary_is_a_clear_error():
    hidden, weight, t_hidden, t_weight, mask, _ = make(3, torch.float32, v=20)
    s, t = hidden @ weight.T, t_hidden @ t_weight.T
    with pytest.raises(ValueError, match="K=21.*V=20"):
        fd_loss.reference_loss(s, t, mask, topk=21)
    with pytest.raises(ValueError, match="K=21.*V=20"):
        fd_loss.teacher_topk(t_hidden, t_weight, 21)
    ids = torch.zeros(*mask.shape, 21, dtype=torch.long)
    with pytest.raises(ValueError, match="K=21.*V=20"):
        fd_loss.fused_loss(hidden, weight, ids, torch.zeros(ids.shape), mask)
    with pytest.raises(ValueError, match="tail"):
        fd_loss.reference_loss(s, t, mask, topk=20, tail=True)  # nothing left for the tail bucket
    with pytest.raises(ValueError, match="renorm"):
        fd_loss.reference_loss(s, t, mask, topk=5, renorm=True, tail=True)


def test_masked_rows_cost_nothing_and_no_token_gives_zero():
    hidden, weight, t_hidden, t_weight, mask, k = make(4, torch.float32)
    ids, logprobs = fd_loss.teacher_topk(t_hidden, t_weight, k, mask=mask)
    with torch.no_grad():
        hidden[~mask] = float("nan")  # would poison the loss if a masked row were computed
    loss = fd_loss.fused_loss(hidden, weight, ids, logprobs, mask, chunk_size=3)
    gh, gw = torch.autograd.grad(loss, (hidden, weight))
    assert torch.isfinite(loss) and torch.isfinite(gw).all()
    assert (gh[~mask] == 0).all() and torch.isfinite(gh).all()
    none = torch.zeros_like(mask)
    for out in (fd_loss.fused_loss(hidden, weight, ids, logprobs, none, chunk_size=3),
                fd_loss.reference_loss(torch.randn(*mask.shape, weight.shape[0]),
                                  torch.randn(*mask.shape, weight.shape[0]), none)):
        assert out.item() == 0.0


def test_gradient_scale_and_composition():
    # The stored gradient is scaled by the upstream gradient (loss * 3, loss + other terms).
    hidden, weight, t_hidden, t_weight, mask, k = make(5, torch.float64)
    ids, logprobs = fd_loss.teacher_topk(t_hidden, t_weight, k)
    ref = fd_loss.reference_loss(hidden @ weight.T, t_hidden @ t_weight.T, mask, topk=k)
    want = torch.autograd.grad(3 * ref + hidden.sum(), (hidden, weight), retain_graph=True)
    got_loss = fd_loss.fused_loss(hidden, weight, ids, logprobs, mask, chunk_size=4)
    got = torch.autograd.grad(3 * got_loss + hidden.sum(), (hidden, weight))
    for a, b in zip(want, got):
        torch.testing.assert_close(b, a)
    # Only the hidden states need a gradient (frozen lm head): weight gets none, hidden is right.
    frozen = weight.detach()
    gh = torch.autograd.grad(fd_loss.fused_loss(hidden, frozen, ids, logprobs, mask, 4), hidden)[0]
    torch.testing.assert_close(gh, torch.autograd.grad(ref, hidden)[0])


def test_bf16_inputs_compute_in_fp32():
    hidden, weight, t_hidden, t_weight, mask, k = make(6, torch.float32, h=32, v=300, k=25)
    want = run_reference(hidden, weight, t_hidden, t_weight, mask, k, "plain")
    hb = hidden.detach().bfloat16().requires_grad_()
    wb = weight.detach().bfloat16().requires_grad_()
    ids, logprobs = fd_loss.teacher_topk(t_hidden.bfloat16(), t_weight.bfloat16(), k, chunk_size=8)
    assert logprobs.dtype == torch.float32
    loss, kl = fd_loss.fused_loss(hb, wb, ids, logprobs, mask, chunk_size=8, return_kl=True)
    assert loss.dtype == torch.float32
    gh, gw = torch.autograd.grad(loss, (hb, wb))
    assert gh.dtype == torch.bfloat16 and gw.dtype == torch.bfloat16
    # bf16 logits carry about 3 significant digits: compare loosely with the fp32 reference.
    torch.testing.assert_close(loss, want[0], rtol=3e-2, atol=3e-2)
    torch.testing.assert_close(gh.float(), want[2], rtol=5e-2, atol=5e-3)
    torch.testing.assert_close(gw.float(), want[3], rtol=5e-2, atol=5e-3)
    # Autocast style: bf16 hidden states against an fp32 master lm head.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss_mixed = fd_loss.fused_loss(hb, weight, ids, logprobs, mask, chunk_size=8)
    gh, gw = torch.autograd.grad(loss_mixed, (hb, weight))
    assert gh.dtype == torch.bfloat16 and gw.dtype == torch.float32
    torch.testing.assert_close(gw, want[3], rtol=5e-2, atol=5e-3)


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any aten op creates: a direct check of "never more than
    chunk_size rows of logits"."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(o, torch.Tensor):
                self.largest = max(self.largest, o.numel())
        return out


@pytest.mark.parametrize("option", OPTIONS)
def test_fused_never_holds_more_than_a_chunk_of_logits(option):
    chunk, (b, t, h, v, k) = 16, (4, 50, 8, 400, 25)  # B*T x V = 80,000; chunk x V = 6,400
    hidden, weight, t_hidden, t_weight, mask, _ = make(7, torch.float32, b, t, h, v, k)
    with LargestTensor() as probe:
        run_fused(hidden, weight, t_hidden, t_weight, mask, k, option, chunk)
    assert probe.largest <= (chunk + 1) * v  # (+1: the teacher runs with chunk + 1 rows here)
    with LargestTensor() as probe:  # the probe sees the reference's full logits
        run_reference(hidden, weight, t_hidden, t_weight, mask, k, option)
    assert probe.largest == b * t * v
