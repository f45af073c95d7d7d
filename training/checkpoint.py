"""Nothing lost: the run folder, written so that a killed run resumes exactly where it stopped, and
the bookkeeping of a training loop (progress bar, held-out evaluations, metrics, saves).

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
"""
import json
import math
import os
import random
import time
from dataclasses import asdict

import torch
from tqdm.auto import tqdm

from fdlean import cli, parallel, report
from training import shard, tracking

# Settings fd.py and grpo.py share: (field, test, what the value must be). Each script adds its own.
RULES = [
    ("steps", lambda v: v >= 1, "at least 1"),
    ("prompts", lambda v: v >= 1, "at least 1"),
    ("lr", lambda v: v > 0, "above 0"),
    ("weight_decay", lambda v: v >= 0, "0 or more"),
    ("grad_clip", lambda v: v > 0, "above 0"),
    ("warmup", lambda v: v >= 0, "0 or more"),
    ("eval_limit", lambda v: v >= 0, "0 or more (0: every task)"),
    ("eval_n", lambda v: v >= 1, "at least 1"),
    ("eval_every", lambda v: v >= 0, "0 or more (0: only before and after)"),
    ("temperature", lambda v: v == 1, "1: both losses score the attempt with the policy's own logits, so an attempt "
                                      "drawn at another temperature would come from a distribution neither trains"),
    ("max_prompt", lambda v: v >= 0, "0 or more (0: no limit)"),
    ("top_p", lambda v: 0 < v <= 1, "above 0 and at most 1"),
    ("max_new_tokens", lambda v: v >= 1, "at least 1"),
    ("turns", lambda v: v >= 1, "at least 1 (1: one-shot attempts)"),
    ("chunk_size", lambda v: v >= 1, "at least 1"),
    ("save_every", lambda v: v >= 1, "at least 1"),
    ("threads", lambda v: v >= 1, "at least 1"),
]


def check_out(cfg, script: str):
    """A run folder holds one run. A new run never writes into a folder that holds one (it would
    mix its metric lines into the old ones and replace its config and models); --resume needs the
    saved state. An empty or missing folder is a new run's."""
    out = cfg.resume or cfg.out
    found = [f for f in ("config.json", "metrics.jsonl", "state.pt") if os.path.exists(os.path.join(out, f))]
    saved = "state.pt" in found
    if cfg.resume and not saved:
        cli.fail(f"{script}: --resume {out}: no state.pt there (the run stopped before its first save, or this is "
                 f"not a run folder): start again with a new --out, or delete {out}")
    if cfg.resume or not found:
        return
    if saved:
        cli.fail(f"{script}: --out {out} already holds a run ({', '.join(found)}): continue it with "
                 f"`--resume {out}` (and --steps N to extend it), or choose a new --out")
    cli.fail(f"{script}: --out {out} holds a run that never saved its state ({', '.join(found)}): "
             f"delete {out} (rm -r {out}) or choose a new --out")


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
    state = torch.load(path, map_location="cpu", weights_only=False)
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


# ----------------------------------------------------------------------------- the loop's bookkeeping

def optimizer(cfg, net):
    """AdamW, linear warmup over cfg.warmup steps, then a constant rate (both trainers)."""
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup)))


def update(optimizer, net, grad_clip: float, loss: float) -> float:
    """After backward: clip the gradient and step. Returns the gradient norm. Never steps on a NaN or
    inf (loss or gradient): the weights stay as they were and the norm is reported as NaN."""
    norm = torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)   # sharded: a DTensor
    if math.isfinite(loss) and math.isfinite(grad_norm):
        optimizer.step()
    else:
        grad_norm = float("nan")
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


class Stopwatch:
    """Seconds per stage of a step for the metrics line: lap("sample") when the sampling is done. A stage
    lapped again (every turn of a multi-turn attempt samples) adds up."""

    def __init__(self):
        self.times, self.clock = {}, time.perf_counter()

    def lap(self, name: str):
        now = time.perf_counter()
        key = f"time_{name}"
        self.times[key] = round(self.times.get(key, 0.0) + now - self.clock, 4)
        self.clock = now


class Statements:
    """The training statements in order, without those whose prompt is longer than max_prompt tokens (Table 1's
    maximum prompt length; 0: no limit): those are passed over and counted in .too_long. `skip` statements that
    fit are passed first (a resumed run's), so the count is the same after a resume."""

    def __init__(self, stream, length, max_prompt: int, skip: int = 0):
        self.stream, self.length, self.max_prompt, self.too_long = stream, length, max_prompt, 0
        for _ in range(skip):
            next(self)

    def __iter__(self):
        return self

    def __next__(self):
        in_a_row = 0
        for task in self.stream:
            if not self.max_prompt or self.length(task) <= self.max_prompt:
                return task
            self.too_long, in_a_row = self.too_long + 1, in_a_row + 1
            if in_a_row == 10_000:
                cli.fail(f"--max-prompt {self.max_prompt}: 10000 statements in a row have a longer prompt "
                         f"(the last: {self.length(task)} tokens)")
        raise StopIteration


