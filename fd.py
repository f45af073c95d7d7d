"""Feedback Distillation (FD): the student learns to match, token by token, its own distribution
when shown privileged feedback on its attempt. Paper: Narozniak et al., "Distilling LLM Feedback
for Lean Theorem Proving", arXiv 2605.30861, Section 3 and Appendix B.

    python fd.py --model small-prover                   # the mini world on a laptop CPU, a few minutes
    python fd.py --model small-prover --steps 200 --out runs/fd_200 --feedback tutor
    python fd.py --resume runs/fd                        # continue a killed run exactly
    python fd.py --model Qwen/Qwen3-8B --paper --feedback anthropic:MODEL ...   # a GPU, see README

One step, top to bottom in `distill_step`: statements x -> the student samples ONE attempt y each
-> Lean checks y -> feedback F(y) -> the teacher pi_mu(. | x, F(y), y_<t) keeps its top-K tokens
at every attempt position -> the student pi_theta(. | x, y_<t) is trained on the same tokens
with the loss of fd_loss.py -> optimizer step -> every `ema_every` steps the teacher's weights
move toward the student's: mu <- alpha * mu + (1 - alpha) * theta.
"""
import copy
import math
import os
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

import checkpoint
import evaluate
import feedback
import lean_env
import model
import tasks
from fd_loss import CHUNK_SIZE, TOPK, fused_full_kl, fused_loss, reference_loss, teacher_topk  # noqa: F401


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
# 2. The training loop
# ----------------------------------------------------------------------------------------------

@dataclass
class Config:
    model: str = "small-prover"   # "small-prover", a local folder (e.g. OUT/final) or an HF id
    out: str = "runs/fd"
    feedback: str = "ground-truth"  # F(y): ground-truth | tutor | lean | self | constant:TEXT | none | openai:M | anthropic:M
                                  # (ground-truth: the small prover's best teacher, 47% vs 19% alone; tutor: 31%)
    tasks: str = "mini:1"         # training statements: mini (every level), mini:LEVELS (e.g. mini:1,2)
                                  # or jsonl:PATH. Level 1 by default: the small teacher's advice off
                                  # the reference path (longer level 2-3 attempts) harms (README, Results)
    eval_tasks: str = "mini:test" # held-out set for pass@1 (mini:test or jsonl:PATH)
    eval_limit: int = 300         # held-out tasks per evaluation: the first N (mini:test interleaves levels)
    eval_every: int = 50          # steps between held-out evaluations (0: only before and after)
    steps: int = 100
    prompts: int = 32             # statements per step, ONE attempt each (paper: 128)
    lr: float = 1e-4              # AdamW (paper: 1e-5 for a 9B model)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    warmup: int = 5               # linear warmup steps, then constant (paper: 50)
    topk: int = TOPK              # K; 0 = full-vocabulary forward KL
    renorm: bool = False          # renormalise the teacher's top-K probabilities
    tail: bool = False            # add the tail bucket
    alpha: float = 0.9            # EMA coefficient of the teacher
    ema_every: int = 5            # optimizer steps between EMA updates
    temperature: float = 1.0      # student sampling (the paper does not say; 1.0 is on-policy)
    top_p: float = 1.0
    max_new_tokens: int = 64      # attempt budget (paper: 8192)
    chunk_size: int = CHUNK_SIZE
    save_every: int = 50          # HF checkpoint + training state every N steps (and at the end)
    seed: int = 0
    threads: int = 2              # torch CPU threads (Lean runs between, not beside, torch work)
    device: str = ""              # "" = cuda if available, else cpu
    verifier: str = "mini"        # mini | repl:PROJECT | lake:PROJECT | kimina:URL (Mathlib: lean_mathlib.py)
    lean: str = ""                # mini world: a `lean` executable ("" = LEAN env, PATH, then embedded)
    base_url: str = ""            # for openai:/anthropic: feedback (e.g. a local vLLM server)
    paper: bool = False           # use the paper's settings (table in the README)
    resume: str = ""              # continue the run in this folder exactly where it stopped


# The paper's values (Section 4 / Appendix B) for a 9B model on 8 GPUs: `--paper`.
PAPER = dict(prompts=128, lr=1e-5, topk=25, alpha=0.9, ema_every=5, warmup=50, max_new_tokens=8192)


