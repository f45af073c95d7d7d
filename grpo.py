"""GRPO: the paper's reinforcement-learning baseline, and FD -> GRPO (GRPO started from an FD checkpoint).
Paper: Narozniak et al., "Distilling LLM Feedback for Lean Theorem Proving", arXiv 2605.30861, the
GRPO baseline of the experiments section, after DeepSeekMath (Shao et al., 2024).

    python grpo.py --model small-prover --steps 100 --out runs/grpo              # GRPO alone
    python fd.py --model small-prover --steps 100 --out runs/fd                  # FD -> GRPO: FD first,
    python grpo.py --init-from runs/fd/final --steps 100 --out runs/fd_grpo      # then GRPO from it
    python grpo.py --resume runs/grpo --steps 200                                # continue a run exactly

One step (`grpo_step`): G attempts y per statement x (the paper: G = 5, 128 statements per step),
sampled on-policy -> binary reward r = 1 iff Lean accepts y as a proof of the exact statement ->
group-relative advantage A = (r - mean_group) / (std_group + eps), shared by every token of y (a group
whose rewards are all equal gets A = 0 exactly: no signal) -> the clipped surrogate
-min(rho A, clip(rho, 1-eps, 1+eps) A), rho = pi_theta / pi_old, plus beta * KL(pi_theta || pi_ref) per
token with the k3 estimator exp(ref - logp) - (ref - logp) - 1, beta = 0.001 (the paper's), pi_ref the
starting model, frozen -> optimizer step. One update per sampled batch, so pi_old is the current policy:
rho = 1 and the update is the plain policy gradient (the clip is kept in grpo_loss as the formula).
The paper leaves the advantage normalisation, estimator and aggregation unstated: standard GRPO
(unbiased group std, k3, token mean) by default, Dr. GRPO's choices (--no-std: A = r - mean;
--agg constant) as options. Loss aggregation (--agg), l_{i,t} the loss of token t of attempt i:
  token    sum_{i,t} l_{i,t} / sum_i |y_i|            every token of the batch weighs the same (default)
  seq      mean_i ( sum_t l_{i,t} / |y_i| )             DeepSeekMath's GRPO: every attempt weighs the same
  constant sum_{i,t} l_{i,t} / (N * max_new_tokens)    Dr. GRPO: no length bias
fd.py has the same shape: `diff fd.py grpo.py`.
"""
import os
from dataclasses import dataclass

import torch

from fdlean import cli, lm, parallel, prompting, turns
from training import checkpoint
from training.run import Run
from training.step import Step


@dataclass
class Config:
    model: str = "small-prover"   # "small-prover" (built by small_prover/sft.py on first use), a local folder
                                  # (e.g. OUT/final) or an HF id
    init_from: str = ""           # a checkpoint to start from, typically FD's OUT/final (or OUT);
                                  # overrides --model; pi_ref is then that checkpoint
    out: str = "runs/grpo"        # the run folder: settings, metrics, checkpoints (one run per folder)
    tasks: str = "mini:1"         # training statements: mini (every level), mini:LEVELS or jsonl:PATH;
                                  # the same default pool as fd.py, so that the two compare
    eval_tasks: str = "mini:test" # held-out set for pass@1 (mini:test or jsonl:PATH)
    eval_limit: int = 0           # held-out tasks per evaluation: the first N (0: all; mini:test interleaves levels)
    eval_n: int = 8               # samples per held-out task: the before/after change is then resolved to about
                                  # a point (its paired standard error is printed)
    eval_every: int = 25          # steps between held-out evaluations (0: only before and after)
    steps: int = 100              # optimizer steps
    prompts: int = 16             # statements per step, G attempts each (paper: 128)
    lr: float = 2e-4              # AdamW (paper: 1e-7 for a 9B model)
    weight_decay: float = 0.0     # AdamW's decoupled weight decay
    grad_clip: float = 1.0        # the gradient's global norm is clipped to this
    warmup: int = 5               # linear warmup steps, then constant (paper: 50)
    temperature: float = 1.0      # sampling (the paper does not say; 1.0 is on-policy)
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
                                  # rejected one followed by Lean's message (turns.py); the reward is on the last one
    chunk_size: int = 1024        # attempt positions whose logits exist at once in the log-probs
    group: int = 5                # G attempts per statement (paper: 5)
    kl_coef: float = 0.001        # beta (paper: 0.001); 0 = no reference model at all
    no_std: bool = False          # Dr. GRPO's A = r - mean instead of (r - mean) / (std + eps)
    agg: str = "token"            # token | seq | constant (see the docstring)
    micro_batch: int = 40         # attempts per forward/backward (gradients accumulate)
    fsdp: bool = False            # under torchrun: shard the policy and the reference over the processes (FSDP2,
                                  # shard.py); a full copy samples. For models whose training state does not fit one GPU
    save_every: int = 25          # HF checkpoint + training state every N steps (and at the end)
    seed: int = 0                 # seeds the statements drawn, the sampling and torch
    threads: int = 2              # torch CPU threads (Lean runs between, not beside, torch work)
    device: str = ""              # "" = cuda if available, else cpu
    verifier: str = "mini"        # mini | repl:PROJECT | lake:PROJECT | kimina:URL (Mathlib: mathlib/)
    lean: str = ""                # mini world: a `lean` executable ("" = LEAN env, PATH, then embedded)
    paper: bool = False           # use the paper's settings (PAPER below; explicit flags win)
    wandb: str = ""               # a Weights & Biases project to watch the run live ("": off; training/tracking.py)
    resume: str = ""              # continue the run in this folder exactly where it stopped


