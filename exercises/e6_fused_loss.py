"""Exercise fused_loss (advanced): the FD loss without ever holding the full logits (about 90 minutes; an estimate).

Paper: Feedback Distillation (Narozniak et al., arXiv 2605.30861), Section 3 and Appendix B. The
project's version is `fused_loss` (with `_FusedLoss`, `_topk_chunk`) in fd_loss.py, part 2. Do the
fd_loss exercise first: this one computes the same number.

Why: a real prover has V = 151,936 tokens and thousands of attempt positions. Logits of shape
(B, T, V) in fp32 are tens of GiB, and autograd keeps several copies. The fix: the student's logits
are hidden @ weight.T (the lm head), so compute them a chunk of positions at a time, use each chunk
at once, and never keep more than one chunk of (rows, V) numbers alive.

The teacher has already been reduced to its top-K per position (fd_loss.teacher_topk does that,
chunked too): ids (B, T, K) and logprobs (B, T, K), the teacher's log-softmax over the whole
vocabulary at those ids. Per position t where mask is 1, with log q = log-softmax(hidden_t @ weight.T):

    L_t = - sum_{j < K} exp(logprobs[t, j]) * log q[ids[t, j]]

and the loss is the mean of L_t over the masked positions (0 if there are none).

Write `fused_fd_loss(hidden, weight, ids, logprobs, mask, chunk_size)`:
    in:  hidden     float tensor (B, T, H), requires grad (the student's last hidden states)
         weight     float tensor (V, H), requires grad (the student's lm head)
         ids        long tensor (B, T, K);  logprobs  float tensor (B, T, K), no grad
         mask       (B, T) int or bool;     chunk_size  int >= 1, positions per chunk
    out: a 0-dim tensor whose value AND gradients (w.r.t. hidden and weight, by loss.backward())
         equal those of the plain loss on full logits.
Rules the checker enforces:
    - no tensor with more than chunk_size x V logits-sized numbers is ever made (forward or backward);
    - after the forward, autograd does not keep more than about one chunk of logits alive.
So a loop that calls autograd on each chunk and sums the results is not enough (autograd would keep
every chunk's softmax for the backward). Two ways out: a torch.autograd.Function that computes the
gradient chunk by chunk in its forward (d L_t / d logits = W_t * q - w, w the K weights scattered to
their ids, W_t their sum), or recomputation per chunk (torch.utils.checkpoint; what crosses the
recomputed part's boundary is kept for the backward, so let only the K picked values cross it).

Check it:   python exercises/check.py fused_loss
"""
import torch  # noqa: F401  (you will need it)


def fused_fd_loss(hidden, weight, ids, logprobs, mask, chunk_size):
    raise NotImplementedError("write me: fused_fd_loss(hidden, weight, ids, logprobs, mask, chunk_size) -> scalar")
