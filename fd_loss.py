"""The Feedback Distillation loss, twice: the paper's formula on full logits, and a fused version.

Paper: Narozniak et al., "Distilling LLM Feedback for Lean Theorem Proving", arXiv 2605.30861,
Section 3 and Appendix B. Two parts, read the first one first:
  1. `reference_loss`: the paper's formula, literally, on full (B, T, V) logits.
  2. `teacher_topk` + `fused_loss` (and `fused_full_kl` for topk=0): the same value and gradient with
     the loss fused into the lm head and chunked over positions, so the (B, T, V) logits never exist.
     This is what fd.py trains with; an optional read (a test holds it to part 1).

The loss, per attempt token t with teacher top-K set TopK_t (K = 25 in the paper):
    L_t = - sum_{a in TopK_t} pi_mu(a | x, F(y), y_<t) * log pi_theta(a | x, y_<t)
Up to the teacher's entropy (constant in theta) this is KL(pi_mu || pi_theta) restricted to the
teacher's top-K, so it has the forward-KL gradient there. L_t is averaged over the attempt tokens
(mask == 1). Options the paper leaves open, each with its own reference:
  topk=0      full-vocabulary forward KL (cross-entropy against the full teacher distribution)
  renorm=True teacher probabilities renormalised over the K ids
  tail=True   one extra "tail" bucket: teacher mass 1 - sum_K p_mu against log(1 - sum_K p_theta)

Tests:      python -m pytest -q tests/test_fd_loss.py   (every option held to its reference)
Benchmark:  python bench/bench_loss.py                 (memory and time, reference vs fused)
"""
import torch

# ----------------------------------------------------------------------------------------------
# 1. The loss as the paper writes it (Section 3, Appendix B), on full logits
# ----------------------------------------------------------------------------------------------

TOPK = 25  # the paper's K



def _compute_dtype(*tensors):
    """Softmax and gradient math run in fp32 at least (fp64 stays fp64), whatever the inputs."""
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _check_k(k, vocab):
    if k > vocab:
        raise ValueError(f"top-K of K={k} tokens asked from a vocabulary of only V={vocab} tokens")
    if k < 1:
        raise ValueError(f"K must be >= 1 here (got {k}); for the full-vocabulary KL use topk=0 "
                         "in reference_loss or fused_full_kl")


def _check_options(k, vocab, renorm, tail):
    if renorm and tail:
        raise ValueError("renorm=True puts all teacher mass on the K ids: the tail bucket would be "
                         "empty; choose one of renorm / tail")
    if tail and k >= vocab:
        raise ValueError(f"tail=True needs K < V (got K={k}, V={vocab}): the tail bucket is empty")


def reference_loss(student_logits, teacher_logits, mask, topk=TOPK, renorm=False, tail=False,
                   return_kl=False):
    """The paper's loss, literally, on full logits. student_logits, teacher_logits: (B, T, V);
    mask: (B, T), 1 (or True) on attempt tokens. Returns the mean over masked tokens of
        - sum_{a in TopK} p_mu(a) log p_theta(a)     (p_theta: log-softmax over the full vocabulary,
                                                       p_mu: full softmax, NOT renormalised on TopK)
    topk=0 gives the full-vocabulary cross-entropy - sum_a p_mu(a) log p_theta(a). With
    return_kl=True also returns the mean per-token KL estimate on the same support (no grad):
        sum_{a in TopK} p_mu(a) (log p_mu(a) - log p_theta(a))  [+ the tail bucket's term if tail].
    No mask token: the loss is 0 (not NaN), so an all-padding micro-batch is harmless."""
    dtype = _compute_dtype(student_logits)
    logq = torch.log_softmax(student_logits.to(dtype), dim=-1)
    # The teacher is a target only: no gradient ever flows into it (Section 3).
    logp_all = torch.log_softmax(teacher_logits.detach().to(dtype), dim=-1)
    vocab = logq.shape[-1]
    if topk == 0:  # full-vocabulary forward KL (as a cross-entropy: same gradient)
        p = logp_all.exp()
        loss_tok = -(p * logq).sum(-1)
        kl_tok = (torch.xlogy(p, p) - p * logq).sum(-1)
    else:
        _check_k(topk, vocab)
        _check_options(topk, vocab, renorm, tail)
        logp, ids = logp_all.topk(topk, dim=-1)  # TopK_t: the teacher's K most likely tokens
        p = logp.exp()
        w = p / p.sum(-1, keepdim=True) if renorm else p
        logq_k = logq.gather(-1, ids)
        loss_tok = -(w * logq_k).sum(-1)
        kl_tok = (torch.xlogy(p, p) - p * logq_k).sum(-1)
        if tail:
            # Teacher's leftover mass against the student's: log(1 - sum_K q), computed as a
            # logsumexp over the tokens outside TopK (the same number without 1 - Q cancelling).
            rest_p = (1 - p.sum(-1)).clamp_min(0)
            log_rest_q = logq.scatter(-1, ids, float("-inf")).logsumexp(-1)
            loss_tok = loss_tok - rest_p * log_rest_q
            kl_tok = kl_tok + torch.xlogy(rest_p, rest_p) - rest_p * log_rest_q
    m = mask.bool() if mask is not None else torch.ones(loss_tok.shape, dtype=torch.bool,
                                                        device=loss_tok.device)
    n = m.sum().clamp_min(1)
    loss = torch.where(m, loss_tok, 0).sum() / n
    if not return_kl:
        return loss
    return loss, (torch.where(m, kl_tok, 0).sum() / n).detach()


