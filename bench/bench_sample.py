"""Sampling throughput: sampling.sample (our KV-cache loop) against HF `generate`, same prompts, same RNG.

Paper context: FD samples one on-policy attempt per prompt every step (Section 3); on CPU sampling
is the bottleneck (Lean checks hundreds of proofs per second), so sampling.py has its own loop. Same outputs are required:
greedy must match exactly; sampled outputs with the same torch seed should match too (both draw
one multinomial over the whole batch per step; rare float ties may differ).

    python bench/bench_sample.py                      # small-prover, 256 mini test prompts, 1 thread
Rows: greedy and sampled on 256 distinct prompts, then 16 prompts x 16 samples (pass@16 evaluation,
GRPO groups), where our loop prefills each distinct prompt once.
    python bench/bench_sample.py --model DIR --n 512 --batch-size 256 --threads 2
"""
import os
import sys
import time
from dataclasses import dataclass

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fdlean import (
    cli,  # noqa: E402
    sampling,  # noqa: E402
)
from fdlean import lm as M  # noqa: E402
from mini import tasks  # noqa: E402
from small_prover import sft  # noqa: E402


def hf_generate(policy, prompts, max_new_tokens, temperature, top_p):
    """HF generate on the same left-padded batch; returns list[list[int]] cut after the first EOS."""
    tok, stops = policy.tokenizer, sampling.stop_ids(policy)
    T = max(len(p) for p in prompts)
    ids = torch.tensor([[tok.pad_token_id] * (T - len(p)) + p for p in prompts], device=policy.device)
    mask = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in prompts], device=policy.device)
    how = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if temperature > 0 \
        else dict(do_sample=False, temperature=None, top_p=None, top_k=None)
    out = policy.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                eos_token_id=stops, pad_token_id=tok.pad_token_id, **how)
    seqs = []
    for row in out[:, T:].tolist():
        cut = next((i + 1 for i, t in enumerate(row) if t in stops), len(row))
        seqs.append(row[:cut])
    return seqs


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


@dataclass
class Config:
    model: str = "small-prover"   # the preset (built by small_prover/sft.py on first use), a folder or an HF id
    n: int = 256                  # prompts (mini test split)
    batch_size: int = 256
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    samples_per_prompt: int = 16  # the third row: repeated prompts
    seed: int = 0
    threads: int = 1


def main():
    a = cli.parse(Config, prog="bench_sample.py", description=__doc__.split("\n")[0])
    torch.set_num_threads(a.threads)
    policy = M.load(sft.resolve_model(a.model))
    test = tasks.load("mini", split="test")[: a.n]
    prompts = [M.encode_prompt(policy.tokenizer, t) for t in test]
    print(f"model {a.model}: {sum(x.numel() for x in policy.model.parameters()) / 1e6:.2f}M parameters, "
          f"{len(prompts)} prompts, batch {a.batch_size}, {a.threads} thread(s), device {policy.device}")
    sampling.sample(policy, prompts[:8], max_new_tokens=4)  # warm-up
    k = a.samples_per_prompt
    repeated = [p for p in prompts[: max(1, a.n // k)] for _ in range(k)]  # as pass@k evaluation / GRPO groups
    for name, temperature, rows in (("greedy", 0.0, prompts), (f"sampled T={a.temperature}", a.temperature, prompts),
                                    (f"sampled, {k} per prompt", a.temperature, repeated)):
        chunks = [rows[i:i + a.batch_size] for i in range(0, len(rows), a.batch_size)]
        torch.manual_seed(a.seed)
        ours, t_ours = timed(lambda chunks=chunks, temperature=temperature: [s.ids for c in chunks for s in sampling.sample(
            policy, c, a.max_new_tokens, temperature, a.top_p, batch_size=a.batch_size)])
        torch.manual_seed(a.seed)
        theirs, t_hf = timed(lambda chunks=chunks, temperature=temperature: [s for c in chunks for s in hf_generate(
            policy, c, a.max_new_tokens, temperature, a.top_p)])
        n_tok = sum(len(s) for s in ours)
        same = sum(x == y for x, y in zip(ours, theirs))
        print(f"{name:24s} tokens {n_tok:6d} | ours {n_tok / t_ours:6.0f} tok/s ({t_ours:5.1f} s) | "
              f"HF generate {sum(len(s) for s in theirs) / t_hf:6.0f} tok/s ({t_hf:5.1f} s) | "
              f"speed-up {t_hf / t_ours:4.1f}x | identical {same}/{len(ours)}")


if __name__ == "__main__":
    main()
