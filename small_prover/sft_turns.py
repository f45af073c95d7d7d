"""The loop's warm-up: the small prover learns to read Lean's message on its own failed attempt and write again.

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Section 3 and Appendix
A.2: the paper's attempts are agentic (write, compile, read, rewrite), and a pretrained prover already
knows how to use a compiler's output. A small prover built from scratch (sft.py) has only seen one-shot
attempts, so before `--turns N` can help it, it is fine-tuned on multi-turn attempts laid out exactly
as turns.rollout lays them out: its OWN first attempt at a fresh statement (sampled at temperature 1),
Lean's real message on it as a tool result, then the reference proof; sometimes a second wrong
candidate (a near miss of the reference, sft.corrupt) and its message first. The loss is on the last
candidate only: a wrong turn is context, never a target. FD's teacher must read feedback in such
contexts too, so a share of the examples also carry feedback in the prompt (the reference proof, or
the offline tutor's hints on the last wrong candidate), and a share are plain one-shot examples so
that the first turn keeps what it knew.

Two levers on the revision, both measured in the README: `--fresh` (with `--tries`) trains the second
turn toward the model's own other tries, right or not, so that a revision is at least a fresh try
without the rejected candidate; `--unlikely W` pushes the rejected candidate itself down at the next turn.

    python -m small_prover.sft_turns --out runs/small-prover-turns                 # from the small-prover preset (minutes)
    python -m small_prover.sft_turns --model runs/small-prover-turns --tries 8 --fresh --out runs/turns-fresh  # a second round
    python evaluate.py --model runs/small-prover-turns --turns 3 --k 1,3,16   # is 3 turns > 3 tries?
    python fd.py --model runs/small-prover-turns --turns 3            # FD over multi-turn attempts
"""
import dataclasses
import json
import os
import random
import time
from dataclasses import dataclass

import torch

import feedback
import lean_env
from fdlean import cli, lm, prompting, sampling, turns
from mini import tasks
from small_prover import sft


@dataclass
class Config:
    out: str = "runs/small-prover-turns"  # where the fine-tuned model goes
    model: str = "small-prover"   # the one-shot prover to start from (the preset, or a folder)
    n_tasks: int = 6000           # fresh training statements, one own first attempt each
    seed: int = 1                 # statements (seed 1: not the preset's), sampling, batch order
    steps: int = 600              # optimizer steps
    batch_size: int = 32          # examples per step
    lr: float = 3e-4              # peak learning rate (AdamW), cosine to 10% of it
    warmup: int = 20              # linear warmup steps
    weight_decay: float = 0.01    # on matrices only
    plain: float = 0.3            # share of one-shot examples: statement -> reference
    revise: float = 0.45          # share of multi-turn examples: failed attempt, Lean's message -> reference
    teacher: float = 0.25         # the same with feedback in the prompt (reference or tutor): FD's teacher
    second: float = 0.3           # share of multi-turn examples with a second wrong candidate before the reference
    tries: int = 1                # own attempts sampled per statement: when the first fails and a later one
                                  # is right, that one (the model's own proof) is the revision's target
    fresh: bool = False           # with --tries: where none is right, a revision's target is a later try other than
                                  # the rejected one, right or not: the second candidate learns a fresh try minus it
    unlikely: float = 0.0         # weight of the rejected candidate's unlikelihood where it would come again:
                                  # -log(1 - p(the same candidate | it was rejected)); 0: off
    level_mix: str = "0.6,0.3,0.1"  # training weights of levels 1, 2, 3
    max_len: int = 320            # longer examples are dropped
    bf16: bool = True             # bf16 autocast where the CPU computes bf16 natively (sft.native_bf16)
    threads: int = 2              # torch CPU threads


def own_attempts(policy, env, task_list, seed, tries=1):
    """The policy's attempts at every statement (temperature 1, `tries` each, task-major) and Lean's verdicts."""
    prompts = [prompting.encode(policy.tokenizer, t) for t in task_list for _ in range(tries)]
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for start in range(0, len(prompts), 256):
        samples += sampling.sample(policy, prompts[start:start + 256], 64, 1.0, 1.0, generator)
    results = env.check_many([(t, prompting.proof_text(s)) for t, s in zip([t for t in task_list for _ in range(tries)], samples)])
    return samples, results