# The paper's GRPO settings (Qwen3.5-9B on 8 x H200): `--paper`.
PAPER = dict(max_prompt=2048, prompts=128, group=5, lr=1e-7, kl_coef=0.001, warmup=50, max_new_tokens=8192,
             tools=True)

ADV_EPS = 1e-4


# ----------------------------------------------------------------------------------------------
# 1. Group-relative advantages
# ----------------------------------------------------------------------------------------------
def group_advantages(rewards: torch.Tensor, std_scale: bool = True, eps: float = ADV_EPS):
    """rewards (N, G), one row per statement -> advantages (N, G).
    std_scale: (r - mean) / (std + eps) with the unbiased group std (as TRL); else r - mean
    (Dr. GRPO). Groups whose rewards are all equal are set to exactly 0: float rounding in
    r - mean must not turn "no signal" into a tiny push."""
    rewards = rewards.double()
    adv = rewards - rewards.mean(dim=1, keepdim=True)
    if std_scale:
        adv = adv / (rewards.std(dim=1, keepdim=True) + eps)
    flat = (rewards == rewards[:, :1]).all(dim=1, keepdim=True)
    return torch.where(flat, torch.zeros_like(adv), adv).float()


# ----------------------------------------------------------------------------------------------
# 2. The clipped objective with the k3 KL to the reference model
# ----------------------------------------------------------------------------------------------
def aggregate(x, mask, how, max_len=None, n_tokens=None, n_seqs=None):
    """Sum of the per-token x (B, T) over the mask, normalised as `how` says (see the docstring).
    n_tokens / n_seqs: the WHOLE batch's token and attempt counts, so that micro-batches add up to
    the full-batch value exactly; default: this batch's own."""
    mask = mask.to(x.dtype)
    n_tokens = mask.sum() if n_tokens is None else n_tokens
    n_seqs = x.shape[0] if n_seqs is None else n_seqs
    if how == "token":
        return (x * mask).sum() / max(float(n_tokens), 1.0)
    if how == "seq":
        return ((x * mask).sum(1) / mask.sum(1).clamp_min(1)).sum() / n_seqs
    if how == "constant":
        return (x * mask).sum() / (n_seqs * max_len)
    raise ValueError(f"unknown aggregation {how!r}: token | seq | constant")


