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
state intact. On resume, metric lines written after the saved step are dropped: the resumed run
writes them again, and with a seed on CPU it writes the same lines an uninterrupted run would.

Also the scripts' command line (fd.py, grpo.py, evaluate.py, sft.py): a user error (a setting out of
range, a missing file, no API key, no Lean) is one line on stderr and exit status 2, found before
any model loads; anything unexpected keeps its traceback.
"""
import argparse
import contextlib
import inspect
import json
import math
import os
import random
import re
import sys
from dataclasses import asdict, fields

import torch


# ----------------------------------------------------------------------------- user errors

def fail(message: str):
    """A user error: one line on stderr (what is wrong, what to do), exit status 2, no traceback."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not a usage block of 40 flags (--help shows those)
        fail(f"{self.prog}: {message} (see --help)")


@contextlib.contextmanager
def user_errors(what: str, *errors):
    """Set-up steps that read what the user named (a task file, a verifier, a feedback spec, a
    model): the listed exception types become one line "WHAT: why"; any other keeps its traceback."""
    try:
        yield
    except errors as e:
        why = f"{e.strerror}: {e.filename}" if isinstance(e, OSError) and e.strerror and e.filename else str(e)
        fail(f"{what}: {why}")


# Settings fd.py and grpo.py share: (field, test, what the value must be). Each script adds its own.
RULES = [
    ("steps", lambda v: v >= 1, "at least 1"),
    ("prompts", lambda v: v >= 1, "at least 1"),
    ("lr", lambda v: v > 0, "above 0"),
    ("weight_decay", lambda v: v >= 0, "0 or more"),
    ("grad_clip", lambda v: v > 0, "above 0"),
    ("warmup", lambda v: v >= 0, "0 or more"),
    ("eval_limit", lambda v: v >= 0, "0 or more (0: every task)"),
    ("eval_every", lambda v: v >= 0, "0 or more (0: only before and after)"),
    ("temperature", lambda v: v >= 0, "0 or more (0: greedy)"),
    ("top_p", lambda v: 0 < v <= 1, "above 0 and at most 1"),
    ("max_new_tokens", lambda v: v >= 1, "at least 1"),
    ("chunk_size", lambda v: v >= 1, "at least 1"),
    ("save_every", lambda v: v >= 1, "at least 1"),
    ("threads", lambda v: v >= 1, "at least 1"),
]


def check(cfg, rules, script: str):
    """Every setting in range before anything slow starts: "fd.py: --alpha 1.5: must be between 0 and 1".
    (A NaN fails every test, as it should.)"""
    for name, ok, must in rules:
        value = getattr(cfg, name)
        if not ok(value):
            fail(f"{script}: --{name.replace('_', '-')} {value}: must be {must}")


def check_out(cfg, script: str):
    """A run folder holds one run. A new run never writes into a folder that holds one (it would
    mix its metric lines into the old ones and replace its config and models); --resume needs the
    saved state. An empty or missing folder is a new run's."""
    out = cfg.resume or cfg.out
    found = [f for f in ("config.json", "metrics.jsonl", "state.pt") if os.path.exists(os.path.join(out, f))]
    saved = "state.pt" in found
    if cfg.resume and not saved:
        fail(f"{script}: --resume {out}: no state.pt there (the run stopped before its first save, or this is "
             f"not a run folder): start again with a new --out, or delete {out}")
    if cfg.resume or not found:
        return
    if saved:
        fail(f"{script}: --out {out} already holds a run ({', '.join(found)}): continue it with "
             f"`--resume {out}` (and --steps N to extend it), or choose a new --out")
    fail(f"{script}: --out {out} holds a run that never saved its state ({', '.join(found)}): "
         f"delete {out} (rm -r {out}) or choose a new --out")


# ----------------------------------------------------------------------------- the run folder

def parse_config(Config, paper: dict, description: str, argv=None, prog=None):
    """The command line of fd.py / grpo.py, mirrored from their settings dataclass: one --flag per
    field, its help the field's comment. `--paper` applies the paper's values (explicit flags win);
    `--resume OUT` reads the run's own settings back (only --steps may change, to extend a run)."""
    helps = dict(re.findall(r"^\s+(\w+):[^#\n]*#\s*(.*)$", inspect.getsource(Config), re.M))
    p = Parser(prog=prog, description=description)
    for f in fields(Config):
        flag, text = "--" + f.name.replace("_", "-"), helps.get(f.name, "").replace("%", "%%")
        if isinstance(f.default, bool):
            p.add_argument(flag, action="store_true", help=text)
        else:
            p.add_argument(flag, type=type(f.default), default=None, help=f"{text} (default: {f.default})")
    args = {k: v for k, v in vars(p.parse_args(argv)).items() if v is not None and v is not False}
    if args.get("resume"):
        saved = read_config(args["resume"], p.prog)
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


def read_config(out, script="checkpoint.py") -> dict:
    path = os.path.join(out, "config.json")
    if not os.path.isfile(path):
        fail(f"{script}: --resume {out}: no config.json there; is this a run folder of fd.py / grpo.py?")
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
        fail(f"--resume {out}: no state.pt there (the run stopped before its first save)")
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