def distill_step(cfg, policy, teacher, env, source, batch, generator):
    """One FD step on a batch of statements x, up to the loss (the caller steps the optimizer).
    Returns (loss, figures for the metrics line)."""
    tok, student, times = policy.tokenizer, policy.model, {}
    clock = time.perf_counter()

    def lap(name):
        nonlocal clock
        now = time.perf_counter()
        times[f"time_{name}"] = round(now - clock, 4)
        clock = now

    # 1. The student samples ONE attempt y ~ pi_theta(. | x) per statement (on-policy, no grad).
    prompts = [model.encode_prompt(tok, t) for t in batch]
    student.eval()
    with torch.no_grad():
        samples = model.sample(policy, prompts, max_new_tokens=cfg.max_new_tokens,
                               temperature=cfg.temperature, top_p=cfg.top_p, generator=generator)
    student.train()
    attempts = [s.ids for s in samples]
    lap("sample")
    # 2. Lean checks every attempt (train accuracy; the "lean" feedback shows its messages).
    results = env.check_many([(t, model.proof_text(s)) for t, s in zip(batch, samples)])
    lap("lean")
    # 3. F(y): one feedback text per attempt, framed for the teacher's prompt by feedback.py.
    failures = source.stats["failures"]
    texts = source.batch([(t, s.text, r) for t, s, r in zip(batch, samples, results)])
    failures = source.stats["failures"] - failures
    teacher_prompts = [model.encode_prompt(tok, t, f) for t, f in zip(batch, texts)]
    lap("feedback")
    # 4. The teacher pi_mu(. | x, F(y), y_<t) re-scores the student's own tokens: top-K per token.
    with torch.no_grad():
        t_hidden, _, mask = model.attempt_hidden(teacher, teacher_prompts, attempts, tok.pad_token_id)
        if cfg.topk:
            ids, logprobs = teacher_topk(t_hidden, model.lm_head_weight(teacher), cfg.topk,
                                         cfg.chunk_size, mask=mask)
    lap("teacher")
    # 5. The student pi_theta(. | x, y_<t) on the same tokens, in its own context: the FD loss.
    s_hidden, targets, _ = model.attempt_hidden(student, prompts, attempts, tok.pad_token_id)
    weight = model.lm_head_weight(student)
    if cfg.topk:
        loss, kl = fused_loss(s_hidden, weight, ids, logprobs, mask, cfg.chunk_size,
                              renorm=cfg.renorm, tail=cfg.tail, return_kl=True)
    else:
        loss, kl = fused_full_kl(s_hidden, weight, t_hidden, model.lm_head_weight(teacher), mask,
                                 cfg.chunk_size, return_kl=True)
    # the student's entropy on its own attempt (what the paper tracks), from the same states, no grad
    _, entropies = model.chunked_logprobs(s_hidden.detach(), weight.detach(), targets, mask, cfg.chunk_size,
                                          entropy=True)
    entropy = float(entropies[mask].mean()) if mask.any() else float("nan")
    lap("student_forward")
    figures = dict(
        train_acc=sum(r.ok for r in results) / len(results),
        entropy=entropy,
        kl=float(kl),
        attempt_len=sum(map(len, attempts)) / len(attempts),
        truncated=sum(s.truncated for s in samples) / len(samples),
        feedback_len=sum(len(t) - len(p) for t, p in zip(teacher_prompts, prompts)) / len(batch),
        feedback_failures=failures,
        **times,
    )
    return loss, figures


# Settings checked before anything slow starts (checkpoint.RULES: those grpo.py shares)
RULES = checkpoint.RULES + [
    ("topk", lambda v: v >= 0, "0 or more (0: the full-vocabulary KL)"),
    ("alpha", lambda v: 0 <= v <= 1, "between 0 and 1"),
    ("ema_every", lambda v: v >= 1, "at least 1"),
]


