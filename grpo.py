"""GRPO: the paper's reinforcement-learning baseline, and FD -> GRPO (GRPO started from an FD checkpoint).

Paper: Narozniak et al., "Distilling LLM Feedback for Lean Theorem Proving", arXiv 2605.30861,
the GRPO baseline of the experiments section, after
DeepSeekMath (Shao et al., 2024). One step, top to bottom of this file:
  1. G attempts per statement x (the paper: G = 5, 128 statements per step), sampled on-policy;
  2. binary reward r = 1 if Lean accepts the attempt as a proof of the exact statement (Result.ok);
  3. group-relative advantage A = (r - mean_group) / (std_group + eps), every token of an attempt
     shares its attempt's A; a group whose rewards are all equal gets A = 0 exactly (no signal);
  4. clipped surrogate  -min(rho A, clip(rho, 1-eps, 1+eps) A)  with rho = pi_theta / pi_old, plus
     beta * KL(pi_theta || pi_ref) per token with the k3 estimator exp(ref - logp) - (ref - logp) - 1,
     beta = 0.001 (the paper's), pi_ref = the initial model, frozen.
The paper leaves the advantage normalisation, clip epsilon, KL estimator and aggregation unstated;
we use standard GRPO (std scaling with the unbiased group std, eps 0.2, k3, token mean) and offer
Dr. GRPO's choices (--no-std: A = r - mean; --agg constant) as options. With --inner-steps 1 (the
default) pi_old is the current policy, so rho = 1 and the update is the plain policy gradient.

Loss aggregation (--agg), l_{i,t} the per-token loss of attempt i, |y_i| its length:
  token    sum_{i,t} l_{i,t} / sum_i |y_i|            every token of the batch weighs the same (default)
  seq      mean_i ( sum_t l_{i,t} / |y_i| )             DeepSeekMath's GRPO: every attempt weighs the same
  constant sum_{i,t} l_{i,t} / (N * max_new_tokens)    Dr. GRPO: no length bias

Defaults fit the mini world on 2 CPU cores; `--paper` sets the paper's values (PAPER, below Config).
    python grpo.py --model small-prover --steps 100 --out runs/grpo              # GRPO alone
    python fd.py --model small-prover --steps 100 --out runs/fd                  # FD -> GRPO: FD first,
    python grpo.py --init-from runs/fd/final --steps 100 --out runs/fd_grpo      # then GRPO from it
    python grpo.py --resume runs/grpo --steps 200                                # continue a run exactly
Per step, OUT/metrics.jsonl gets: loss, reward (= train_acc), entropy, kl (k3, token mean, to pi_ref),
clip_frac, frac_groups_with_signal, attempt_len, grad_norm, lr, time_{sample,lean,score,update} and,
every eval_every steps, heldout_pass1 (step 0: the starting model).
"""
import math
import os
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

import checkpoint
import evaluate
import lean_env
import model
import tasks


@dataclass
class Config:
    model: str = "small-prover"   # policy to start from: preset, local folder (e.g. OUT/final) or HF id
    init_from: str = ""           # a checkpoint to start from, typically FD's OUT/final (or OUT);
                                  # overrides --model; pi_ref is then that checkpoint
    out: str = "runs/grpo"
    tasks: str = "mini:1"         # training statements: mini (every level), mini:LEVELS or jsonl:PATH;
                                  # the same default pool as fd.py, so that the two compare
    eval_tasks: str = "mini:test" # held-out set for pass@1 (mini:test or jsonl:PATH)
    eval_limit: int = 300         # held-out tasks per evaluation: the first N (mini:test interleaves levels)
    eval_every: int = 25          # steps between held-out evaluations (0: only before and after)
    steps: int = 100
    prompts: int = 16             # statements per step (paper: 128)
    group: int = 5                # G attempts per statement (paper: 5)
    lr: float = 2e-4              # AdamW (paper: 1e-7 for a 9B model)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    warmup: int = 5               # linear warmup steps, then constant (paper: 50)
    kl_coef: float = 0.001        # beta (paper: 0.001); 0 = no reference model at all
    clip_eps: float = 0.2         # PPO clip epsilon (paper: unstated)
    inner_steps: int = 1          # updates per sampled batch; 1 = rho is exactly 1 (pure on-policy)
    no_std: bool = False          # Dr. GRPO's A = r - mean instead of (r - mean) / (std + eps)
    agg: str = "token"            # token | seq | constant (see the docstring)
    temperature: float = 1.0      # sampling (the paper does not say; 1.0 is on-policy)
    top_p: float = 1.0
    max_new_tokens: int = 64      # attempt budget (paper: 8192)
    micro_batch: int = 40         # attempts per forward/backward (gradients accumulate)
    chunk_size: int = 1024        # rows of logits alive at once in the log-prob computation
    save_every: int = 25          # HF checkpoint + training state every N steps (and at the end)
    seed: int = 0
    threads: int = 2              # torch CPU threads (Lean runs between, not beside, torch work)
    device: str = ""              # "" = cuda if available, else cpu
    verifier: str = "mini"        # mini | repl:PROJECT | lake:PROJECT | kimina:URL (Mathlib: lean_mathlib.py)
    lean: str = ""                # mini world: a `lean` executable ("" = LEAN env, PATH, then embedded)
    paper: bool = False           # use the paper's settings (PAPER below)
    resume: str = ""              # continue the run in this folder exactly where it stopped


