"""Exercise grpo: GRPO's group advantages and the k3 KL estimator (about 25 minutes; an estimate).

Paper: Feedback Distillation (Narozniak et al., arXiv 2605.30861), the GRPO baseline of the
experiments section (after DeepSeekMath, Shao et al., 2024). The project's version is in grpo.py:
`group_advantages` and the k3 term inside `grpo_loss`.

GRPO samples G attempts per theorem; reward r = 1 if Lean accepts an attempt, else 0. Each attempt's
advantage says how much better it did than its own group:

    A = (r - mean_group) / (std_group + eps)      eps = 1e-4, std the UNBIASED group std (divide by G - 1)
    A = r - mean_group                            when std_scale is False (Dr. GRPO)

A group whose rewards are all equal carries no signal: its advantages must be exactly 0.0 (float
rounding in r - mean must not leave a tiny non-zero push behind).

The policy is also kept near a reference model with a KL penalty, estimated per token from the two
log-probabilities of the sampled token (the "k3" estimator, always >= 0):

    d = ref_logp - logp,     k3 = exp(d) - d - 1

Write `group_advantages(rewards, std_scale=True)`:
    in:  rewards  float tensor (N, G): one row per theorem, G >= 2 attempts each
    out: float tensor (N, G), the advantages (float32)
Write `k3_kl(logp, ref_logp)`:
    in:  logp, ref_logp  float tensors (B, T): log-probs of the sampled tokens under the policy and
                         under the reference model
    out: float tensor (B, T), the k3 estimate per token (same dtype as logp)

Check it:   python exercises/check.py grpo
"""
import torch  # noqa: F401  (you will need it)


def group_advantages(rewards, std_scale=True):
    raise NotImplementedError("write me: group_advantages(rewards, std_scale) -> (N, G) tensor")


def k3_kl(logp, ref_logp):
    raise NotImplementedError("write me: k3_kl(logp, ref_logp) -> (B, T) tensor")
