"""bf16 autocast on this CPU: faster than fp32 for the small prover's build, or much slower?

The small prover's build (small_prover/sft.py) trains under bf16 autocast when the CPU computes bf16 natively
(AVX512-BF16 or AMX); elsewhere bf16 matmuls are emulated and were measured 10-20x slower than fp32. This times
optimizer steps of the preset's network (small_prover/sft.py's defaults, random weights, random batches of the
build's shape) both ways, side by side, one thread, and prints what the build would choose here.

    python bench/bench_bf16.py                 # 10 steps each way (after 2 warm-up steps)
    python bench/bench_bf16.py --steps 30 --threads 2
"""
import os
import sys
import time
from dataclasses import dataclass

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fdlean import cli  # noqa: E402
from small_prover import sft  # noqa: E402


@dataclass
class Config:
    steps: int = 10        # timed optimizer steps per precision
    threads: int = 1       # torch threads
    length: int = 40       # tokens per example (the build's examples: about 20-60)
    vocab: int = 140       # the word-level vocabulary's size, about


def seconds_per_step(bf16: bool, cfg: Config) -> float:
    s = sft.Config()
    torch.manual_seed(0)
    tok = type("Tok", (), {"__len__": lambda self: cfg.vocab, "bos_token_id": 2, "eos_token_id": 3,
                           "pad_token_id": 0})()
    net = sft.new_small_prover(s, tok)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    ids = torch.randint(4, cfg.vocab, (s.batch_size, cfg.length))
    times = []
    for i in range(cfg.steps + 2):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = net(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:   # the first steps allocate
            times.append(time.perf_counter() - t0)
    return sum(times) / len(times)


def main():
    cfg = cli.parse(Config, prog="bench_bf16.py", description=__doc__.split("\n")[0])
    torch.set_num_threads(cfg.threads)
    fp32, bf16 = seconds_per_step(False, cfg), seconds_per_step(True, cfg)
    print(f"small prover ({sft.Config().d_model}-wide, {sft.Config().n_layers} layers), batch {sft.Config().batch_size} x "
          f"{cfg.length} tokens, {cfg.threads} thread(s), mean of {cfg.steps} steps")
    print(f"  fp32:          {fp32:.3f} s/step")
    print(f"  bf16 autocast: {bf16:.3f} s/step  ({bf16 / fp32:.2f}x fp32's time)")
    print(f"  native bf16 on this CPU: {sft.native_bf16()}; the build uses "
          f"{'bf16 autocast' if sft.native_bf16() else 'fp32'} here")


if __name__ == "__main__":
    main()
