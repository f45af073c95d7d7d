"""Feedback Distillation (FD): the student learns to match, token by token, its own distribution
when shown privileged feedback on its attempt. Paper: Narozniak et al., "Distilling LLM Feedback
for Lean Theorem Proving", arXiv 2605.30861, Section 3 and Appendix B.

    python fd.py --model small-prover                   # the mini world on a laptop CPU, a few minutes
    python fd.py --model small-prover --steps 200 --out runs/fd_200 --feedback tutor
    python fd.py --feedback none --out runs/fd_none     # the control: the teacher sees no feedback
    python fd.py --resume runs/fd                        # continue a killed run exactly
    python fd.py --model Qwen/Qwen3-8B --paper --feedback anthropic:MODEL ...   # a GPU, see README

One step (`fd_step`): statements x -> the student makes ONE attempt y each -> Lean checks y ->
feedback F(y) -> the teacher pi_mu(. | x, F(y), y_<t) keeps its top-K tokens at every attempt
position -> the student pi_theta(. | x, y_<t) is trained toward them on the same tokens -> optimizer
step; every `ema_every` steps the teacher's weights move toward the student's:
mu <- alpha * mu + (1 - alpha) * theta. grpo.py has the same shape: `diff fd.py grpo.py`.
"""
import copy
import math
import os
from dataclasses import dataclass

import torch

import feedback
import lean_env
from fd_loss import CHUNK_SIZE, TOPK, fused_full_kl, fused_loss, teacher_topk
from fdlean import cli, intervals, lm, measure, parallel, prompting, turns
from mini import tasks
from small_prover import sft
from training import checkpoint, shard


@dataclass
class Config:
    model: str = "small-prover"   # "small-prover" (built by sft.py on first use), a local folder
                                  # (e.g. OUT/final) or an HF id
    out: str = "runs/fd"          # the run folder: settings, metrics, checkpoints (one run per folder)
    tasks: str = "mini:1"         # training statements: mini (every level), mini:LEVELS (e.g. mini:1,2)
                                  # or jsonl:PATH. Level 1 by default: the small teacher's advice on the
                                  # longer level 2-3 attempts harms (README, Results)
    eval_tasks: str = "mini:test" # held-out set for pass@1 (mini:test or jsonl:PATH)
    eval_limit: int = 0           # held-out tasks per evaluation: the first N (0: all; mini:test interleaves levels)
    eval_n: int = 8               # samples per held-out task: the before/after change is then resolved to about
                                  # a point (its paired standard error is printed)
    eval_every: int = 50          # steps between held-out evaluations (0: only before and after)
    steps: int = 100              # optimizer steps
    prompts: int = 32             # statements per step, ONE attempt each (paper: 128)
    lr: float = 1e-4              # AdamW (paper: 1e-5 for a 9B model)
    weight_decay: float = 0.0     # AdamW's decoupled weight decay
    grad_clip: float = 1.0        # the gradient's global norm is clipped to this
    warmup: int = 5               # linear warmup steps, then constant (paper: 50)
    temperature: float = 1.0      # student sampling (the paper does not say; 1.0 is on-policy)
    top_p: float = 1.0            # nucleus sampling mass (1.0: off)
    max_new_tokens: int = 64      # token budget per candidate (paper: 8192 for a whole attempt)
    max_prompt: int = 0           # longer student prompts (tokens) are skipped and counted (0: no limit; paper: 2048)
    prompt: str = "auto"          # prompt style: auto (by the model's name) | chat | kimina | deepseek | completion
                                  # | plain (prompting.STYLES: a prover family's own documented prompt)
    thinking: bool = True         # Qwen3's enable_thinking for every chat prompt (--no-thinking: off)
    turns: int = 1                # candidates per attempt: after a rejected one the student reads Lean's
                                  # message and writes again (turns.py); the answer is the last one
    fsdp: bool = False            # under torchrun: shard student and teacher over the processes (FSDP2, shard.py);
                                  # a full copy samples. For models whose training state does not fit one GPU
    micro_batch: int = 0          # attempts per teacher/student forward and backward (0: all of a process's at once);
                                  # the gradient is the whole step's either way
    chunk_size: int = CHUNK_SIZE  # attempt positions whose logits exist at once in the loss
    feedback: str = "ground-truth"  # F(y): ground-truth | tutor | lean | self | constant:TEXT | none
                                  # | openai:MODEL | anthropic:MODEL (README: which teaches the small prover best)
    feedback_prompt: int = 4      # the critique instructions of LLM/self critics (Appendix B's ablation): 1 bare,
                                  # 2 + numbered items, 3 + self-contained Do/Don't orders, 4 the final prompt
    topk: int = TOPK              # K; 0 = full-vocabulary forward KL
    renorm: bool = False          # renormalise the teacher's top-K probabilities
    tail: bool = False            # add the tail bucket: the teacher's mass outside the top K
    alpha: float = 0.9            # EMA coefficient of the teacher
    ema_every: int = 5            # optimizer steps between EMA updates
    base_url: str = ""            # for openai:/anthropic: feedback (e.g. a local vLLM server)
    save_every: int = 50          # HF checkpoint + training state every N steps (and at the end)
    seed: int = 0                 # seeds the statements drawn, the sampling and torch
    threads: int = 2              # torch CPU threads (Lean runs between, not beside, torch work)
    device: str = ""              # "" = cuda if available, else cpu
    verifier: str = "mini"        # mini | repl:PROJECT | lake:PROJECT | kimina:URL (Mathlib: lean_mathlib.py)
    lean: str = ""                # mini world: a `lean` executable ("" = LEAN env, PATH, then embedded)
    paper: bool = False           # use the paper's settings (PAPER below; explicit flags win)
    wandb: str = ""               # a Weights & Biases project to watch the run live ("": off; tracking.py)
    resume: str = ""              # continue the run in this folder exactly where it stopped


