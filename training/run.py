"""A training run from its settings to its final model: what fd.py and grpo.py do besides their step.

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Sections 4-5 (held-out pass@1
over training) and Appendix A.1 (the schedule). Both trainers read the same settings, task sets, Lean and model,
keep the same run folder (checkpoint.py) and write the same metrics line; only their step differs.

    run = Run(cfg, "fd.py", RULES)            # every setting checked, processes joined, the run folder,
                                              # the training statements, the held-out set, Lean
    policy = run.load_policy(cfg.model)       # the model, last: the slow part
    policy = run.begin(policy, {"student": net, "teacher": teacher})   # --fsdp, optimizer, --resume or step 0
    for step, batch, generators in run.steps("FD"):
        row = ...                             # the algorithm's step, on this process's share of the statements
        run.end_step(step, row)               # metrics line, evaluations, saves, progress bar
    run.finish()                              # the curves, the held-out change paired task by task

A user's mistake is one line and exit status 2 before anything slow (cli.fail); anything else keeps its
traceback. Under torchrun every process runs all of it; rank 0 alone prints and writes.
"""
import math
import os
import re
from dataclasses import asdict

import torch
from tqdm.auto import tqdm

import lean_env
from fdlean import cli, intervals, lm, measure, parallel, prompting, report
from mini import tasks
from small_prover import sft
from training import checkpoint, shard, tracking

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
    ("prompt", lambda v: v == "auto" or v in prompting.STYLES, "auto or one of " + ", ".join(prompting.STYLES)),
    ("device", lambda v: v in ("", "cpu") or (re.fullmatch(r"cuda(:\d+)?", v) is not None and torch.cuda.is_available()),
     "empty (the GPU when there is one), cpu, or cuda / cuda:N on a machine with CUDA"
     + ("" if torch.cuda.is_available() else " (this one has none)")),
]


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
    def __init__(self, cfg, script: str, rules, model: tuple[str, str] | None = None):
        """Everything the user named and that loads fast, checked in order: the settings (RULES and the script's
        own `rules`), the run folder, the model's name (`model`: the option and its value, default --model), the
        training statements, the held-out set, Lean."""
        self.cfg, self.script = cfg, script
        cli.check(cfg, RULES + rules, script)
        parallel.init()   # under torchrun: this process's share of every step (fdlean/parallel.py)
        if cfg.prompts < parallel.size():
            cli.fail(f"{script}: --prompts {cfg.prompts}: must be at least the number of processes ({parallel.size()})")
        checkpoint.check_out(cfg, script)
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.option, self.model = model or ("--model", cfg.model)
        with cli.user_errors(f"{script}: {self.option} {self.model}", lm.ModelNotFound):
            lm.check_name(self.model)
        with cli.user_errors(f"{script}: --tasks {cfg.tasks}", OSError, ValueError):
            next(tasks.stream(cfg.tasks, cfg.seed))  # reads the spec or file now: a bad one fails here, not at step 1
        with cli.user_errors(f"{script}: --eval-tasks {cfg.eval_tasks}", OSError, ValueError):
            self.heldout = tasks.load(cfg.eval_tasks, limit=cfg.eval_limit)
        with cli.user_errors(f"{script}: --verifier {cfg.verifier}" + (f" --lean {cfg.lean}" if cfg.lean else ""),
                             ValueError, lean_env.LeanNotFound):
            self.env = lean_env.load(cfg.verifier, lean=cfg.lean)
        self.tracker = self.after = None

    def user_errors(self, what: str, *errors):
        """A set-up step the script adds (its feedback source): the listed errors are one line naming `what`."""
        return cli.user_errors(f"{self.script}: {what}", *errors)

    def load_policy(self, dtype=torch.float32):
        """The model (the preset is built on first use, small_prover/sft.py), in fp32 master weights: bf16 autocast on a GPU
        (lm.autocast), and gradient checkpointing there, trading compute for activation memory."""
        cfg = self.cfg
        with self.user_errors(f"{self.option} {self.model} --prompt {cfg.prompt}", lm.ModelNotFound,
                              prompting.PromptError):
            self.path = sft.resolve_model(self.model)
            policy = lm.load(self.path, device=parallel.device(cfg.device) or None, dtype=dtype, prompt=cfg.prompt,
                             thinking=cfg.thinking)
        problem = prompting.attempt_problem(policy.tokenizer, cfg.tools, cfg.turns)
        if problem:   # known once the tokenizer is loaded; nothing is written yet
            cli.fail(f"{self.script}: {problem}")
        if policy.device.type == "cuda":
            policy.model.gradient_checkpointing_enable()
        policy.model.train()
        return policy

    def begin(self, policy, nets: dict):
        """From the model to step 1. `nets`: the trained net first, then the frozen ones (FD's teacher, GRPO's
        reference), all saved in the training state. --fsdp shards them (shard.py) and a full copy of the trained
        net samples; then the optimizer, tracking, and either --resume's state or, for a new run, its settings and
        the starting model's held-out pass@1 (step 0). Returns the policy that samples (the copy, when sharded)."""
        cfg = self.cfg
        os.makedirs(cfg.out, exist_ok=True)
        parallel.barrier()   # every process has read the run folder before the first one writes to it
        trained = next(iter(nets.values()))
        if cfg.fsdp and parallel.size() > 1:   # shard the training state; an unsharded copy samples and evaluates
            sampler = shard.for_training(trained, *list(nets.values())[1:], dtype=lm.default_dtype(policy.device))
            policy = lm.Policy(sampler, policy.tokenizer, policy.device, policy.name)
        self.policy, self.nets, self.net = policy, nets, trained
        self.optimizer = torch.optim.AdamW(trained.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        # linear warmup over cfg.warmup steps, then a constant rate (Table 1)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           lambda s: min(1.0, (s + 1) / max(1, cfg.warmup)))
        if parallel.is_main():   # --wandb: rank 0 sends every metrics row and the plots (tracking.py)
            try:
                self.tracker = tracking.start(cfg.wandb, cfg.out, asdict(cfg), resume=bool(cfg.resume))
            except tracking.TrackingError as e:   # its message names --wandb PROJECT and what to do
                cli.fail(f"{self.script}: {e}")
        if cfg.resume:
            state = checkpoint.load_state(cfg.out, nets, self.optimizer, self.scheduler)
            self.start, extra = state["step"], state["extra"]
            self.skipped, self.before, self.before_tasks = extra["skipped"], extra["before"], extra.get("before_tasks")
            self.lemmas = set(extra.get("lemmas", ()))
            if parallel.is_main():   # --steps may have grown, --threads, --device and the locations changed
                checkpoint.write_config(cfg.out, asdict(cfg))
            parallel.say(f"resuming {cfg.out} after step {self.start} of {cfg.steps}, with the settings in "
                         f"{cfg.out}/config.json (a resume may change only --steps, --threads, --device)")
        else:
            if parallel.is_main():   # under torchrun rank 0 alone writes the run folder
                checkpoint.write_config(cfg.out, asdict(cfg))
            self.start, self.skipped, self.before_tasks, self.lemmas = 0, 0, self.evaluate(), set()
            self.before = sum(self.before_tasks) / len(self.before_tasks)
            if parallel.is_main():
                self.write({"step": 0, "heldout_pass1": self.before})
        if policy.model is not trained:   # sharded: the sampling copy takes the resumed weights
            shard.refresh(policy.model, trained)
        length = lambda t: len(prompting.encode(policy.tokenizer, t, tools=cfg.tools))
        self.statements = Statements(tasks.stream(cfg.tasks, cfg.seed), length, cfg.max_prompt,
                                     skip=self.start * cfg.prompts)  # statements already used
        parallel.say(memory_estimate(cfg, trained, frozen=list(nets)[1:]))
        return policy

    def evaluate(self) -> list[float]:
        """The policy's pass@1 per held-out task (fdlean/measure.py: the same random stream every time, so two
        evaluations differ by the model and pair task by task)."""
        cfg = self.cfg
        return measure.heldout(self.policy, self.env, self.heldout, cfg.eval_n, cfg.max_new_tokens, cfg.turns,
                               progress=True, tools=cfg.tools)   # a bar of its own while the training bar waits

    def steps(self, desc: str, attempts_per_statement: int = 1):
        """(step, this process's statements, one generator per attempt) for every step still to run. Every process
        draws the same statements and keeps its share; each attempt samples with its own generator (seed, step,
        index), so the attempts do not depend on the number of processes."""
        cfg = self.cfg
        self.bar = tqdm(range(self.start + 1, cfg.steps + 1), initial=self.start, total=cfg.steps, desc=desc,
                        disable=not parallel.is_main())
        for step in self.bar:
            batch = [next(self.statements) for _ in range(cfg.prompts)]
            mine = parallel.share(len(batch))   # all of them in one process
            k = attempts_per_statement
            generators = [torch.Generator(self.policy.device).manual_seed(parallel.statement_seed(cfg.seed, step, i * k + g))
                          for i in mine for g in range(k)]
            yield step, [batch[i] for i in mine], generators

    def end_step(self, step: int, row: dict, show=("loss", "train_acc", "entropy")):
        """After the optimizer step: the learning rate moves on; the step's line is written (with the run's counts:
        prompts skipped as too long, verifier failures, NaN steps skipped, distinct lemmas in correct proofs); the
        held-out set is evaluated every eval_every steps and at the end; the state is saved every save_every steps
        and at the end."""
        cfg = self.cfg
        lr = self.scheduler.get_last_lr()[0]  # the rate this step used
        self.scheduler.step()
        self.skipped += not math.isfinite(row["grad_norm"])
        self.lemmas.update(row.pop("lemmas", ()))
        row = {"step": step, **row, "long_prompts_skipped": self.statements.too_long,
               "verifier_errors": parallel.all_sum([getattr(self.env, "verifier_errors", 0)])[0],
               "lr": lr, "skipped_nonfinite": self.skipped, "distinct_lemmas": len(self.lemmas)}
        if step == cfg.steps or (cfg.eval_every and step % cfg.eval_every == 0):
            self.after_tasks = self.evaluate()
            row["heldout_pass1"] = self.after = sum(self.after_tasks) / len(self.after_tasks)
        if parallel.is_main():   # every process holds the same figures: rank 0 writes them
            self.write(row)
            self.bar.set_postfix({k: f"{row[k]:.3f}" for k in show})
        if step % cfg.save_every == 0 or step == cfg.steps:   # every process: a sharded state is gathered
            extra = {"skipped": self.skipped, "before": self.before, "before_tasks": self.before_tasks,
                     "lemmas": sorted(self.lemmas)}
            checkpoint.save(cfg, step, self.nets, self.optimizer, self.scheduler, extra, self.policy)

    def write(self, row: dict):
        checkpoint.append_metrics(self.cfg.out, row)
        if self.tracker:
            self.tracker.log(row, row["step"])

    def finish(self, then: str = "") -> dict | None:
        """The run's curves (OUT/curves.png, rank 0), then the held-out change paired task by task with its standard
        error, and `then` (what to run next). Returns {"before", "after", "before_tasks", "after_tasks"}, or None
        when the run had already reached its steps."""
        cfg = self.cfg
        parallel.barrier()   # the last save is on disk before any process moves on
        if parallel.is_main() and self.start < cfg.steps:
            report.plot_curves([cfg.out], os.path.join(cfg.out, "curves.png"))
        if self.tracker:
            self.tracker.images({"curves": os.path.join(cfg.out, "curves.png")}, step=cfg.steps)
            self.tracker.finish()
        if self.start >= cfg.steps:
            parallel.say(f"nothing to do: {cfg.out} already has {self.start} of {cfg.steps} steps")
            return None
        if self.before_tasks:
            parallel.say(intervals.change_report(self.heldout, self.before_tasks, self.after_tasks, cfg.eval_n,
                                                 cfg.turns))
            parallel.say(f"model in {cfg.out}/final" + (f". {then}" if then else ""))
        return {"before": self.before, "after": self.after, "before_tasks": self.before_tasks,
                "after_tasks": self.after_tasks}


def memory_estimate(cfg, net, frozen=("teacher",)) -> str:
    """What one process holds, in GB, before the first step: fp32 weights, gradients and AdamW's two moments for the
    trained net, an fp32 copy for each `frozen` net (FD's EMA teacher, GRPO's reference; with --fsdp a 1/N share of
    each, and a bf16 copy that samples), and the activations of one micro-batch (bf16 autocast, gradient
    checkpointing: each layer's input kept, one layer's work recomputed at a time, plus a chunk of logits)."""
    c = net.config
    P = sum(p.numel() for p in net.parameters())
    H, L, V = c.hidden_size, c.num_hidden_layers, c.vocab_size
    ffn = getattr(c, "intermediate_size", 4 * H)
    rows = (cfg.micro_batch or -(-cfg.prompts // parallel.size()))
    T = (cfg.max_prompt or 1024) + cfg.max_new_tokens * cfg.turns
    gb = lambda b: b / 1e9
    n = parallel.size() if cfg.fsdp else 1   # --fsdp: each process holds 1/n of the training state, plus the copy
    parts = dict(weights=4 * P / n, gradients=4 * P / n, adamw=8 * P / n, **{name: 4 * P / n for name in frozen},
                 sampling_copy=2 * P if n > 1 else 0,
                 activations=rows * T * (2 * H * L + 2 * (8 * H + 3 * ffn)) + 3 * 4 * cfg.chunk_size * V)
    shown = ", ".join(f"{k} {gb(v):.3g}" for k, v in parts.items())
    return (f"memory per process (estimate, GB): {shown}; total {gb(sum(parts.values())):.3g} "
            f"({P / 1e6:.1f}M parameters, micro-batch {rows} x {T} tokens)")
