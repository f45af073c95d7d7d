"""Nothing lost: the run folder, written so that a killed run resumes exactly where it stopped.

Used by fd.py and grpo.py (`--resume OUT`). A run folder OUT holds:

    config.json     the settings of the run (a resumed run reads them back)
    metrics.jsonl   one JSON object per finished step
    state.pt        the latest training state: every network's weights (student, teacher or
                    reference), optimizer, scheduler, RNG states, step, data position
    step_000050/    HF-format checkpoints (model + tokenizer), loadable with `--model OUT/step_000050`
    final/          the HF-format model at the end

`state.pt` is written to a temporary file and renamed, so a crash while saving leaves the previous
state intact. On resume, metric lines written after the saved step are dropped: the resumed run
writes them again, and with a seed on CPU it writes the same lines an uninterrupted run would.
"""
import argparse
import inspect
import json
import math
import os
import random
import re
from dataclasses import asdict, fields

import torch


def parse_config(Config, paper: dict, description: str, argv=None):
    """The command line of fd.py / grpo.py, mirrored from their settings dataclass: one --flag per
    field, its help the field's comment. `--paper` applies the paper's values (explicit flags win);
    `--resume OUT` reads the run's own settings back (only --steps may change, to extend a run)."""
    helps = dict(re.findall(r"^\s+(\w+):[^#\n]*#\s*(.*)$", inspect.getsource(Config), re.M))
    p = argparse.ArgumentParser(description=description)
    for f in fields(Config):
        flag, text = "--" + f.name.replace("_", "-"), helps.get(f.name, "").replace("%", "%%")
        if isinstance(f.default, bool):
            p.add_argument(flag, action="store_true", help=text)
        else:
            p.add_argument(flag, type=type(f.default), default=None, help=f"{text} (default: {f.default})")
    args = {k: v for k, v in vars(p.parse_args(argv)).items() if v is not None and v is not False}
    if args.get("resume"):
        saved = read_config(args["resume"])
        saved.update(resume=args["resume"], out=args["resume"], **{k: args[k] for k in ("steps",) if k in args})
        return Config(**saved)
    cfg = Config(**args)
    if cfg.paper:
        cfg = Config(**{**asdict(cfg), **paper, **{k: v for k, v in args.items() if k in paper}})
    return cfg


def write_config(out, config: dict):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


def read_config(out) -> dict:
    path = os.path.join(out, "config.json")
    if not os.path.isfile(path):
        raise SystemExit(f"--resume {out}: no config.json there; is this a run folder of fd.py / grpo.py?")
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


def save_state(out, step, nets: dict, optimizer, scheduler, extra: dict | None = None):
    """Atomically write the whole training state after `step` finished steps."""
    state = {
        "step": step,
        "nets": {name: net.state_dict() for name, net in nets.items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": _rng_state(),
        "extra": extra or {},
    }
    path = os.path.join(out, "state.pt")
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)


def load_state(out, nets: dict, optimizer, scheduler) -> dict:
    """Restore what save_state wrote; returns {"step": ..., "extra": ...}. Drops later metric lines."""
    path = os.path.join(out, "state.pt")
    if not os.path.isfile(path):
        raise SystemExit(f"--resume {out}: no state.pt there (the run stopped before its first save)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    for name, net in nets.items():
        net.load_state_dict(state["nets"][name])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    kept = [row for row in read_metrics(out) if row.get("step", 0) <= state["step"]]
    with open(os.path.join(out, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in kept)
    return {"step": state["step"], "extra": state["extra"]}


def begin(cfg, nets: dict, optimizer, scheduler, evaluate_before) -> tuple[int, dict]:
    """Start the run in cfg.out (write config.json, evaluate the starting model, log it as step 0)
    or, with cfg.resume, restore it. Returns (finished steps, extra state: skipped, before)."""
    if cfg.resume:
        state = load_state(cfg.out, nets, optimizer, scheduler)
        return state["step"], state["extra"]
    write_config(cfg.out, asdict(cfg))
    before = evaluate_before()
    append_metrics(cfg.out, {"step": 0, "heldout_pass1": before})
    return 0, {"skipped": 0, "before": before}


def save(cfg, step, nets: dict, optimizer, scheduler, extra: dict, policy):
    """Every save_every steps and at the end: the training state, and an HF-format copy of the
    trained model (model + tokenizer) that `--model OUT/step_N` or `--model OUT/final` loads."""
    save_state(cfg.out, step, nets, optimizer, scheduler, extra)
    folder = os.path.join(cfg.out, "final" if step == cfg.steps else f"step_{step:06d}")
    policy.model.save_pretrained(folder, safe_serialization=True)
    policy.tokenizer.save_pretrained(folder)