# The paper's values (Section 4 / Appendix B) for a 9B model on 8 GPUs: `--paper`.
PAPER = dict(max_prompt=2048, prompts=128, lr=1e-5, topk=25, alpha=0.9, ema_every=5, warmup=50, max_new_tokens=8192)


# ----------------------------------------------------------------------------------------------
# 1. The EMA teacher (Section 3): the same network, its weights an average of the student's
# ----------------------------------------------------------------------------------------------
def make_teacher(student):
    """pi_mu starts as the same network as pi_theta; it is never trained, only averaged."""
    teacher = copy.deepcopy(student).eval()
    teacher.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher, student, alpha):
    """mu <- alpha * mu + (1 - alpha) * theta (Section 3). alpha = 1: a frozen teacher (stable,
    slow); alpha = 0: a copy of the student (fast, then unstable). Tied weights are one parameter."""
    for mu, theta in zip(teacher.parameters(), student.parameters()):
        mu.lerp_(theta.detach(), 1.0 - alpha)


# ----------------------------------------------------------------------------------------------
# 2. One FD step
# ----------------------------------------------------------------------------------------------
def fd_step(cfg: Config, policy, teacher, env, source, optimizer, batch, generators, student=None) -> dict:
    """One FD step on this process's statements x (all of them in one process; a share under torchrun:
    parallel.py), the optimizer step included. `generators`: one per statement, for its attempt. `student`:
    the net trained, policy.model unless it is sharded (--fsdp: policy.model is then the copy that samples).
    Returns the figures of the metrics line, over every process's attempts."""
    tok, clock = policy.tokenizer, checkpoint.Stopwatch()
    student = student if student is not None else policy.model
    # 1. The student makes ONE attempt y ~ pi_theta(. | x) per statement (on-policy, no grad): up to
    #    `turns` candidates, each rejected one followed by Lean's message (turns.py; 1 = one shot).
    # 2. Lean checks every candidate; its verdict on the last (the answer) is the train accuracy.
    prompts = [prompting.encode(tok, t, turns=cfg.turns) for t in batch]
    attempts = turns.rollout(policy, env, batch, prompts, cfg.turns, cfg.max_new_tokens, cfg.temperature,
                             cfg.top_p, generators, clock)
    # 3. F(y): one feedback text per attempt, on its answer and Lean's verdict on it (a critic reads the
    #    whole attempt: Attempt.transcript), framed for the teacher's prompt by feedback.py.
    failures = source.stats["failures"]
    texts = source.batch([(t, a, a.result) for t, a in zip(batch, attempts)])
    teacher_prompts = [prompting.encode(tok, t, f, cfg.turns) for t, f in zip(batch, texts)]
    clock.lap("feedback")
    # 4-5 run on micro-batches of attempts (all at once by default). The step's loss is the mean over the
    # attempt tokens of every process: a micro-batch's mean is weighted by its share of that count, so
    # the gradients add up to the step's (tests: micro-batches and 2 processes equal one batch).
    total = parallel.all_sum([sum(a.n_sampled for a in attempts)])[0]
    sums = dict(loss=0.0, kl=0.0, entropy=0.0)
    size = cfg.micro_batch or len(batch)
    parts = [range(lo, min(lo + size, len(batch))) for lo in range(0, len(batch), size)]
    own = len(parts)
    for j, part in enumerate(shard.in_step(parts, student)):   # sharded: as many on every process
        ids = [attempts[i].ids for i in part]
        with lm.autocast(policy.device):
            # 4. The teacher pi_mu(. | x, F(y), y_<t) re-scores the student's own tokens: its top K per token.
            with torch.no_grad():
                t_hidden, _, mask = lm.attempt_hidden(teacher, [teacher_prompts[i] for i in part], ids,
                                                         tok.pad_token_id)
                mask &= turns.trained_mask([attempts[i] for i in part], mask)  # Lean's messages: never trained on
                if cfg.topk:
                    top_ids, top_logprobs = teacher_topk(t_hidden, lm.head_weight(teacher), cfg.topk,
                                                         cfg.chunk_size, mask=mask)
            clock.lap("teacher")
            # 5. The student pi_theta(. | x, y_<t) on the same tokens, in its own context (no feedback):
            #      L = mean over attempt tokens t of  - sum_{a in TopK_t} pi_mu(a | x, F(y), y_<t) log pi_theta(a | x, y_<t)
            #    computed chunk by chunk inside the lm head, so the (tokens x vocabulary) logits never exist:
            #    the same value and gradient as fd_loss.reference_loss on full logits (tests/test_fd_loss.py).
            s_hidden, targets, _ = lm.attempt_hidden(student, [prompts[i] for i in part], ids, tok.pad_token_id)
            weight = lm.head_weight(student)
            if cfg.topk:
                loss, kl = fused_loss(s_hidden, weight, top_ids, top_logprobs, mask, cfg.chunk_size,
                                      renorm=cfg.renorm, tail=cfg.tail, return_kl=True)
            else:
                loss, kl = fused_full_kl(s_hidden, weight, t_hidden, lm.head_weight(teacher), mask,
                                         cfg.chunk_size, return_kl=True)
            entropy = lm.mean_entropy(s_hidden, weight, targets, mask, cfg.chunk_size)  # of its own attempt
        n = mask.sum().item() if j < own else 0   # a repeated part only keeps the collectives in step
        (loss * (n / total)).backward()
        shard.release(teacher)
        for key, value in (("loss", loss.item()), ("kl", float(kl)), ("entropy", entropy)):
            sums[key] += value * n
        clock.lap("student")
    # 6. The gradients summed over processes, then one optimizer step (none on a NaN or inf: checkpoint.update).
    shard.sum_grads(student)
    row = dict(zip(sums, (v / total for v in parallel.all_sum(sums.values()))))
    grad_norm = checkpoint.update(optimizer, student, cfg.grad_clip, row["loss"])
    if student is not policy.model:
        shard.refresh(policy.model, student)   # the sampling copy takes the new weights
    clock.lap("update")
    return dict(
        **row,
        **parallel.means(  # each a mean over every process's attempts
            train_acc=[a.result.ok for a in attempts],
            attempt_len=[a.n_sampled for a in attempts],  # the policy's tokens, every turn
            truncated=[a.truncated for a in attempts],
            turns=[a.turns for a in attempts],
            first_turn_acc=[a.results[0].ok for a in attempts],
            feedback_len=[len(t) - len(p) for t, p in zip(teacher_prompts, prompts)],
            epistemic_words=[measure.epistemic_words(tok.decode(a.sampled_ids)) for a in attempts]),
        feedback_failures=parallel.all_sum([source.stats["failures"] - failures])[0],
        lemmas=set().union(*parallel.gather([measure.identifiers(t, a.answer)
                                             for t, a in zip(batch, attempts) if a.result.ok])),
        grad_norm=grad_norm,
        **clock.times,
    )