# The paper's GRPO settings (Qwen3.5-9B on 8 x H200): `--paper`. Explicit flags still win.
PAPER = dict(prompts=128, group=5, lr=1e-7, kl_coef=0.001, warmup=50, max_new_tokens=8192)

ADV_EPS = 1e-4


# ---------------------------------------------------------------------------------------------
# 1. Group-relative advantages
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# 2. The clipped objective with the k3 KL to the reference model
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# 3. One GRPO step: G attempts per statement, Lean rewards, advantages, clipped update
# ---------------------------------------------------------------------------------------------
def attempt_logprobs(net, prompts, attempts, cfg: Config, entropy=False):
    """log pi(y_t | x, y_<t) of every attempt token (B, L), the entropy of pi there (None unless
    entropy=True) and the mask of attempt tokens (B, L), for one micro-batch."""
    with model.autocast(next(net.parameters()).device):
        hidden, targets, mask = model.attempt_hidden(net, prompts, attempts)
        out = model.chunked_logprobs(hidden, model.lm_head_weight(net), targets, mask, cfg.chunk_size, entropy)
    logp, ent = out if entropy else (out, None)
    return logp, ent, mask


def grpo_step(cfg: Config, policy, ref, env, optimizer, batch, generator) -> dict:
    """One GRPO step on a batch of statements x, optimizer step(s) included. Returns the figures of
    the metrics line (and `skipped`: 1 if a non-finite gradient made us skip the step)."""
    net, times = policy.model, {}
    clock = time.perf_counter()

    def lap(name):
        nonlocal clock
        now = time.perf_counter()
        times[f"time_{name}"] = round(now - clock, 4)
        clock = now

    # 1. G attempts y ~ pi_theta(. | x) per statement, on-policy, no grad; a group's are adjacent.
    jobs = [t for t in batch for _ in range(cfg.group)]
    prompts = [model.encode_prompt(policy.tokenizer, t) for t in jobs]
    net.eval()
    with torch.no_grad(), model.autocast(policy.device):
        samples = model.sample(policy, prompts, max_new_tokens=cfg.max_new_tokens,
                               temperature=cfg.temperature, top_p=cfg.top_p, generator=generator)
    net.train()
    attempts = [s.ids for s in samples]
    lap("sample")
    # 2. Binary reward: 1 iff Lean accepts the attempt as a proof of the exact statement.
    results = env.check_many([(t, model.proof_text(s)) for t, s in zip(jobs, samples)])
    rewards = torch.tensor([float(r.ok) for r in results]).view(len(batch), cfg.group)
    lap("lean")
    # 3. Advantages, and the log-probs under pi_ref and pi_old: fixed for the whole batch, no grad.
    # One inner step: pi_old IS the current policy, so old = logp.detach() and rho = 1 exactly.
    adv = group_advantages(rewards, std_scale=not cfg.no_std).view(-1).to(policy.device)
    micro = [list(range(i, min(i + cfg.micro_batch, len(jobs)))) for i in range(0, len(jobs), cfg.micro_batch)]
    n_tokens, n_seqs = sum(map(len, attempts)), len(attempts)  # whole-batch normalisers

    def score(scorer, m, entropy=False):
        return attempt_logprobs(scorer, [prompts[i] for i in m], [attempts[i] for i in m], cfg, entropy)

    with torch.no_grad():
        ref_lp = [score(ref, m)[0] if ref is not None else None for m in micro]
        old_lp = [score(net, m)[0] if cfg.inner_steps > 1 else None for m in micro]
    lap("score")
    # 4. The clipped objective + beta * k3 KL; micro-batches accumulate into one optimizer step.
    figures = dict(loss=0.0, kl=0.0, clip_frac=0.0, grad_norm=0.0)
    entropy, skipped = 0.0, 0
    for k in range(cfg.inner_steps):
        optimizer.zero_grad(set_to_none=True)
        for j, m in enumerate(micro):
            logp, ent, mask = score(net, m, entropy=(k == 0))
            old = logp.detach() if cfg.inner_steps == 1 else old_lp[j]
            loss, stats = grpo_loss(logp, old, ref_lp[j], adv[m], mask, cfg.clip_eps, cfg.kl_coef, cfg.agg,
                                    cfg.max_new_tokens, n_tokens, n_seqs)
            loss.backward()
            w = mask.sum().item() / n_tokens / cfg.inner_steps  # stats are token means over the batch
            figures["loss"] += loss.item() / cfg.inner_steps
            figures["kl"] += stats["kl"] * w
            figures["clip_frac"] += stats["clip_frac"] * w
            entropy += ent.sum().item() if k == 0 else 0.0
        grad_norm = float(torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip))
        figures["grad_norm"] += grad_norm / cfg.inner_steps
        if not math.isfinite(grad_norm):  # never step on a NaN / inf: the weights stay as they were
            optimizer.zero_grad(set_to_none=True)
            skipped = 1
            break
        optimizer.step()
    lap("update")
    return dict(**figures, reward=rewards.mean().item(), train_acc=rewards.mean().item(),
                entropy=entropy / max(n_tokens, 1),
                frac_groups_with_signal=(rewards.std(1) > 0).float().mean().item(),
                attempt_len=n_tokens / n_seqs, truncated=sum(s.truncated for s in samples) / n_seqs,
                skipped=skipped, **times)


