"""Feedback Distillation (FD): the student learns to match, token by token, its own distribution
when shown privileged feedback on its attempt. Paper: Narozniak et al., "Distilling LLM Feedback
for Lean Theorem Proving", arXiv 2605.30861, Section 3 (the method), Appendix B (the loss), Appendix A.1 (its
settings) and Section 4.1 (the agentic attempt: --tools).

    python fd.py --model small-prover                   # the mini world on a laptop CPU, a few minutes
    python fd.py --model small-prover --steps 200 --out runs/fd_200 --feedback tutor
    python fd.py --feedback none --out runs/fd_none     # the control: the teacher sees no feedback
    python fd.py --resume runs/fd                        # continue a killed run exactly
    python fd.py --model Qwen/Qwen3-8B --paper --feedback anthropic:MODEL ...   # a GPU, agentic: docs/real-provers.md

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
from fd_loss import CHUNK_SIZE, TOPK, fused_full_kl, fused_loss, teacher_topk
from fdlean import cli, lm, parallel, prompting, turns
from training import checkpoint
from training.run import Run
from training.step import Step


@dataclass
class Config:
    model: str = "small-prover"   # "small-prover" (built by small_prover/sft.py on first use), a local folder
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
    max_new_tokens: int = 64      # tokens sampled per attempt (--tools: the whole agentic attempt, paper:
                                  # 8192); the small prover's --turns loop: per candidate
    max_prompt: int = 0           # longer student prompts (tokens) are skipped and counted (0: no limit; paper: 2048)
    prompt: str = "auto"          # prompt style: auto (by the model's name) | chat | kimina | deepseek | completion
                                  # | plain (prompting.STYLES: a prover family's own documented prompt)
    thinking: bool = True         # Qwen3's enable_thinking for every chat prompt (--no-thinking: off)
    tools: bool = False           # a chat model's attempt is the paper's agentic one (Section 4.1): it writes,
                                  # compiles and searches Mathlib with three tools, each call stops the generation
                                  # and its output is appended (agent.py); the last file written is the answer.
                                  # --paper turns it on; --no-tools is the paper's no-tools ablation (A.2)
    turns: int = 1                # the small prover's miniature of the agentic attempt: up to N candidates, each
                                  # rejected one followed by Lean's message (turns.py); the answer is the last one
    fsdp: bool = False            # under torchrun: shard student and teacher over the processes (FSDP2, shard.py);
                                  # a full copy samples. For models whose training state does not fit one GPU
    micro_batch: int = 0          # attempts per teacher/student forward and backward (0: all of a process's at once);
                                  # the gradient is the whole step's either way
    chunk_size: int = CHUNK_SIZE  # attempt positions whose logits exist at once in the loss
    feedback: str = "ground-truth"  # F(y): ground-truth | tutor[:1-4] | lean | self | constant:TEXT | none
                                  # | openai:MODEL | anthropic:MODEL (README: which teaches the small prover best)
    feedback_prompt: int = 4      # the critique prompt of LLM/self critics, the paper's steps (Appendix A.3, C.3): 1 a
                                  # tutor's bare request, 2 + 1-3 numbered items, 3 + self-contained Do/Don't orders,
                                  # 4 + tools and concision: the final prompt
    feedback_prompt_file: str = ""  # a file whose text replaces that prompt (e.g. the paper's as printed), with
                                  # {statement}, {attempt} and {lean_output} filled in (docs/feedback.md)
    topk: int = TOPK              # K; 0 = full-vocabulary forward KL
    renorm: bool = False          # renormalise the teacher's top-K probabilities
    tail: bool = False            # add the tail bucket: the teacher's mass outside the top K
    alpha: float = 0.9            # EMA coefficient of the teacher
    ema_every: int = 5            # optimizer steps between EMA updates
    base_url: str = ""            # for openai:/anthropic: feedback (e.g. a local vLLM server)
    api_key_env: str = ""         # with --base-url: the environment variable that holds that server's key (a
                                  # provider's own key goes only to the provider's host)
    save_every: int = 50          # HF checkpoint + training state every N steps (and at the end)
    seed: int = 0                 # seeds the statements drawn, the sampling and torch
    threads: int = 2              # torch CPU threads (Lean runs between, not beside, torch work)
    device: str = ""              # "" = cuda if available, else cpu
    verifier: str = "mini"        # mini | repl:PROJECT | lake:PROJECT | kimina:URL (Mathlib: mathlib/)
    lean: str = ""                # mini world: a `lean` executable ("" = LEAN env, PATH, then embedded)
    paper: bool = False           # use the paper's settings (PAPER below; explicit flags win)
    wandb: str = ""               # a Weights & Biases project to watch the run live ("": off; training/tracking.py)
    resume: str = ""              # continue the run in this folder exactly where it stopped


# The paper's values (Appendix A.1, Table 1; the agentic setting of Section 4.1) for a 9B model on 8 GPUs: `--paper`.
PAPER = dict(max_prompt=2048, prompts=128, lr=1e-5, topk=25, alpha=0.9, ema_every=5, warmup=50, max_new_tokens=8192,
             tools=True)


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
    """One FD step on this process's statements x, the optimizer step included. `generators`: one per statement,
    for its attempt. `student`: the net trained, policy.model unless sharded (--fsdp: policy.model then samples).
    Returns the figures of the metrics line, over every process's attempts (micro-batches, sums over processes and
    the optimizer step: training/step.py)."""
    step, tok = Step(policy, student), policy.tokenizer
    # 1. The student makes ONE attempt y ~ pi_theta(. | x) per statement (on-policy, no grad): --tools, the paper's
    #    agentic attempt (tool calls stop the generation, their outputs are appended: agent.py); else one shot, or
    #    the small prover's --turns loop (turns.py).
    # 2. Lean checks the answer (the last file written; the proof); its verdict is the train accuracy.
    prompts = [prompting.encode(tok, t, tools=cfg.tools) for t in batch]
    attempts = turns.rollout(policy, env, batch, prompts, cfg.turns, cfg.max_new_tokens, cfg.temperature,
                             cfg.top_p, generators, step.clock, tools=cfg.tools)
    # 3. F(y): one feedback text per attempt, on its answer and Lean's verdict on it (a critic reads the whole
    #    attempt); the teacher's prompt is the student's with F(y) in it (prompting.py).
    failures = source.stats["failures"]
    texts = source.batch([(t, a, a.result) for t, a in zip(batch, attempts)])
    teacher_prompts = [prompting.encode(tok, t, f, cfg.tools) for t, f in zip(batch, texts)]
    step.clock.lap("feedback")
    for part in step.micro_batches(attempts, cfg.micro_batch):   # all at once by default
        ids = [attempts[i].ids for i in part]
        with lm.autocast(policy.device):
            # 4. The teacher pi_mu(. | x, F(y), y_<t) re-scores the student's own tokens: its top K per token.
            with torch.no_grad():
                t_hidden, _, mask = lm.attempt_hidden(teacher, [teacher_prompts[i] for i in part], ids, tok.pad_token_id,
                                                      [attempts[i].trained for i in part])   # tool outputs: no loss
                if cfg.topk:
                    top_ids, top_logprobs = teacher_topk(t_hidden, lm.head_weight(teacher), cfg.topk, cfg.chunk_size,
                                                         mask=mask)
            step.clock.lap("teacher")
            # 5. The student pi_theta(. | x, y_<t) on the same tokens, in its own context (no feedback):
            #      L = mean over attempt tokens t of  - sum_{a in TopK_t} pi_mu(a | x, F(y), y_<t) log pi_theta(a | x, y_<t)
            #    computed chunk by chunk inside the lm head, so the (tokens x vocabulary) logits never exist:
            #    the same value and gradient as fd_loss.reference_loss on full logits (tests/test_fd_loss.py).
            s_hidden, targets, _ = lm.attempt_hidden(step.net, [prompts[i] for i in part], ids, tok.pad_token_id)
            weight = lm.head_weight(step.net)
            if cfg.topk:
                loss, kl = fused_loss(s_hidden, weight, top_ids, top_logprobs, mask, cfg.chunk_size,
                                      renorm=cfg.renorm, tail=cfg.tail, return_kl=True)
            else:
                loss, kl = fused_full_kl(s_hidden, weight, t_hidden, lm.head_weight(teacher), mask, cfg.chunk_size,
                                         return_kl=True)
            entropy = lm.mean_entropy(s_hidden, weight, targets, mask, cfg.chunk_size)   # of its own attempt
        step.backward(loss, mask, dict(kl=kl, entropy=entropy), free=teacher)
    # 6. One optimizer step on the gradients of every process (none on a NaN or inf).
    return {**step.update(optimizer, cfg.grad_clip),
            **step.attempts_row(batch, attempts, tok, feedback_len=[len(t) - len(p) for t, p in
                                                                    zip(teacher_prompts, prompts)]),
            "feedback_failures": step.total(source.stats["failures"] - failures)}


# ----------------------------------------------------------------------------------------------
# 3. The training loop
# ----------------------------------------------------------------------------------------------
RULES = [  # checked before anything slow starts, with training.run.RULES: those grpo.py shares
    ("topk", lambda v: v >= 0, "0 or more (0: the full-vocabulary KL)"),
    ("alpha", lambda v: 0 <= v <= 1, "between 0 and 1"),
    ("ema_every", lambda v: v >= 1, "at least 1"),
    ("micro_batch", lambda v: v >= 0, "0 or more (0: all of a process's attempts at once)"),
    ("feedback_prompt", lambda v: v in (1, 2, 3, 4), "1, 2, 3 or 4"),
]


def setup(cfg: Config):
    """Everything the user named, checked and loaded before the first step: the settings, the run folder, the
    task sets and Lean (training.Run), the feedback source, then the model (the slow part). Self-FD's critic is
    the starting model itself, frozen: it is made from the loaded model."""
    run = Run(cfg, "fd.py", RULES)
    options = dict(base_url=cfg.base_url or None, cache_dir=os.path.join(cfg.out, "feedback_cache"),
                   prompt=cfg.feedback_prompt, prompt_file=cfg.feedback_prompt_file, api_key_env=cfg.api_key_env or None)
    self_fd = cfg.feedback.split(":")[0] == "self"
    with run.user_errors(f"--feedback {cfg.feedback}", ValueError, feedback.FeedbackError):
        source = None if self_fd else feedback.load(cfg.feedback, **options)
        if self_fd and cfg.feedback_prompt_file:   # Self-FD's critic needs the model: its prompt file is read now
            feedback.read_prompt_file(cfg.feedback_prompt_file)
    policy = run.load_policy()
    vocabulary = policy.model.get_output_embeddings().weight.shape[0]
    if cfg.topk > vocabulary:   # known once the model is loaded; nothing is written yet
        cli.fail(f"fd.py: --topk {cfg.topk}: must be at most the model's vocabulary ({vocabulary} tokens)")
    if self_fd:  # the critic writes within the policy's own attempt budget (not an API critic's 512 tokens)
        source = feedback.load(cfg.feedback, policy=policy, max_tokens=cfg.max_new_tokens, **options)
    return run, policy, source


def train(cfg: Config):
    """The FD loop: sample -> Lean -> feedback -> teacher top-K -> student loss -> step -> EMA."""
    run, policy, source = setup(cfg)
    student = policy.model
    teacher = make_teacher(student)
    policy = run.begin(policy, {"student": student, "teacher": teacher})   # --resume, or the held-out pass@1 first
    parallel.say(f"FD: {policy.name} on {policy.device}, feedback {cfg.feedback}, {cfg.prompts} prompts/step, "
                 f"held-out pass@1 before: {run.before:.3f} ({len(run.heldout)} tasks x {cfg.eval_n} samples"
                 + (f", attempts of up to {cfg.turns} turns)" if cfg.turns > 1 else ")"))
    for step, batch, generators in run.steps("FD"):
        # a critic that failed whole batches several steps in a row stops the run (not a silent Lean-FD run)
        with run.user_errors(f"--feedback {cfg.feedback} (step {step}; {checkpoint.resume_hint(cfg, 'fd.py')})",
                             feedback.FeedbackError):
            row = fd_step(cfg, policy, teacher, run.env, source, run.optimizer, batch, generators, student)
        if step % cfg.ema_every == 0 and math.isfinite(row["grad_norm"]):
            ema_update(teacher, student, cfg.alpha)
        run.end_step(step, row)
    control = cli.command(cfg, "fd.py", feedback="none", out=cfg.out + "_control")
    return run.finish(f"Is the change the feedback's doing? The control, the same run with a teacher that sees no "
                      f"feedback:\n  {control}")


def parse_args(argv=None) -> Config:
    return cli.parse(Config, argv, prog="fd.py", description="Feedback Distillation (arXiv 2605.30861, Section 3)",
                     paper=PAPER, read_run=lambda out: checkpoint.read_config(out, "fd.py"))


if __name__ == "__main__":
    config = parse_args()
    cli.main(lambda: train(config), "fd.py", lambda: checkpoint.resume_hint(config, "fd.py"))
