"""Exercise fd_loss: the Feedback Distillation loss on full logits (about 30 minutes; an estimate).

Paper: Feedback Distillation (Narozniak et al., arXiv 2605.30861), Section 3 and Appendix B. The
project's version is `reference_loss` in fd_loss.py (read its module docstring after you try).

The student pi_theta sees the theorem x and its own attempt y_<t. The teacher pi_mu is the same
model shown feedback F(y) as well. At each attempt position t the teacher keeps its K most likely
next tokens, TopK_t, and the student is trained toward them:

    L_t = - sum_{a in TopK_t} p_mu(a) * log p_theta(a)

where p_mu = softmax of the teacher's logits over the WHOLE vocabulary (the K probabilities are NOT
renormalised to sum to 1) and log p_theta = log-softmax of the student's logits over the whole
vocabulary. The loss is the mean of L_t over the positions where mask is 1 (the attempt's tokens).

Write `fd_loss(student_logits, teacher_logits, mask, k)`:
    in:  student_logits  float tensor (B, T, V), requires grad
         teacher_logits  float tensor (B, T, V): a target only, it must receive NO gradient
         mask            (B, T), 1 / True on attempt tokens, 0 / False elsewhere (int or bool)
         k               int, 1 <= k <= V
    out: a 0-dim float tensor, differentiable w.r.t. student_logits.
         If the mask has no 1 at all, return 0 (not NaN).
Think about: numerical stability when the logits are large (log of a softmax that underflows),
ties are not an issue (the tests use random logits).

Check it:   python exercises/check.py fd_loss
"""
import torch  # noqa: F401  (you will need it)


def fd_loss(student_logits, teacher_logits, mask, k):
    raise NotImplementedError("write me: fd_loss(student_logits, teacher_logits, mask, k) -> scalar tensor")