class Run:
    """What a training loop does besides training. It starts the run folder (settings, held-out pass@1
    of the starting model as step 0) or restores it (--resume); then, per finished step, it writes the
    metrics line, evaluates every eval_every steps and at the end, saves every save_every steps and at
    the end, and keeps the progress bar. `heldout()` returns the policy's pass@1 per held-out task."""

    def __init__(self, cfg, nets: dict, optimizer, scheduler, policy, heldout):
        self.cfg, self.nets, self.optimizer, self.scheduler = cfg, nets, optimizer, scheduler
        self.policy, self.heldout, self.after = policy, heldout, None
        self.tracker = None   # --wandb: rank 0 sends every metrics row and the plots (tracking.py)
        if parallel.is_main():
            with cli.user_errors("--wandb", tracking.TrackingError):
                self.tracker = tracking.start(cfg.wandb, cfg.out, asdict(cfg), resume=bool(cfg.resume))
        if cfg.resume:
            state = load_state(cfg.out, nets, optimizer, scheduler)
            self.start, extra = state["step"], state["extra"]
            self.skipped, self.before, self.before_tasks = extra["skipped"], extra["before"], extra.get("before_tasks")
            self.lemmas = set(extra.get("lemmas", ()))
        else:
            if parallel.is_main():   # under torchrun rank 0 alone writes the run folder
                write_config(cfg.out, asdict(cfg))
            self.start, self.skipped, self.before_tasks, self.lemmas = 0, 0, heldout(), set()
            self.before = sum(self.before_tasks) / len(self.before_tasks)
            if parallel.is_main():
                self.write({"step": 0, "heldout_pass1": self.before})

    def steps(self, desc: str):
        self.bar = tqdm(range(self.start + 1, self.cfg.steps + 1), initial=self.start, total=self.cfg.steps, desc=desc,
                        disable=not parallel.is_main())
        return self.bar

    def end_step(self, step: int, row: dict, show=("loss", "train_acc", "entropy"), lemmas=()):
        """After the optimizer step: the learning rate moves on, the step's line is written. `lemmas`: those in
        the step's correct proofs (measure.identifiers), counted as distinct over the run (Figures 3-4)."""
        cfg = self.cfg
        lr = self.scheduler.get_last_lr()[0]  # the rate this step used
        self.scheduler.step()
        self.skipped += not math.isfinite(row["grad_norm"])
        self.lemmas.update(lemmas)
        row = {"step": step, **row, "lr": lr, "skipped_nonfinite": self.skipped, "distinct_lemmas": len(self.lemmas)}
        if step == cfg.steps or (cfg.eval_every and step % cfg.eval_every == 0):
            self.after_tasks = self.heldout()
            row["heldout_pass1"] = self.after = sum(self.after_tasks) / len(self.after_tasks)
        if parallel.is_main():   # every process holds the same figures: rank 0 writes them
            self.write(row)
            self.bar.set_postfix({k: f"{row[k]:.3f}" for k in show})
        if step % cfg.save_every == 0 or step == cfg.steps:   # every process: a sharded state is gathered
            extra = {"skipped": self.skipped, "before": self.before, "before_tasks": self.before_tasks,
                     "lemmas": sorted(self.lemmas)}
            save(cfg, step, self.nets, self.optimizer, self.scheduler, extra, self.policy)

    def write(self, row: dict):
        append_metrics(self.cfg.out, row)
        if self.tracker:
            self.tracker.log(row, row["step"])

    def finish(self):
        """{"before", "after": held-out pass@1, "before_tasks", "after_tasks": per task}, or None when
        the run had already reached its steps. Rank 0 plots the run's curves (OUT/curves.png)."""
        parallel.barrier()   # the last save is on disk before any process moves on
        if parallel.is_main() and self.start < self.cfg.steps:
            report.plot_curves([self.cfg.out], os.path.join(self.cfg.out, "curves.png"))
        if self.tracker:
            self.tracker.images({"curves": os.path.join(self.cfg.out, "curves.png")}, step=self.cfg.steps)
            self.tracker.finish()
        if self.start >= self.cfg.steps:
            parallel.say(f"nothing to do: {self.cfg.out} already has {self.start} of {self.cfg.steps} steps")
            return None
        return {"before": self.before, "after": self.after, "before_tasks": self.before_tasks,
                "after_tasks": self.after_tasks}
