"""Exercise ema: the EMA teacher update (about 15 minutes; an estimate).

Paper: Feedback Distillation (Narozniak et al., arXiv 2605.30861), Section 3. The project's version
is `ema_update` in fd.py.

The teacher pi_mu is the same network as the student pi_theta. It is never trained by gradients;
every few optimizer steps its weights move a little toward the student's:

    mu <- alpha * mu + (1 - alpha) * theta

alpha = 1 keeps the teacher frozen; alpha = 0 copies the student (the paper uses alpha = 0.9).

Write `ema_update(teacher, student, alpha)`:
    in:  teacher, student  two torch.nn.Module of the same architecture (the teacher's parameters
                           have requires_grad=False; the student's have requires_grad=True)
         alpha             float in [0, 1]
    out: None. Change the teacher's parameters IN PLACE (the same tensor objects keep existing:
         modules, tied weights and anything else holding them must see the new values). Leave the
         student unchanged, and build no autograd graph.
Think about: models whose input embedding and output head share one weight tensor ("tied
weights"): that tensor must be averaged once, not twice. Buffers (e.g. running statistics) are not
part of the update.

Check it:   python exercises/check.py ema
"""
import torch  # noqa: F401  (you will need it)


def ema_update(teacher, student, alpha):
    raise NotImplementedError("write me: ema_update(teacher, student, alpha) -> None (in place)")