def grpo_loss(logp, old_logp, ref_logp, adv, mask, clip_eps=0.2, kl_coef=0.001, agg="token",
              max_len=None, n_tokens=None, n_seqs=None):
    """logp (B, T) of the attempts' tokens under pi_theta (with grad), old_logp under the policy that
    sampled them (pi_old, detached), ref_logp under pi_ref (None if kl_coef = 0), adv (B,) per
    attempt, mask (B, T). Returns (loss, stats) with stats = clip_frac and kl (token means, detached)."""
    m = mask.bool()
    old_logp = old_logp.detach()
    a = adv[:, None].to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    clipped = ratio.clamp(1 - clip_eps, 1 + clip_eps)
    per_tok = -torch.minimum(ratio * a, clipped * a)
    kl = torch.zeros_like(logp)
    if ref_logp is not None:
        d = ref_logp.detach() - logp  # k3: unbiased for KL(pi_theta || pi_ref), always >= 0
        kl = torch.exp(d) - d - 1
        per_tok = per_tok + kl_coef * kl
    loss = aggregate(per_tok, mask, agg, max_len, n_tokens, n_seqs)
    n = m.sum().clamp_min(1)
    # where min() picks the clipped term and so the token gets no policy gradient (as TRL counts it)
    is_clipped = (((ratio > 1 + clip_eps) & (a > 0)) | ((ratio < 1 - clip_eps) & (a < 0))) & m
    stats = dict(clip_frac=(is_clipped.sum() / n).item(),
                 kl=(torch.where(m, kl, 0).sum() / n).item())
    return loss, stats


# ----------------------------------------------------------------------------------------------
# 3. One GRPO step
# ----------------------------------------------------------------------------------------------
def attempt_logprobs(net, prompts, attempts, chunk_size, entropy=False, trained=None):
    """log pi(y_t | x, y_<t) of every attempt token the policy sampled (B, L), the entropy of pi there (None unless
    entropy=True) and their mask (B, L), for one micro-batch (`trained`: Attempt.trained of each attempt)."""
    with lm.autocast(next(net.parameters()).device):
        hidden, targets, mask = lm.attempt_hidden(net, prompts, attempts, trained=trained)
        out = lm.chunked_logprobs(hidden, lm.head_weight(net), targets, mask, chunk_size, entropy)
    logp, ent = out if entropy else (out, None)
    return logp, ent, mask


def grpo_step(cfg: Config, policy, ref, env, optimizer, batch, generators, net=None) -> dict:
    """One GRPO step on this process's statements x, the optimizer step included. `generators`: one per attempt
    (G per statement). `net`: the policy trained, policy.model unless sharded (--fsdp: policy.model then samples).
    Returns the figures of the metrics line, over every process's attempts (micro-batches, sums over processes and
    the optimizer step: training/step.py)."""
    step, tok = Step(policy, net), policy.tokenizer
    # 1. G attempts y ~ pi_theta(. | x) per statement, on-policy, no grad; a group's are adjacent. Each
    #    attempt is the paper's agentic one with --tools (agent.py), else one shot or the small prover's --turns loop.
    jobs = [t for t in batch for _ in range(cfg.group)]
    prompts = [prompting.encode(tok, t, tools=cfg.tools) for t in jobs]
    rolled = turns.rollout(policy, env, jobs, prompts, cfg.turns, cfg.max_new_tokens, cfg.temperature, cfg.top_p,
                           generators, step.clock, tools=cfg.tools)
    # 2. Binary reward: 1 iff Lean accepts the answer (the last file written; the proof) as a proof of the statement.
    rewards = torch.tensor([float(a.result.ok) for a in rolled]).view(len(batch), cfg.group)
    # 3. Advantages, and the log-probs under pi_ref: fixed for the whole batch, no grad.
    adv = group_advantages(rewards, std_scale=not cfg.no_std).view(-1).to(policy.device)
    parts = step.micro_batches(rolled, cfg.micro_batch)

    def score(scorer, m, entropy=False):  # Lean's messages are context: masked out of every sum
        logp, ent, mask = attempt_logprobs(scorer, [prompts[i] for i in m], [rolled[i].ids for i in m], cfg.chunk_size,
                                           entropy, [rolled[i].trained for i in m])
        return logp, (ent * mask if ent is not None else None), mask

    with torch.no_grad():
        ref_lp = [score(ref, m)[0] if ref is not None else None for m in parts]
    step.release(ref)
    step.clock.lap("score")
    # 4. The clipped objective + beta * k3 KL, micro-batches accumulating into one gradient. pi_old is
    #    the policy itself (one update per batch): old = logp.detach(), rho = 1.
    for m, ref_logp in zip(parts, ref_lp):
        logp, ent, mask = score(step.net, m, entropy=True)
        loss, stats = grpo_loss(logp, logp.detach(), ref_logp, adv[m], mask, kl_coef=cfg.kl_coef, agg=cfg.agg,
                                max_len=cfg.max_new_tokens * cfg.turns, n_tokens=step.tokens, n_seqs=step.attempts)
        step.backward(loss, mask, dict(kl=stats["kl"], clip_frac=stats["clip_frac"],
                                       entropy=ent.sum().item() / max(mask.sum().item(), 1)), normalized=True)
    # 5. One optimizer step on the gradients of every process (none on a NaN or inf).
    return {**step.update(optimizer, cfg.grad_clip),
            **step.attempts_row(jobs, rolled, tok, reward=[a.result.ok for a in rolled]),   # the binary reward
            "frac_groups_with_signal": parallel.means(signal=(rewards.std(1) > 0).tolist())["signal"]}


