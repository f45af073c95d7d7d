"""Benchmark: the paper's top-K loss on full logits (fd_loss.reference_loss) against the fused, chunked
version (fd_loss.teacher_topk + fd_loss.fused_loss), side by side: extra peak memory and time of one
forward + backward. Paper: Section 3 / Appendix B (K = 25); fd_loss.py explains the loss.

    python bench/bench_loss.py                      # default table (about 5-10 minutes on 2 cores)
    python bench/bench_loss.py --vocab 32000 --rows 512 --repeats 1   # quick look

What one measurement is ("step", the default): starting from the student's and the teacher's
final hidden states (B*T, H) and their lm heads (V, H), get the teacher's top-K targets, compute the
student's loss and run backward to the student's hidden states and lm head. The reference path
materialises the teacher's and the student's (B*T, V) logits; the fused path holds at most
chunk_size rows of logits at once. `--mode loss` leaves the teacher out: the target is an input
(full teacher logits for the reference, (ids, logprobs) for the fused path).

How memory is measured (CPU): every (configuration, method) runs in its own subprocess, started
with MALLOC_MMAP_THRESHOLD_=65536 so that glibc returns freed tensors to the OS instead of keeping
them in RSS (otherwise a later, smaller peak hides behind an earlier one). Extra memory = peak RSS
(getrusage ru_maxrss) - RSS right after the inputs were created (and after a tiny warm-up, so that
thread pools and library buffers count in the baseline). "grads" is the size of the two gradients
every method must return ((B*T, H) and (V, H), fp32); "workspace" = extra - grads is what chunking
can remove. On CUDA (when present) the same runs use torch.cuda.max_memory_allocated.

Threads: torch.set_num_threads(2) on purpose in every worker: the machine has 2 cores, and a fixed
count keeps the two methods comparable (run nothing else heavy meanwhile: torch's OpenMP threads
slow down sharply when another process holds a core). Time is the best of --repeats runs.
"""
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fd_loss  # noqa: E402
from fdlean import cli  # noqa: E402


@dataclass
class Config:
    vocab: tuple = (32000, 151936)       # a 32k-token vocabulary and Qwen's
    rows: tuple = (512, 2048, 8192)      # B*T attempt positions
    hidden: int = 1024                   # H (Qwen3-0.6B has H = 1024, V = 151,936)
    topk: int = fd_loss.TOPK
    chunk_size: int = fd_loss.CHUNK_SIZE
    mode: str = "step"                   # "step" (teacher top-K + student loss) or "loss"
    repeats: int = 2
    rounds: int = 1                      # run the (reference, fused) pair this many times, alternating
    ref_max_gib: float = 8.0             # skip reference runs estimated above this (CPU RAM)
    threads: int = 2
    devices: tuple = ()                  # empty: cpu, plus cuda when available
    methods: tuple = ("reference", "fused")
    worker: str = ""                     # internal: measure one method in this process (main starts these)


def ref_estimate_bytes(n, v, h, mode):
    """What the reference holds at its peak, roughly: student logits, log-softmax, two gradient
    buffers (+ teacher logits in step mode), plus the lm-head gradient."""
    copies = 5 if mode == "step" else 4
    return copies * n * v * 4 + v * h * 4


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(method, vocab, rows, hidden, topk, chunk_size, mode, repeats, threads, device):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    batch = max(1, rows // 512)  # a realistic (B, T) split; the loss only sees B*T rows
    shape = (batch, rows // batch)

    def inputs(v, n_shape):
        # Scaled like a trained lm head: logits of a few nats, not hundreds.
        h = torch.randn(*n_shape, hidden, device=dev, requires_grad=True)
        w = (torch.randn(v, hidden, device=dev) / hidden ** 0.5).requires_grad_()
        th = torch.randn(*n_shape, hidden, device=dev)
        tw = torch.randn(v, hidden, device=dev) * 3 / hidden ** 0.5  # a peaked teacher
        mask = torch.ones(n_shape, dtype=torch.bool, device=dev)
        return h, w, th, tw, mask

    def target(th, tw, k):
        # mode "loss": the teacher's target is an input, prepared outside the measurement
        if method == "reference":
            with torch.no_grad():
                return (th @ tw.T,)
        return fd_loss.teacher_topk(th, tw, k, chunk_size)

    def step(h, w, th, tw, mask, tgt, k):
        h.grad = w.grad = None
        if method == "reference":
            if mode == "step":
                with torch.no_grad():
                    t_logits = th @ tw.T
            else:
                (t_logits,) = tgt
            s_logits = h @ w.T
            loss = fd_loss.reference_loss(s_logits, t_logits, mask, topk=k)
        else:
            ids, logprobs = fd_loss.teacher_topk(th, tw, k, chunk_size) if mode == "step" else tgt
            loss = fd_loss.fused_loss(h, w, ids, logprobs, mask, chunk_size)
        loss.backward()
        return loss.item()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    # Tiny warm-up of the same code path: thread pools, allocator and library buffers go into the
    # baseline, not into the measurement.
    small = inputs(64, (2, 8))
    step(*small, target(*small[2:4], min(topk, 64)), min(topk, 64))
    del small
    args = inputs(vocab, shape)
    tgt = target(*args[2:4], topk) if mode == "loss" else None
    sync()
    if dev.type == "cuda":
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    else:
        base = rss_bytes()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        loss = step(*args, tgt, topk)
        sync()
        times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"extra": peak - base, "time": min(times), "loss": loss}))


