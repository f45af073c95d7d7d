"""Data parallel step time (fdlean/parallel.py): fd.py and grpo.py on one process and under torchrun on N, side by side.

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Section 4 trains on 8 GPUs; this
measures what the data-parallel split buys on the CPU here. Each of the four runs is the same small run (same global
batch, same seed), started as the tests start it (tests/test_parallel.py): `python SCRIPT ...` or
`python -m torch.distributed.run --standalone --nproc_per_node N SCRIPT ...` (gloo), OMP_NUM_THREADS=1, --threads 1.

    python bench/bench_parallel.py                          # small-prover, 6 steps of 32 statements, 1 vs 2 processes (~2 min)
    python bench/bench_parallel.py --model DIR --steps 5 --prompts 32 --procs 4

Read from each run's metrics.jsonl: the per-step phase times (checkpoint.Stopwatch: time_sample, time_lean, ...),
the first step skipped (warm-up), mean seconds per step; "step" is their sum. Under torchrun the figures are rank
0's: a rank that finishes its share early waits inside the gradient all-reduce, which lands in time_update.
The losses of the one-process and the N-process run must agree to 1e-4 relative (same global batch).
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fdlean import cli  # noqa: E402
from small_prover import sft  # noqa: E402
from training import checkpoint  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHASES = ("sample", "lean", "feedback", "teacher", "score", "student", "update")


@dataclass
class Config:
    model: str = "small-prover"   # the preset (built by small_prover/sft.py on first use), a folder or an HF id
    steps: int = 6                # optimizer steps per run; the first is warm-up and not counted
    prompts: int = 32             # statements per step (the global batch: split over the processes)
    group: int = 4                # GRPO attempts per statement
    max_new_tokens: int = 64      # token budget per attempt
    procs: int = 2                # processes of the torchrun runs (each with 1 thread)
    seed: int = 0
    out: str = ""                 # keep the four run folders here (default: a temporary folder, removed)


def run(script, args, out, procs):
    """One training run; returns its wall seconds (process start to exit: loading and evaluation included)."""
    launch = [sys.executable] if procs == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)]
    cmd = [*launch, os.path.join(ROOT, script), *map(str, args), "--out", out]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    if done.returncode != 0:
        cli.fail(f"bench_parallel.py: {' '.join(cmd)} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def step_rows(out):
    """The metrics lines of the optimizer steps (the lines that carry a loss), in order."""
    return [r for r in checkpoint.read_metrics(out) if "loss" in r and "time_update" in r]


def phase_means(rows):
    """Mean seconds per measured step of each phase (None where the script has no such phase) and of their sum."""
    measured = rows[1:] or rows   # the first step warms up (allocations, Lean start); with one step keep it
    means = {p: sum(r[f"time_{p}"] for r in measured) / len(measured) if f"time_{p}" in measured[0] else None
             for p in PHASES}
    means["step"] = sum(v for v in means.values() if v is not None)
    return means, len(measured)


def max_rel_diff(a, b):
    assert len(a) == len(b) and a, (len(a), len(b))
    return max(abs(x - y) / max(abs(x), abs(y), 1e-12) for x, y in zip(a, b))


def main():
    a = cli.parse(Config, prog="bench_parallel.py", description=__doc__.split("\n")[0])
    cli.check(a, [("steps", lambda v: v >= 1, "at least 1"), ("procs", lambda v: v >= 2, "at least 2"),
                  ("prompts", lambda v: v >= a.procs, "at least --procs (every process needs a statement)")],
              "bench_parallel.py")
    load_before = os.getloadavg()[0]
    model = sft.resolve_model(a.model)   # build the preset once, here, not in four runs at once
    common = ["--model", model, "--steps", a.steps, "--prompts", a.prompts, "--max-new-tokens", a.max_new_tokens,
              "--eval-limit", 1, "--eval-n", 1, "--eval-every", 0, "--threads", 1, "--seed", a.seed]
    extra = {"fd.py": [], "grpo.py": ["--group", a.group]}
    with tempfile.TemporaryDirectory() as tmp:
        base = a.out or tmp
        cols, losses, walls = {}, {}, {}
        for script in ("fd.py", "grpo.py"):
            for procs in (1, a.procs):
                name = f"{script[:-3]} {procs} proc" + ("s" if procs > 1 else "")
                out = os.path.join(base, f"{script[:-3]}_{procs}")
                print(f"running {name} ...", flush=True)
                walls[name] = run(script, common + extra[script], out, procs)
                rows = step_rows(out)
                cols[name], n_measured = phase_means(rows)
                losses[name] = [r["loss"] for r in rows]
        print(f"\nseconds per step, mean over steps 2..{a.steps} ({n_measured} measured); model {a.model}, "
              f"{a.prompts} statements a step (GRPO: x {a.group} attempts), {a.max_new_tokens} new tokens, 1 thread a process")
        names = list(cols)
        print(f"{'phase':<10}" + "".join(f"{n:>14}" for n in names))
        for key in PHASES + ("step",):
            if all(cols[n][key] is None for n in names):
                continue
            cells = ("-" if cols[n][key] is None else f"{cols[n][key]:.2f}" for n in names)
            print(f"{key:<10}" + "".join(f"{c:>14}" for c in cells))
        print(f"{'whole run':<10}" + "".join(f"{walls[n]:>14.1f}" for n in names) + "   (s, load + eval included)")
        for script in ("fd", "grpo"):
            one, many = f"{script} 1 proc", f"{script} {a.procs} procs"
            diff = max_rel_diff(losses[one], losses[many])
            print(f"{script}: speedup {cols[one]['step'] / cols[many]['step']:.2f}x per step "
                  f"({walls[one] / walls[many]:.2f}x whole run); losses {'agree' if diff <= 1e-4 else 'DIFFER'} "
                  f"(max relative difference {diff:.1e} over {len(losses[one])} steps)")
        if a.out:
            print(f"runs kept in {a.out}: " + json.dumps(sorted(os.listdir(a.out))))
    cpus = len(os.sched_getaffinity(0))
    print(f"note: {os.cpu_count()} CPUs, {cpus} usable by this process; {a.procs} processes x 1 thread"
          + (" share them with each other (and anything else running)" if cpus <= a.procs else "")
          + f"; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