# ----------------------------------------------------------------------------------------------
# 4. The training loop
# ----------------------------------------------------------------------------------------------
RULES = [  # checked before anything slow starts, with training.run.RULES: those fd.py shares
    ("group", lambda v: v >= 2, "at least 2 (group advantages compare attempts at one statement)"),
    ("kl_coef", lambda v: v >= 0, "0 or more (0: no reference model)"),
    ("micro_batch", lambda v: v >= 1, "at least 1"),
    ("agg", lambda v: v in ("token", "seq", "constant"), "token, seq or constant"),
]


def start_model(cfg: Config) -> str:
    """--init-from (a run folder means its final model), else --model."""
    init = cfg.init_from or cfg.model
    if os.path.isfile(os.path.join(init, "final", "config.json")):  # a run folder: its final model
        init = os.path.join(init, "final")
    return init


def setup(cfg: Config):
    """Everything the user named, checked and loaded before the first step: the settings, the run folder, the
    task sets and Lean (training.Run), then the models (the slow part): pi_theta, trained, and pi_ref, the same
    starting checkpoint frozen for the whole run (none when kl_coef = 0)."""
    run = Run(cfg, "grpo.py", RULES, model=("--init-from" if cfg.init_from else "--model", start_model(cfg)))
    policy = run.load_policy()
    # fp32 like the policy's master weights: in bf16 the KL would not be 0 at step 0
    ref = lm.load(run.path, device=policy.device, dtype=torch.float32).model.requires_grad_(False) \
        if cfg.kl_coef > 0 else None
    return run, policy, ref


def train(cfg: Config):
    """The GRPO loop: sample G per statement -> Lean -> advantages -> clipped objective + KL -> step."""
    run, policy, ref = setup(cfg)
    net = policy.model
    policy = run.begin(policy, {"policy": net} if ref is None else {"policy": net, "reference": ref})
    parallel.say(f"GRPO: {cfg.init_from or cfg.model} on {policy.device}, {cfg.prompts} prompts x G={cfg.group} "
                 f"per step, held-out pass@1 before: {run.before:.3f} ({len(run.heldout)} tasks x {cfg.eval_n} samples"
                 + (f", attempts of up to {cfg.turns} turns)" if cfg.turns > 1 else ")"))
    for step, batch, generators in run.steps("GRPO", attempts_per_statement=cfg.group):
        row = grpo_step(cfg, policy, ref, run.env, run.optimizer, batch, generators, net)
        run.end_step(step, row, show=("reward", "kl", "entropy"))
    return run.finish()


def parse_args(argv=None) -> Config:
    return cli.parse(Config, argv, prog="grpo.py", description="GRPO and FD -> GRPO (arXiv 2605.30861, GRPO baseline)",
                     paper=PAPER, read_run=lambda out: checkpoint.read_config(out, "grpo.py"))


if __name__ == "__main__":
    config = parse_args()
    cli.main(lambda: train(config), "grpo.py", lambda: checkpoint.resume_hint(config, "grpo.py"))
