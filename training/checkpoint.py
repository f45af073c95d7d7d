"""Nothing lost: the run folder, written so that a killed run resumes exactly where it stopped.

Used by fd.py and grpo.py (`--resume OUT`). A run folder holds ONE run: a new run refuses an OUT
that already holds one (check_out). A run folder OUT holds:

    config.json     the settings of the run (a resumed run reads them back)
    metrics.jsonl   one JSON object per finished step
    state.pt        the latest training state: every network's weights (student, teacher or
                    reference), optimizer, scheduler, RNG states, step, data position
    step_000050/    HF-format checkpoints (model + tokenizer), loadable with `--model OUT/step_000050`
    final/          the HF-format model at the end

`state.pt` is written to a temporary file and renamed, so a crash while saving leaves the previous
state intact. It is read back with torch.load(weights_only=True): tensors and plain containers, never code, so
a crafted state.pt in a folder handed to --resume cannot run anything. On resume, metric lines written after the saved step are dropped: the resumed run
writes them again, and with a seed on CPU it writes the same lines an uninterrupted run would.
"""
import json
import math
import os
import random

import torch

from fdlean import cli, parallel
from training import shard


def check_out(cfg, script: str):
    """A run folder holds one run. A new run never writes into a folder that holds one (it would
    mix its metric lines into the old ones and replace its config and models); --resume needs the
    saved state. An empty or missing folder is a new run's."""
    out = cfg.resume or cfg.out
    if os.path.exists(out) and not os.path.isdir(out):
        cli.fail(f"{script}: {'--resume' if cfg.resume else '--out'} {out} is a file: give a run folder")
    found = [f for f in ("config.json", "metrics.jsonl", "state.pt") if os.path.exists(os.path.join(out, f))]
    saved = "state.pt" in found
    if cfg.resume and not saved:
        cli.fail(f"{script}: --resume {out}: no state.pt there (the run stopped before its first save, or this is "
                 f"not a run folder): start again with a new --out, or delete {out}")
    if cfg.resume:
        return
    if not found:   # not a run: a new run may start in it only if it is empty (the one rule, cli.new_folder)
        return cli.new_folder(out, script, own=("feedback_cache", "wandb", "wandb_id.txt"))   # a start that failed early
    if saved:
        cli.fail(f"{script}: --out {out} already holds a run ({', '.join(found)}): continue it with "
                 f"`--resume {out}` (and --steps N to extend it), or choose a new --out")
    cli.fail(f"{script}: --out {out} holds a run that never saved its state ({', '.join(found)}): "
             f"delete {out} (rm -r {out}) or choose a new --out")


def resume_hint(cfg, script: str) -> str:
    """How to continue a run that stopped: --resume when it has saved a state, else start again."""
    out = cfg.resume or cfg.out
    if os.path.isfile(os.path.join(out, "state.pt")):
        return f"`python {script} --resume {out}` continues it from its last save"
    return f"Nothing was saved yet: start it again (delete {out} first: rm -r {out})"


# ----------------------------------------------------------------------------- the run folder

def write_config(out, config: dict):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


def read_config(out, script="checkpoint.py") -> dict:
    path = os.path.join(out, "config.json")
    if not os.path.isfile(path):
        cli.fail(f"{script}: --resume {out}: no config.json there; is this a run folder of fd.py / grpo.py?")
    with open(path) as f:
        return json.load(f)


def append_metrics(out, row: dict):
    # NaN / inf are not JSON: write them as null so every line stays parseable.
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
    with open(os.path.join(out, "metrics.jsonl"), "a") as f:
        f.write(json.dumps(clean) + "\n")


def read_metrics(out) -> list:
    path = os.path.join(out, "metrics.jsonl")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _rng_state():
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state):
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(out, step, nets: dict, optimizer, scheduler, extra: dict | None = None) -> dict:
    """Atomically write the whole training state after `step` finished steps; returns it. Every process
    calls it (a sharded net is gathered into full tensors: shard.py); rank 0 writes."""
    trained = next(iter(nets.values()))   # the net the optimizer trains comes first
    state = {
        "step": step,
        "nets": {name: shard.model_state(net) for name, net in nets.items()},
        "optimizer": shard.optimizer_state(trained, optimizer),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": _rng_state(),
        "extra": extra or {},
    }
    if parallel.is_main():
        path = os.path.join(out, "state.pt")
        torch.save(state, path + ".tmp")
        os.replace(path + ".tmp", path)
    return state


def load_state(out, nets: dict, optimizer, scheduler) -> dict:
    """Restore what save_state wrote (on any number of processes, sharded or not); returns {"step": ...,
    "extra": ...}. Drops later metric lines."""
    path = os.path.join(out, "state.pt")
    if not os.path.isfile(path):
        cli.fail(f"--resume {out}: no state.pt there (the run stopped before its first save)")
    try:   # a run folder is data: weights_only unpickles tensors and plain containers, never code
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:   # a crafted or broken file (pickle.UnpicklingError for a payload, EOFError when cut)
        why = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        cli.fail(f"--resume {out}: {path} is not a training state this project wrote, and is not loaded ({why})")
    if not isinstance(state, dict) or not {"step", "nets", "optimizer", "rng", "extra"} <= set(state):
        cli.fail(f"--resume {out}: {path} is not a training state this project wrote (its fields are missing)")
    for name, net in nets.items():
        shard.load_model_state(net, state["nets"][name])
    shard.load_optimizer_state(next(iter(nets.values())), optimizer, state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    parallel.barrier()   # every process has read the state before the metrics are cut back
    if parallel.is_main():
        kept = [row for row in read_metrics(out) if row.get("step", 0) <= state["step"]]
        with open(os.path.join(out, "metrics.jsonl"), "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in kept)
    return {"step": state["step"], "extra": state["extra"]}


def save(cfg, step, nets: dict, optimizer, scheduler, extra: dict, policy):
    """The training state, and an HF-format copy of the trained model (model + tokenizer) that
    `--model OUT/step_N` or `--model OUT/final` loads: the trained net's full fp32 weights, also when
    it is sharded and `policy` holds the copy that samples."""
    state = save_state(cfg.out, step, nets, optimizer, scheduler, extra)
    if not parallel.is_main():
        return
    folder = os.path.join(cfg.out, "final" if step == cfg.steps else f"step_{step:06d}")
    trained = next(iter(nets.values()))
    weights = None
    if shard.is_sharded(trained):   # the gathered fp32 weights, once per tensor (a tied head is the embedding)
        first = {}
        for name, value in policy.model.state_dict().items():
            first.setdefault(value.data_ptr(), name)
        weights = {k: v for k, v in next(iter(state["nets"].values())).items() if k in first.values()}
    policy.model.save_pretrained(folder, state_dict=weights, safe_serialization=True)
    policy.tokenizer.save_pretrained(folder)