# ---------------------------------------------------------------------------------------------
# 4. The training loop (mirrors fd.py: same run folder, metrics, checkpoints and resume)
# ---------------------------------------------------------------------------------------------
def start_model(cfg: Config) -> str:
    """--init-from (a run folder means its final model), else --model."""
    init = cfg.init_from or cfg.model
    if os.path.isfile(os.path.join(init, "final", "config.json")):  # a run folder: its final model
        init = os.path.join(init, "final")
    return init


def load_nets(cfg: Config):
    """pi_theta, trained (fp32 master weights, see model.autocast()), and pi_ref: the same starting
    checkpoint (an FD one with --init-from), frozen for the whole run: eval mode, no gradient,
    never given to the optimizer. No pi_ref when kl_coef = 0."""
    init = start_model(cfg)
    policy = model.load(init, device=cfg.device or None, dtype=torch.float32)
    if policy.device.type == "cuda":  # a real prover: trade compute for activation memory
        policy.model.gradient_checkpointing_enable()
    policy.model.train()
    ref = None
    if cfg.kl_coef > 0:
        ref = model.load(init, device=policy.device).model.eval().requires_grad_(False)
    return policy, ref


# Settings checked before anything slow starts (checkpoint.RULES: those fd.py shares)
RULES = checkpoint.RULES + [
    ("group", lambda v: v >= 2, "at least 2 (group advantages compare attempts at one statement)"),
    ("kl_coef", lambda v: v >= 0, "0 or more (0: no reference model)"),
    ("clip_eps", lambda v: 0 < v < 1, "between 0 and 1, both excluded"),
    ("inner_steps", lambda v: v >= 1, "at least 1"),
    ("micro_batch", lambda v: v >= 1, "at least 1"),
    ("agg", lambda v: v in ("token", "seq", "constant"), "token, seq or constant"),
]