def run_one(cfg, method, vocab, rows, device):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", method, "--vocab", str(vocab),
           "--rows", str(rows), "--hidden", str(cfg.hidden), "--topk", str(cfg.topk),
           "--chunk-size", str(cfg.chunk_size), "--mode", cfg.mode, "--repeats", str(cfg.repeats),
           "--threads", str(cfg.threads), "--devices", device]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(cfg):
    devices = list(cfg.devices) or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    mib = 2 ** 20
    print(f"fd loss benchmark: mode={cfg.mode}, H={cfg.hidden}, K={cfg.topk}, "
          f"chunk_size={cfg.chunk_size}, fp32, torch {torch.__version__}, "
          f"{cfg.threads} threads (set on purpose), best of {cfg.repeats} runs x {cfg.rounds} "
          "alternating rounds\n")
    print("| device | V | B*T | method | extra peak MiB | grads MiB | workspace MiB | time s "
          "| memory ref/fused | time fused/ref | loss |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for device in devices:
        for vocab in cfg.vocab:
            measured = []  # (rows, reference extra bytes): to extrapolate where it cannot run
            for rows in cfg.rows:
                grads = (rows * cfg.hidden + vocab * cfg.hidden) * 4
                res = {}
                # Alternate the two methods over rounds and keep each one's best time, so that a
                # burst of load from other processes does not land on one method only.
                for _ in range(cfg.rounds):
                    for method in cfg.methods:
                        est = ref_estimate_bytes(rows, vocab, cfg.hidden, cfg.mode)
                        if method == "reference" and device == "cpu" and \
                                est > cfg.ref_max_gib * 2**30:
                            skip = f"skipped: needs about {est / 2**30:.0f} GiB"
                            fit = None
                            if len(measured) >= 2:  # linear in B*T through the last two sizes
                                (n0, e0), (n1, e1) = measured[-2:]
                                fit = e1 + (e1 - e0) / (n1 - n0) * (rows - n1)
                                skip += f" (linear fit of the measured sizes: {fit / 2**30:.1f} GiB)"
                            res[method] = {"skip": skip, "fit": fit}
                            continue
                        r = run_one(cfg, method, vocab, rows, device)
                        old = res.get(method)
                        if old and "time" in old and "time" in r:
                            r = dict(r, time=min(r["time"], old["time"]),
                                     extra=max(r["extra"], old["extra"]))
                        res[method] = r
                ref, fus = res.get("reference", {}), res.get("fused", {})
                both = "extra" in ref and "extra" in fus
                if "extra" in ref:
                    measured.append((rows, ref["extra"]))
                for method, r in res.items():
                    if "extra" not in r:
                        print(f"| {device} | {vocab} | {rows} | {method} | "
                              f"{r.get('skip') or r.get('error')} | | | | | | |")
                        continue
                    ratio_m = f"{ref['extra'] / max(fus['extra'], 1):.1f}x" if both else ""
                    if ref.get("fit") and "extra" in fus:
                        ratio_m = f"~{ref['fit'] / max(fus['extra'], 1):.0f}x (fit)"
                    ratio_t = f"{fus['time'] / ref['time']:.2f}x" if both else ""
                    print(f"| {device} | {vocab} | {rows} | {method} | {r['extra'] / mib:.0f} | "
                          f"{grads / mib:.0f} | {(r['extra'] - grads) / mib:.0f} | "
                          f"{r['time']:.2f} | {ratio_m if method == 'fused' else ''} | "
                          f"{ratio_t if method == 'fused' else ''} | {r['loss']:.4f} |", flush=True)


if __name__ == "__main__":
    cfg = cli.parse(Config, prog="bench_loss.py", description=__doc__.split("\n")[0])
    if cfg.worker:
        worker(cfg.worker, cfg.vocab[0], cfg.rows[0], cfg.hidden, cfg.topk, cfg.chunk_size, cfg.mode, cfg.repeats,
               cfg.threads, cfg.devices[0])
    else:
        main(cfg)