# ----------------------------------------------------------------------------------------------
# 3. The training loop
# ----------------------------------------------------------------------------------------------
RULES = checkpoint.RULES + [  # checked before anything slow starts; checkpoint.RULES: those grpo.py shares
    ("prompt", lambda v: v == "auto" or v in prompting.STYLES, "auto or one of " + ", ".join(prompting.STYLES)),
    ("topk", lambda v: v >= 0, "0 or more (0: the full-vocabulary KL)"),
    ("alpha", lambda v: 0 <= v <= 1, "between 0 and 1"),
    ("ema_every", lambda v: v >= 1, "at least 1"),
    ("micro_batch", lambda v: v >= 0, "0 or more (0: all of a process's attempts at once)"),
    ("feedback_prompt", lambda v: v in (1, 2, 3, 4), "1, 2, 3 or 4"),
]


def setup(cfg: Config):
    """Everything the user named, checked and loaded before the first step: the settings, the run
    folder, the task files, the verifier, the feedback source, the model (last: the slow one). A
    user's mistake is one line and exit status 2 (cli.fail); anything else keeps its traceback."""
    cli.check(cfg, RULES, "fd.py")
    parallel.init()   # under torchrun: this process's share of every step (parallel.py)
    if cfg.prompts < parallel.size():
        cli.fail(f"fd.py: --prompts {cfg.prompts}: must be at least the number of processes ({parallel.size()})")
    checkpoint.check_out(cfg, "fd.py")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    with cli.user_errors(f"fd.py: --model {cfg.model}", lm.ModelNotFound):
        lm.check_name(cfg.model)
    with cli.user_errors(f"fd.py: --tasks {cfg.tasks}", OSError, ValueError):
        next(tasks.stream(cfg.tasks, cfg.seed))  # reads the spec or file now: a bad one fails here, not at step 1
    with cli.user_errors(f"fd.py: --eval-tasks {cfg.eval_tasks}", OSError, ValueError):
        heldout = tasks.load(cfg.eval_tasks, limit=cfg.eval_limit)
    with cli.user_errors(f"fd.py: --verifier {cfg.verifier}" + (f" --lean {cfg.lean}" if cfg.lean else ""),
                         ValueError, lean_env.LeanNotFound):
        env = lean_env.load(cfg.verifier, lean=cfg.lean)
    self_fd = cfg.feedback.split(":")[0] == "self"  # Self-FD's critic is the model itself: loaded below
    options = dict(base_url=cfg.base_url or None, cache_dir=os.path.join(cfg.out, "feedback_cache"),
                   prompt=cfg.feedback_prompt)
    with cli.user_errors(f"fd.py: --feedback {cfg.feedback}", ValueError, feedback.FeedbackError):
        source = None if self_fd else feedback.load(cfg.feedback, **options)
    # fp32 master weights for student and teacher, bf16 autocast on a GPU (lm.autocast)
    with cli.user_errors(f"fd.py: --model {cfg.model} --prompt {cfg.prompt}", lm.ModelNotFound, prompting.PromptError):
        policy = lm.load(sft.resolve_model(cfg.model), device=parallel.device(cfg.device) or None, dtype=torch.float32,
                            prompt=cfg.prompt, thinking=cfg.thinking)
    if self_fd:  # the critic writes within the policy's own attempt budget (not an API critic's 512 tokens)
        source = feedback.load(cfg.feedback, policy=policy, max_tokens=cfg.max_new_tokens, **options)
    if policy.device.type == "cuda":  # a real prover: trade compute for activation memory
        policy.model.gradient_checkpointing_enable()
    policy.model.train()
    os.makedirs(cfg.out, exist_ok=True)
    parallel.barrier()   # every process has read the run folder before the first one writes to it
    return policy, env, source, heldout


