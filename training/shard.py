"""Sharded training state (FSDP2) for provers whose fp32 weights, gradients and AdamW moments do not fit one GPU.

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Section 4: a 9B model on 8 GPUs.
Training keeps fp32 master weights (model.autocast), so a parameter costs 16 bytes with AdamW, and FD's EMA
teacher 4 more: Qwen3-8B needs about 160 GB before activations. `--fsdp` (under torchrun) shards the student
and the teacher over the processes with `fully_shard` (each decoder layer, then the whole model): each
process holds 1/N of the weights, gradients, moments and teacher. What is not sharded is a copy of the
student for sampling and evaluation (inference needs no optimizer state; bf16 on a GPU: 16 GB for 8B),
refreshed after every optimizer step, so the sampler (sampling.py, turns.py) runs unchanged and no process
waits on another while it samples. The losses are already divided by the global token count, so the
gradients are summed over processes, not averaged (set_gradient_divide_factor(1)).

    torchrun --nproc_per_node 8 fd.py --model Qwen/Qwen3-8B --paper --fsdp --micro-batch 4 ...

Every forward of a sharded model is a collective (its layers are gathered from all processes): the trainers
run the same number of micro-batches on every process. Checkpoints stay ordinary: the training state is
gathered into full tensors on rank 0 (state.pt, readable on any number of processes) and the model is saved
as an HF folder. One process: nothing is sharded.
Test: python -m pytest -q tests/test_parallel.py
"""
import copy

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule, fully_shard

from fdlean import parallel


def _layers(net):
    """The decoder layers: the ModuleList as long as the config's layer count (Llama, Qwen, Mistral, ...)."""
    n = net.config.num_hidden_layers
    for module in net.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ValueError(f"{type(net).__name__}: no list of {n} decoder layers to shard")


def shard(net):
    """Shard `net` in place over the processes (each decoder layer, then the root); no-op in one process."""
    if parallel.size() == 1:
        return net
    for layer in _layers(net):
        fully_shard(layer)
    fully_shard(net)
    for module in net.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)           # sum the gradients: the losses are already global means
            module.set_force_sum_reduction_for_comms(True)   # gloo has no scaled reduction
    return net


def for_training(trained, *others, dtype=torch.bfloat16):
    """--fsdp: shard the trained net and the others (teacher, reference) in place; return an unsharded copy of the
    trained net, in `dtype`, that samples and evaluates (refresh it after each step)."""
    sampler = copy.deepcopy(trained).to(dtype).eval().requires_grad_(False)
    for net in (trained, *others):
        if net is not None:
            shard(net)
    return sampler


def in_step(parts: list, net) -> list:
    """A step's micro-batches; when `net` is sharded, the last repeated until every process has as many (each
    forward is a collective): the caller gives the repeats (index >= its own count) weight 0."""
    if is_sharded(net):
        parts = parts + [parts[-1]] * (int(parallel.all_max([len(parts)])[0]) - len(parts))
    return parts


def sum_grads(net):
    """The gradients summed over processes: a sharded net's backward already did it (summing, see shard())."""
    if not is_sharded(net):
        parallel.sum_grads(net)


def is_sharded(net) -> bool:
    return isinstance(net, FSDPModule)


def release(net):
    """After a forward with no backward (the teacher, the reference): shard the root's parameters again."""
    if is_sharded(net):
        net.reshard()


@torch.no_grad()
def refresh(copy, net):
    """The unsharded copy takes the sharded net's weights, one tensor at a time (never the whole model twice)."""
    target = copy.state_dict()
    for name, value in net.state_dict().items():
        target[name].copy_(value.full_tensor() if hasattr(value, "full_tensor") else value)


# ---- checkpoints: full tensors on rank 0 out, full tensors in on every rank -------------------------------
FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def model_state(net) -> dict:
    """The net's state as full tensors (a collective when sharded: every process calls it; rank 0 gets them)."""
    return get_model_state_dict(net, options=FULL) if is_sharded(net) else net.state_dict()


def load_model_state(net, state: dict):
    if is_sharded(net):
        set_model_state_dict(net, state, options=StateDictOptions(full_state_dict=True))
    else:
        net.load_state_dict(state)


def optimizer_state(net, optimizer) -> dict:
    return get_optimizer_state_dict(net, optimizer, options=FULL) if is_sharded(net) else optimizer.state_dict()


def load_optimizer_state(net, optimizer, state: dict):
    """Either form in, either net: a sharded run's state is keyed by parameter name, a plain run's by position."""
    names = [name for name, _ in net.named_parameters()]
    by_name = any(isinstance(k, str) for k in state["state"]) or any(
        isinstance(p, str) for g in state["param_groups"] for p in g["params"])
    if is_sharded(net):
        if not by_name:
            state = _renamed(state, lambda i: names[i])
        set_optimizer_state_dict(net, optimizer, state, options=StateDictOptions(full_state_dict=True))
    else:
        optimizer.load_state_dict(_renamed(state, names.index) if by_name else state)


def _renamed(state: dict, key) -> dict:
    return {"state": {key(k): v for k, v in state["state"].items()},
            "param_groups": [{**g, "params": [key(p) for p in g["params"]]} for g in state["param_groups"]]}