def setup(cfg: Config):
    """Everything the user named, checked and loaded before the first step: the settings, the run
    folder, the task files, the verifier, the models (last: the slow part). A user's mistake is one
    line and exit status 2 (checkpoint.fail); anything else keeps its traceback."""
    checkpoint.check(cfg, RULES, "grpo.py")
    checkpoint.check_out(cfg, "grpo.py")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    option = f"grpo.py: --init-from {cfg.init_from}" if cfg.init_from else f"grpo.py: --model {cfg.model}"
    with checkpoint.user_errors(option, model.ModelNotFound):
        model.check_name(start_model(cfg))
    with checkpoint.user_errors(f"grpo.py: --tasks {cfg.tasks}", OSError, ValueError):
        next(tasks.stream(cfg.tasks, cfg.seed))  # reads the spec or file now: a bad one fails here, not at step 1
    with checkpoint.user_errors(f"grpo.py: --eval-tasks {cfg.eval_tasks}", OSError, ValueError):
        heldout = evaluate.load_tasks(cfg.eval_tasks, cfg.eval_limit)
    lean = f" --lean {cfg.lean}" if cfg.lean else ""
    with checkpoint.user_errors(f"grpo.py: --verifier {cfg.verifier}{lean}", ValueError, lean_env.LeanNotFound):
        env = lean_env.load(cfg.verifier, **({"lean": cfg.lean} if cfg.lean else {}))
    with checkpoint.user_errors(option, model.ModelNotFound):
        policy, ref = load_nets(cfg)
    os.makedirs(cfg.out, exist_ok=True)
    return policy, ref, env, heldout


def train(cfg: Config):
    """The GRPO loop: sample G per statement -> Lean -> advantages -> clipped objective + KL -> step."""
    policy, ref, env, heldout = setup(cfg)
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup)))
    nets = {"policy": policy.model, **({"reference": ref} if ref is not None else {})}
    start, extra = checkpoint.begin(cfg, nets, optimizer, scheduler, lambda: evaluate.heldout_pass1(
        policy, env, heldout, max_new_tokens=cfg.max_new_tokens))
    skipped, before = extra["skipped"], extra["before"]
    stream = tasks.stream(cfg.tasks, cfg.seed, skip=start * cfg.prompts)  # statements already used

    print(f"GRPO: {cfg.init_from or cfg.model} on {policy.device}, {cfg.prompts} prompts x G={cfg.group} "
          f"per step, held-out pass@1 before: {before:.3f} ({len(heldout)} tasks)")
    bar = tqdm(range(start + 1, cfg.steps + 1), initial=start, total=cfg.steps, desc="GRPO")
    after = None
    for step in bar:
        batch = [next(stream) for _ in range(cfg.prompts)]
        generator = torch.Generator(policy.device).manual_seed(cfg.seed * 1_000_003 + step)
        lr = scheduler.get_last_lr()[0]  # the rate this step uses
        row = grpo_step(cfg, policy, ref, env, optimizer, batch, generator)
        scheduler.step()
        skipped += row.pop("skipped")
        row = {"step": step, **row, "lr": lr, "skipped_nonfinite": skipped}
        if step == cfg.steps or (cfg.eval_every and step % cfg.eval_every == 0):
            row["heldout_pass1"] = after = evaluate.heldout_pass1(policy, env, heldout, max_new_tokens=cfg.max_new_tokens)
        checkpoint.append_metrics(cfg.out, row)
        bar.set_postfix(reward=f"{row['reward']:.2f}", kl=f"{row['kl']:.4f}", ent=f"{row['entropy']:.2f}")
        if step % cfg.save_every == 0 or step == cfg.steps:
            checkpoint.save(cfg, step, nets, optimizer, scheduler, {"skipped": skipped, "before": before}, policy)
    if start >= cfg.steps:
        print(f"nothing to do: {cfg.out} already has {start} of {cfg.steps} steps")
        return
    print(f"held-out pass@1: before {before:.3f} -> after {after:.3f}; model in {cfg.out}/final")
    return {"before": before, "after": after}


def parse_args(argv=None) -> Config:
    return checkpoint.parse_config(Config, PAPER, "GRPO and FD -> GRPO (arXiv 2605.30861, GRPO baseline)", argv,
                                   prog="grpo.py")


if __name__ == "__main__":
    train(parse_args())
