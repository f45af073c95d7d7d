"""Data parallel over processes: the same step on N processes (`torchrun`) as on one.

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Section 4: 128 statements
a step on 8 GPUs. Every process (rank) draws the same statements, keeps a contiguous share, and samples
each statement's attempt with that statement's own generator (seed, step, its index in the step), so the
attempts do not depend on N. A loss is a sum over the rank's attempt tokens divided by the count over
ALL ranks (`all_sum`); the gradients are summed over ranks (`sum_grads`) before the clip and the step,
so every rank takes the one-process step and the weights (and the EMA teacher) stay equal everywhere.
Rank 0 alone prints, writes metrics and checkpoints; evaluation is sharded and gathered.

    torchrun --standalone --nproc_per_node 2 fd.py --model small-prover --steps 2 --prompts 8 --threads 1 --out OUT
    torchrun --nproc_per_node 8 fd.py --model Qwen/Qwen3-8B --paper ...      # NCCL on GPUs, gloo on CPU

One process (plain `python fd.py`) is rank 0 of 1: every function here is then a no-op.
Test: python -m pytest -q tests/test_parallel.py
"""
import datetime
import os

import torch
import torch.distributed as dist


def init():
    """Join the process group torchrun describes (WORLD_SIZE > 1): NCCL when GPUs are visible, else gloo."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(hours=2))   # Lean batches can be long
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def say(*args, **kwargs):
    """print, on rank 0 only."""
    if is_main():
        print(*args, **kwargs)


def device(wanted: str = "") -> str:
    """The rank's device: its own GPU under torchrun (cuda:LOCAL_RANK), else what was asked."""
    if dist.is_initialized() and torch.cuda.is_available() and not wanted:
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return wanted


def share(n: int) -> range:
    """This rank's contiguous share of n items (the first n % size ranks get one more)."""
    per, extra = divmod(n, size())
    start = rank() * per + min(rank(), extra)
    return range(start, start + per + (rank() < extra))


def all_sum(values):
    """A list of floats summed over ranks (one all-reduce in float64)."""
    if not dist.is_initialized():
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return t.tolist()


def means(**values: list) -> dict:
    """Each list's mean over every rank's items (one all-reduce): per-attempt figures of a step."""
    sums = all_sum([sum(map(float, v)) for v in values.values()] + [len(next(iter(values.values())))])
    return {key: total / sums[-1] for key, total in zip(values, sums)}


def all_max(values):
    """A list of floats, each the largest over ranks."""
    if not dist.is_initialized():
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def gather(items: list) -> list:
    """Every rank's list, concatenated in rank order (on every rank): shares back into the whole."""
    if not dist.is_initialized():
        return list(items)
    parts = [None] * size()
    dist.all_gather_object(parts, list(items))
    return [x for part in parts for x in part]


def sum_grads(net):
    """Sum every gradient over ranks: each rank's loss was already divided by the global token count."""
    if not dist.is_initialized():
        return
    for p in net.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)


def barrier():
    if dist.is_initialized():
        dist.barrier()


def statement_seed(seed: int, step: int, index: int) -> int:
    """The generator seed of one statement's attempt: the same on any number of processes."""
    return ((seed * 1_000_003 + step) * 1_000_033 + index) % (1 << 63)


def _comm_device():
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