def memory_estimate(cfg: Config, net) -> str:
    """What one process holds, in GB, before the first step: fp32 weights, gradients and AdamW's two moments
    for the student, the fp32 EMA teacher (with --fsdp a 1/N share of each, and a bf16 copy that samples),
    and the activations of one micro-batch (bf16 autocast, gradient checkpointing: each layer's input kept,
    one layer's work recomputed at a time, plus a chunk of logits)."""
    c = net.config
    P = sum(p.numel() for p in net.parameters())
    H, L, V = c.hidden_size, c.num_hidden_layers, c.vocab_size
    ffn = getattr(c, "intermediate_size", 4 * H)
    rows = (cfg.micro_batch or -(-cfg.prompts // parallel.size()))
    T = (cfg.max_prompt or 1024) + cfg.max_new_tokens * cfg.turns
    gb = lambda b: b / 1e9
    n = parallel.size() if cfg.fsdp else 1   # --fsdp: each process holds 1/n of the training state, plus the copy
    parts = dict(weights=4 * P / n, gradients=4 * P / n, adamw=8 * P / n, teacher=4 * P / n,
                 sampling_copy=2 * P if n > 1 else 0,
                 activations=rows * T * (2 * H * L + 2 * (8 * H + 3 * ffn)) + 3 * 4 * cfg.chunk_size * V)
    shown = ", ".join(f"{k} {gb(v):.3g}" for k, v in parts.items())
    return (f"memory per process (estimate, GB): {shown}; total {gb(sum(parts.values())):.3g} "
            f"({P / 1e6:.1f}M parameters, micro-batch {rows} x {T} tokens)")


def train(cfg: Config):
    """The FD loop: sample -> Lean -> feedback -> teacher top-K -> student loss -> step -> EMA."""
    policy, env, source, heldout = setup(cfg)
    student = policy.model
    teacher = make_teacher(student)
    if cfg.fsdp and parallel.size() > 1:   # shard the training state; an unsharded copy samples and evaluates
        sampler = shard.for_training(student, teacher, dtype=lm.default_dtype(policy.device))
        policy = lm.Policy(sampler, policy.tokenizer, policy.device, policy.name)
    optimizer, scheduler = checkpoint.optimizer(cfg, student)
    nets = {"student": student, "teacher": teacher}
    evaluate_heldout = lambda: measure.heldout(policy, env, heldout, cfg.eval_n, cfg.max_new_tokens, cfg.turns)
    # a new run writes its settings and evaluates the starting model (step 0); --resume restores the state
    run = checkpoint.Run(cfg, nets, optimizer, scheduler, policy, evaluate_heldout)
    if policy.model is not student:   # sharded: the sampling copy takes the resumed weights
        shard.refresh(policy.model, student)
    length = lambda t: len(prompting.encode(policy.tokenizer, t, turns=cfg.turns))
    stream = checkpoint.Statements(tasks.stream(cfg.tasks, cfg.seed), length, cfg.max_prompt,
                                   skip=run.start * cfg.prompts)  # statements already used
    parallel.say(memory_estimate(cfg, student))
    parallel.say(f"FD: {policy.name} on {policy.device}, feedback {cfg.feedback}, {cfg.prompts} prompts/step, "
          f"held-out pass@1 before: {run.before:.3f} ({len(heldout)} tasks x {cfg.eval_n} samples)")
    for step in run.steps("FD"):
        batch = [next(stream) for _ in range(cfg.prompts)]
        mine = parallel.share(len(batch))   # all of them in one process
        generators = [torch.Generator(policy.device).manual_seed(parallel.statement_seed(cfg.seed, step, i))
                      for i in mine]
        # a critic that failed whole batches several steps in a row stops the run (not a silent Lean-FD run);
        # --resume continues from the last save
        with cli.user_errors(f"fd.py: --feedback {cfg.feedback} (step {step}; --resume {cfg.out} continues "
                             "from the last save)", feedback.FeedbackError):
            row = fd_step(cfg, policy, teacher, env, source, optimizer, [batch[i] for i in mine], generators, student)
        row.update(long_prompts_skipped=stream.too_long,
                   verifier_errors=parallel.all_sum([getattr(env, "verifier_errors", 0)])[0])
        if step % cfg.ema_every == 0 and math.isfinite(row["grad_norm"]):
            ema_update(teacher, student, cfg.alpha)
        run.end_step(step, row, lemmas=row.pop("lemmas"))
    result = run.finish()
    if result and result["before_tasks"]:
        parallel.say(intervals.change_report(heldout, result["before_tasks"], result["after_tasks"], cfg.eval_n))
        parallel.say(f"model in {cfg.out}/final. Is the change the feedback's doing? The control, the same run with a "
              f"teacher that sees no feedback:\n  {cli.command(cfg, 'fd.py', feedback='none', out=cfg.out + '_control')}")
    return result


def parse_args(argv=None) -> Config:
    return cli.parse(Config, argv, prog="fd.py", description="Feedback Distillation (arXiv 2605.30861, Section 3)",
                     paper=PAPER, read_run=lambda out: checkpoint.read_config(out, "fd.py"))


if __name__ == "__main__":
    train(parse_args())
