"""Exercise pass_at_k: the unbiased pass@k estimator (about 15 minutes; an estimate).

Paper: Feedback Distillation (Narozniak et al., arXiv 2605.30861), the results section: pass@k for
k = 1, 2, 4, 8, 16 on held-out theorems. The project computes it in evaluate.py (see its docstring),
after Chen et al. (2021), "Evaluating Large Language Models Trained on Code".

The question pass@k answers: if the model tries a theorem k times, what is the chance that at least
one try is a correct proof? We sampled n attempts and c of them were correct. The naive answer
1 - (1 - c/n)^k is biased (it treats the n samples as the true success rate). The unbiased one asks:
pick k of the n samples at random, without replacement; what is the chance that at least one of the
k is correct? That is one minus the chance that all k come from the n - c wrong ones.

Write `pass_at_k(n, c, k)`:
    in:  n (int, n >= 1) samples, c (int, 0 <= c <= n) of them correct, k (int, 1 <= k <= n)
    out: a Python float in [0, 1]
Think about: c = 0, c = n, n - c < k (every choice of k samples contains a correct one), and large
n (n = 3000: a binomial coefficient that big does not fit in a float).

Check it:   python exercises/check.py pass_at_k
"""


def pass_at_k(n: int, c: int, k: int) -> float:
    raise NotImplementedError("write me: pass_at_k(n, c, k) -> float")