# ----------------------------------------------------------------------------------------------
# 2. The same loss, fused into the lm head and chunked over positions (the training path)
# ----------------------------------------------------------------------------------------------

# Rows (attempt positions) per chunk. Memory: a chunk holds chunk_size x V fp32 logits (594 MiB at
# Qwen's 151,936-token vocabulary) where the plain loss holds B*T x V several times over. Speed: each
# chunk also adds its share to the (V, H) lm-head gradient; at 1,024 rows the chunk's three matmuls
# still outweigh that memory traffic on a large GPU, at 256 it would start to show. CPUs need far
# less (smaller chunks save memory linearly; chunk_size is an argument everywhere).
CHUNK_SIZE = 1024


def _rows_of(hidden, mask, chunk_size):
    """Flatten (B, T, H) to (N, H) and list the rows that count (mask == 1); others cost nothing."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    h = hidden.reshape(-1, hidden.shape[-1])
    if mask is None:
        return h, torch.arange(h.shape[0], device=h.device)
    if mask.numel() != h.shape[0]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match hidden {tuple(hidden.shape)}")
    return h, mask.reshape(-1).nonzero().squeeze(1)


def _softmax_(logits):
    """In place: logits -> softmax probabilities. Returns the log-normaliser (rows, 1). One buffer
    only: no (rows, V) temporary besides `logits` itself."""
    m = logits.amax(-1, keepdim=True)
    s = logits.sub_(m).exp_().sum(-1, keepdim=True)
    logits.div_(s)
    return m + s.log()


@torch.no_grad()
def teacher_topk(hidden, weight, k=TOPK, chunk_size=CHUNK_SIZE, mask=None):
    """The teacher's top-K targets, chunked over positions so its (B, T, V) logits never exist.
    hidden: (B, T, H) teacher states aligned with the student's attempt positions; weight: (V, H)
    the teacher's lm head. Returns ids (B, T, K) long and logprobs (B, T, K) fp32 (fp64 for fp64
    inputs): log-softmax over the FULL vocabulary of the K most likely tokens, sorted. Runs under
    no_grad and returns detached tensors: the teacher never receives gradients. With mask, rows
    outside it are skipped and get ids 0 and logprobs -inf (fused_loss skips them too)."""
    _check_k(k, weight.shape[0])
    h, rows = _rows_of(hidden.detach(), mask, chunk_size)
    # The matmul runs in the inputs' common dtype (bf16 stays on tensor cores), the softmax math
    # after it in fp32 at least.
    mm_dtype = torch.promote_types(h.dtype, weight.dtype)
    dtype = _compute_dtype(h, weight)
    w_mm = weight.detach().to(mm_dtype)
    ids = torch.zeros(h.shape[0], k, dtype=torch.long, device=h.device)
    logprobs = torch.full((h.shape[0], k), float("-inf"), dtype=dtype, device=h.device)
    with torch.autocast(h.device.type, enabled=False):
        for start in range(0, rows.numel(), chunk_size):
            r = rows[start:start + chunk_size]
            logits = (h[r].to(mm_dtype) @ w_mm.T).to(dtype)
            top, idx = logits.topk(k, dim=-1)
            lse = _softmax_(logits)  # consumes the buffer; we only need the normaliser
            ids[r] = idx
            logprobs[r] = top - lse
    shape = tuple(hidden.shape[:-1]) + (k,)
    return ids.view(shape), logprobs.view(shape)


def _topk_chunk(s, ids, logprobs, dtype, scale, renorm, tail):
    """One chunk against the teacher's top-K targets. s: the chunk's student logits (rows, V), consumed
    in place. Returns (loss sum, kl sum, gradient of the chunk's loss / n w.r.t. s: the same buffer).

    For one row with student logits s, q = softmax(s), targets w_a on the ids I (w = p or p / P),
    and a tail weight w_t (0 unless tail) against R = sum_{j not in I} q_j:
        loss = - sum_a w_a log q_a - w_t log R
        d loss / d s_j = (W + w_t) q_j - w_j [j in I] - (w_t / R) q_j [j not in I],   W = sum_a w_a
    (the softmax Jacobian: d log q_a / d s_j = [a = j] - q_j)."""
    p = logprobs.to(dtype).exp()
    s_k = s.gather(-1, ids)
    lse = _softmax_(s)  # s now holds q
    logq_k = s_k - lse
    w = p / p.sum(-1, keepdim=True) if renorm else p
    big_w = w.sum(-1, keepdim=True)
    loss = -(w * logq_k).sum()
    kl = (torch.xlogy(p, p) - p * logq_k).sum()
    if tail:
        w_t = (1 - p.sum(-1, keepdim=True)).clamp_min(0)
        q_k = s.gather(-1, ids)
        s.scatter_(-1, ids, 0.0)  # s holds q off the top-K only: R without cancelling
        rest = s.sum(-1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
        log_rest = rest.log()
        loss = loss - (w_t * log_rest).sum()
        kl = kl + (torch.xlogy(w_t, w_t) - w_t * log_rest).sum()
        a, b = (big_w + w_t - w_t / rest) * scale, ((big_w + w_t) * q_k - w) * scale
    else:
        a, b = big_w * scale, -w * scale
    return loss, kl, s.mul_(a).scatter_add_(-1, ids, b)


def _full_chunk(s, t_logits, scale):
    """One chunk against the teacher's whole distribution p = softmax(t_logits): loss - sum_a p_a log q_a,
    gradient (q - p) / n. s is consumed in place (it returns as the gradient)."""
    logp = torch.log_softmax(t_logits, dim=-1)
    p = logp.exp()
    p_s, p_logp = (p * s).sum(-1), (p * logp).sum(-1)
    del logp
    lse = _softmax_(s).squeeze(1)  # s now holds q
    return (lse - p_s).sum(), (p_logp - p_s + lse).sum(), s.sub_(p).mul_(scale)


class _FusedLoss(torch.autograd.Function):
    """lm head + loss in one pass over chunks of rows. Each chunk's gradient is computed in the
    forward pass (the loss is the last op of the graph, so its upstream gradient is a scalar we
    can apply later); only grad_hidden (N, H) and grad_weight (V, H) are kept for backward. With
    teacher=(hidden, weight) instead of ids the targets are the teacher's full distribution."""

    @staticmethod
    def forward(ctx, hidden, weight, ids, logprobs, t_hidden, t_weight, mask, chunk_size, renorm, tail):
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        h, rows = _rows_of(hidden, mask, chunk_size)
        scale = 1.0 / max(rows.numel(), 1)  # mean over attempt tokens; no token -> loss 0, grad 0
        mm_dtype = torch.promote_types(h.dtype, weight.dtype)  # matmuls in the inputs' dtype (bf16 stays bf16)
        dtype = _compute_dtype(h, weight)                      # softmax and gradient math in fp32 at least
        if ids is not None:
            ids, logprobs = ids.reshape(-1, ids.shape[-1]).long(), logprobs.reshape(-1, logprobs.shape[-1]).detach()
        else:
            t_h = t_hidden.detach().reshape(-1, t_hidden.shape[-1])
            t_mm_dtype = torch.promote_types(t_h.dtype, t_weight.dtype)
            t_w_mm = t_weight.detach().to(t_mm_dtype)
        w_mm = weight.to(mm_dtype)
        grad_h = torch.zeros(h.shape, dtype=mm_dtype, device=h.device) if need_h else None
        # fp32 accumulation of the lm-head gradient across chunks, cast once at the end.
        grad_w = torch.zeros(weight.shape, dtype=dtype, device=h.device) if need_w else None
        loss = torch.zeros((), dtype=dtype, device=h.device)
        kl = torch.zeros((), dtype=dtype, device=h.device)
        for start in range(0, rows.numel(), chunk_size):
            r = rows[start:start + chunk_size]
            h_r = h[r].to(mm_dtype)
            s = (h_r @ w_mm.T).to(dtype)  # the only (rows, V) buffer of the student side
            if ids is not None:
                part, part_kl, g = _topk_chunk(s, ids[r], logprobs[r], dtype, scale, renorm, tail)
            else:
                with torch.no_grad():
                    t_logits = (t_h[r].to(t_mm_dtype) @ t_w_mm.T).to(dtype)
                part, part_kl, g = _full_chunk(s, t_logits, scale)
                del t_logits
            loss, kl = loss + part, kl + part_kl
            g = g.to(mm_dtype)  # the gradient w.r.t. the chunk's logits, / n
            if need_h:
                grad_h[r] = g @ w_mm
            if need_w:
                if g.dtype == dtype:
                    grad_w.addmm_(g.T, h_r)  # in place: no (V, H) temporary per chunk
                else:
                    grad_w += g.T @ h_r
            del s, g
        ctx.grad_h = None if grad_h is None else grad_h.to(hidden.dtype).view(hidden.shape)
        ctx.grad_w = None if grad_w is None else grad_w.to(weight.dtype)
        kl = kl * scale
        ctx.mark_non_differentiable(kl)
        return loss * scale, kl

    @staticmethod
    def backward(ctx, grad_loss, grad_kl):
        # Hand the stored tensors over (and drop our references) so autograd can adopt them as
        # .grad without a copy; a scale of exactly 1 (the usual case) costs nothing.
        grad_h, grad_w = ctx.grad_h, ctx.grad_w
        ctx.grad_h = ctx.grad_w = None
        if grad_h is None and grad_w is None:
            raise RuntimeError("fd fused loss: backward called twice (gradients were handed over)")
        if not (grad_loss == 1).all():
            grad_h = None if grad_h is None else grad_h * grad_loss.to(grad_h.dtype)
            grad_w = None if grad_w is None else grad_w * grad_loss.to(grad_w.dtype)
        return grad_h, grad_w, None, None, None, None, None, None, None, None


def fused_loss(hidden, weight, ids, logprobs, mask, chunk_size=CHUNK_SIZE, renorm=False,
               tail=False, return_kl=False):
    """Same value and gradient (w.r.t. hidden (B, T, H) and the lm-head weight (V, H)) as
    reference_loss(hidden @ weight.T, teacher_logits, mask, K, renorm, tail) where (ids, logprobs)
    = teacher_topk(teacher_hidden, teacher_weight, K): at most chunk_size rows of logits exist at
    a time, rows with mask == 0 are never computed. With return_kl=True returns (loss, kl) where kl
    is the detached mean per-token KL estimate on the top-K support (see reference_loss)."""
    _check_k(ids.shape[-1], weight.shape[0])
    _check_options(ids.shape[-1], weight.shape[0], renorm, tail)
    if ids.shape != logprobs.shape or ids.shape[:-1] != hidden.shape[:-1]:
        raise ValueError(f"ids {tuple(ids.shape)} / logprobs {tuple(logprobs.shape)} do not match "
                         f"hidden {tuple(hidden.shape)}: expected (B, T, K)")
    with torch.autocast(hidden.device.type, enabled=False):
        loss, kl = _FusedLoss.apply(hidden, weight, ids, logprobs.detach(), None, None, mask,
                                    chunk_size, renorm, tail)
    return (loss, kl) if return_kl else loss


def fused_full_kl(hidden, weight, teacher_hidden, teacher_weight, mask, chunk_size=CHUNK_SIZE,
                  return_kl=False):
    """The topk=0 option, chunked: the full-vocabulary forward KL needs the whole teacher
    distribution at each position, so instead of (ids, logprobs) it takes the teacher's hidden
    states (B, T, H_t) and lm head (V, H_t) and recomputes each chunk's teacher logits under
    no_grad. Equals reference_loss(hidden @ weight.T, teacher_hidden @ teacher_weight.T, mask,
    topk=0) in value and gradient; the teacher gets no gradient."""
    if teacher_weight.shape[0] != weight.shape[0]:
        raise ValueError("teacher and student vocabularies differ: "
                         f"{teacher_weight.shape[0]} vs {weight.shape[0]}")
    with torch.autocast(hidden.device.type, enabled=False):
        loss, kl = _FusedLoss.apply(hidden, weight, None, None, teacher_hidden.detach(),
                                    teacher_weight.detach(), mask, chunk_size, False, False)
    return (loss, kl) if return_kl else loss


# ----------------------------------------------------------------------------------------------