def examples(s: Config, policy, env):
    """Encoded examples (ids, n_context, has_feedback) for sft.fit, and counts of what was built."""
    tok, rng = policy.tokenizer, random.Random(s.seed)
    mix = tuple(float(w) for w in s.level_mix.split(","))
    task_list = tasks.load("mini", split="train", n=s.n_tasks, seed=s.seed, cfg=tasks.Generation(mix=mix))
    samples, results = own_attempts(policy, env, task_list, s.seed, s.tries)
    own = {}  # task -> a right proof of its own, other than its first attempt (--fresh: or any other try)
    for i in range(len(task_list)):
        right = [prompting.proof_text(x) for x, r in zip(samples[i * s.tries + 1:(i + 1) * s.tries],
                                                 results[i * s.tries + 1:(i + 1) * s.tries]) if r.ok]
        first, *later = [prompting.proof_text(x) for x in samples[i * s.tries:(i + 1) * s.tries]]
        other = [text for text in later if text != first]
        if right or (s.fresh and other):
            own[i] = right[0] if right else other[0]
    samples, results = samples[::s.tries], results[::s.tries]
    # near misses for the second wrong candidate, checked by Lean in one batch
    seconds = {i: sft.corrupt(t, rng) for i, t in enumerate(task_list) if rng.random() < s.second}
    checked = dict(zip(seconds, env.check_many([(task_list[i], w) for i, w in seconds.items()])))
    sources = {"ground-truth": feedback.load("ground-truth"), "tutor": feedback.load("tutor")}
    words = lambda text: tok(" " + text.strip(), add_special_tokens=False)["input_ids"]
    out, counts = [], dict(plain=0, revise=0, teacher=0, two_wrong=0, own_correct=0, own_target=0)
    repeats = []  # (ids, n_context): a revision's context, then the rejected last candidate written again
    for i, (task, sample, result) in enumerate(zip(task_list, samples, results)):
        kind = rng.choices(["plain", "revise", "teacher"], [s.plain, s.revise, s.teacher])[0]
        counts["own_correct"] += result.ok
        if result.ok:
            kind = "plain"  # nothing to revise: the one-shot example keeps turn 1 what it was
        context, last, last_result = list(sample.ids), prompting.proof_text(sample), result
        last_ids = list(sample.ids)
        if kind != "plain" and i in seconds and not checked[i].ok:
            last_ids = words(seconds[i]) + [tok.eos_token_id]
            context += turns.tool_ids(tok, result) + last_ids
            last, last_result = seconds[i], checked[i]
            counts["two_wrong"] += 1
        fb = None
        if kind == "teacher":
            source = rng.choice(["ground-truth", "tutor"])
            fb = sources[source](task, last, last_result)
        prompt = prompting.encode(tok, task, fb)
        proof = own.get(i, task.solution) if kind == "revise" else task.solution  # the teacher reads the reference
        counts["own_target"] += proof is not task.solution
        target = words(proof) + [tok.eos_token_id]
        if kind == "plain":
            seq, n_context = prompt + target, len(prompt)
        else:
            context += turns.tool_ids(tok, last_result)
            seq, n_context = prompt + context + target, len(prompt) + len(context)
        if len(seq) <= s.max_len:
            out.append((seq, n_context, fb is not None))
            counts[kind] += 1
            if kind == "revise":
                repeats.append((prompt + context + last_ids, n_context))
    return out, counts, repeats


def repeat_loss(net, repeats):
    """Unlikelihood of writing a rejected candidate again: for each (ids, n_context), p = the probability of
    ids[n_context:] (the candidate Lean rejected, its end token included) after the context that shows it
    rejected; the loss -log(1 - p) is ~0 where a repeat is unlikely and grows without bound as p -> 1. The
    likelihood targets alone never say "not that one": the small prover wrote the rejected candidate again
    as often as a fresh try did."""
    logp, _ = lm.token_logprobs(net, [ids[:n] for ids, n in repeats], [ids[n:] for ids, n in repeats])
    seq = logp.float().sum(dim=1).clamp(max=-1e-6)       # log p of the whole candidate, < 0
    return -torch.log(-torch.expm1(seq)).mean()          # -log(1 - p), stable


def train(s: Config) -> str:
    torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)
    t0 = time.time()
    policy = lm.load(sft.resolve_model(s.model), device="cpu", dtype=torch.float32)
    env = lean_env.load("mini")
    encoded, counts, repeats = examples(s, policy, env)
    print(f"sft_turns: {len(encoded)} examples {counts}, data in {time.time() - t0:.0f} s")
    pad, rng = policy.tokenizer.pad_token_id, random.Random(s.seed + 2)
    extra = None
    if s.unlikely > 0 and repeats:   # a quarter batch of rejected candidates each step
        extra = lambda net, step: s.unlikely * repeat_loss(net, rng.sample(repeats, min(len(repeats), s.batch_size // 4)))
    log = sft.fit(policy.model, encoded, s, pad, extra)
    lm.save(policy, s.out)
    with open(os.path.join(s.out, "sft_turns.json"), "w") as f:
        json.dump({"settings": dataclasses.asdict(s), "from": policy.model.name_or_path, "counts": counts,
                   "examples": len(encoded), "seconds": round(time.time() - t0, 1), "log": log}, f)
    print(f"sft_turns: saved {s.out} after {time.time() - t0:.0f} s")
    return s.out


RULES = [(f, lambda v: v >= 1, "at least 1") for f in ("n_tasks", "steps", "batch_size", "warmup", "max_len", "threads",
                                                       "tries")]
RULES += [(f, lambda v: v >= 0, "0 or more") for f in ("plain", "revise", "teacher", "weight_decay", "unlikely")]
RULES += [("second", lambda v: 0 <= v <= 1, "between 0 and 1"), ("lr", lambda v: v > 0, "above 0")]


def main(argv=None):
    s = cli.parse(Config, argv, prog="sft_turns.py", description=__doc__.split("\n")[0])
    cli.check(s, RULES, "sft_turns.py")
    sft.check_level_mix(s.level_mix, "sft_turns.py")
    cli.new_folder(s.out, "sft_turns.py")
    if s.fresh and s.tries < 2:
        cli.fail(f"sft_turns.py: --fresh needs other tries to learn from: give --tries 2 or more (not {s.tries})")
    if not s.plain + s.revise + s.teacher > 0:
        cli.fail("sft_turns.py: --plain, --revise and --teacher are all 0: give one a positive share")
    with cli.user_errors(f"sft_turns.py: --model {s.model}", lm.ModelNotFound):
        lm.check_name(s.model)
        train(s)


if __name__ == "__main__":
    cli.main(main, "sft_turns.py", lambda: "Nothing is saved before the end: delete --out if it exists and run it again.")