def setup(cfg: Config):
    """Everything the user named, checked and loaded before the first step: the settings, the run
    folder, the task files, the verifier, the feedback source, the model (last: the slow one). A
    user's mistake is one line and exit status 2 (checkpoint.fail); anything else keeps its traceback."""
    checkpoint.check(cfg, RULES, "fd.py")
    checkpoint.check_out(cfg, "fd.py")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    with checkpoint.user_errors(f"fd.py: --model {cfg.model}", model.ModelNotFound):
        model.check_name(cfg.model)
    with checkpoint.user_errors(f"fd.py: --tasks {cfg.tasks}", OSError, ValueError):
        next(tasks.stream(cfg.tasks, cfg.seed))  # reads the spec or file now: a bad one fails here, not at step 1
    with checkpoint.user_errors(f"fd.py: --eval-tasks {cfg.eval_tasks}", OSError, ValueError):
        heldout = evaluate.load_tasks(cfg.eval_tasks, cfg.eval_limit)
    lean = f" --lean {cfg.lean}" if cfg.lean else ""
    with checkpoint.user_errors(f"fd.py: --verifier {cfg.verifier}{lean}", ValueError, lean_env.LeanNotFound):
        env = lean_env.load(cfg.verifier, **({"lean": cfg.lean} if cfg.lean else {}))
    self_fd = cfg.feedback.split(":")[0] == "self"  # Self-FD's critic is the model itself: loaded below
    options = dict(base_url=cfg.base_url or None, cache_dir=os.path.join(cfg.out, "feedback_cache"))
    with checkpoint.user_errors(f"fd.py: --feedback {cfg.feedback}", ValueError, feedback.FeedbackError):
        source = None if self_fd else feedback.load(cfg.feedback, **options)
    # fp32 master weights for student and teacher, bf16 autocast on a GPU (model.autocast)
    with checkpoint.user_errors(f"fd.py: --model {cfg.model}", model.ModelNotFound):
        policy = model.load(cfg.model, device=cfg.device or None, dtype=torch.float32)
    if self_fd:
        source = feedback.load(cfg.feedback, policy=policy, **options)
    os.makedirs(cfg.out, exist_ok=True)
    return policy, env, source, heldout


def train(cfg: Config):
    """The FD loop: sample -> Lean -> feedback -> teacher top-K -> student loss -> step -> EMA."""
    policy, env, source, heldout = setup(cfg)
    student = policy.model
    if policy.device.type == "cuda":  # a real prover: trade compute for activation memory
        student.gradient_checkpointing_enable()
    student.train()
    teacher = make_teacher(student)
    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup)))
    nets = {"student": student, "teacher": teacher}
    start, extra = checkpoint.begin(cfg, nets, optimizer, scheduler, lambda: evaluate.heldout_pass1(
        policy, env, heldout, max_new_tokens=cfg.max_new_tokens))
    skipped, before = extra["skipped"], extra["before"]
    stream = tasks.stream(cfg.tasks, cfg.seed, skip=start * cfg.prompts)  # statements already used
    print(f"FD: {policy.name} on {policy.device}, feedback {cfg.feedback}, {cfg.prompts} prompts/step, "
          f"held-out pass@1 before: {before:.3f} ({len(heldout)} tasks)")
    bar = tqdm(range(start + 1, cfg.steps + 1), initial=start, total=cfg.steps, desc="FD")
    for step in bar:
        batch = [next(stream) for _ in range(cfg.prompts)]
        generator = torch.Generator(policy.device).manual_seed(cfg.seed * 1_000_003 + step)
        with model.autocast(policy.device):
            loss, row = distill_step(cfg, policy, teacher, env, source, batch, generator)
        clock = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        if torch.isfinite(loss):
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip))
        if not torch.isfinite(loss) or not math.isfinite(grad_norm):
            skipped += 1  # never step on, nor save, a NaN / inf: the weights stay as they were
            optimizer.zero_grad(set_to_none=True)
            grad_norm = float("nan")
        else:
            optimizer.step()
            if step % cfg.ema_every == 0:
                ema_update(teacher, student, cfg.alpha)
        lr = scheduler.get_last_lr()[0]  # the rate this step used
        scheduler.step()
        row = {"step": step, "loss": loss.item(), **row, "grad_norm": grad_norm,
               "lr": lr, "skipped_nonfinite": skipped,
               "time_student_update": round(time.perf_counter() - clock, 4)}
        if step == cfg.steps or (cfg.eval_every and step % cfg.eval_every == 0):
            row["heldout_pass1"] = after = evaluate.heldout_pass1(policy, env, heldout,
                                                                  max_new_tokens=cfg.max_new_tokens)
        checkpoint.append_metrics(cfg.out, row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['train_acc']:.2f}", ent=f"{row['entropy']:.2f}")
        if step % cfg.save_every == 0 or step == cfg.steps:
            checkpoint.save(cfg, step, nets, optimizer, scheduler, {"skipped": skipped, "before": before}, policy)
    if start >= cfg.steps:
        print(f"nothing to do: {cfg.out} already has {start} of {cfg.steps} steps")
        return
    print(f"held-out pass@1: before {before:.3f} -> after {after:.3f}; model in {cfg.out}/final")
    return {"before": before, "after": after}


def parse_args(argv=None) -> Config:
    return checkpoint.parse_config(Config, PAPER, "Feedback Distillation (arXiv 2605.30861, Section 3)", argv,
                                   prog="fd.py")


if __name__ == "__main__":
    train(parse_args())
