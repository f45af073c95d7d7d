"""A model's attempts at a task set, and what they hold: the records every evaluation is made of.

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Section 5: pass@1 on held-out
statements over training, the distinct lemmas in correct proofs (Figures 3-4) and the "epistemic" words a policy
writes (Figure 13). fd.py and grpo.py measure their held-out pass@1 with `heldout` and their steps with
`identifiers` and `epistemic_words`; evaluate.py turns the records into pass@k and the rest (evaluate.summarize).

    records = measure.sample_and_check(policy, env, tasks, n=16)   # one dict per attempt, task-major
    measure.heldout(policy, env, tasks, n=8)                        # each task's pass@1 estimate
"""
import json
import re

import torch
from tqdm.auto import tqdm

from fdlean import lm, parallel, prompting
from fdlean import turns as turns_lib

MAX_NEW_TOKENS = 64   # token budget per candidate: twice the longest mini:test reference proof
BATCH_SIZE = 64       # attempts sampled together
EPISTEMIC_WORDS = ("wait", "hmm", "perhaps", "maybe", "actually", "alternatively", "seems", "might",
                   "likely", "check")



@torch.no_grad()
def sample_and_check(policy, env, tasks, n=1, temperature=1.0, top_p=1.0, seed=0,
                     max_new_tokens=MAX_NEW_TOKENS, batch_size=BATCH_SIZE,
                     progress=False, turns=1, message=True, tools=False) -> list[dict]:
    """Sample n attempts per task (turns.rollout: one shot, the small prover's `turns` loop, or with `tools` a chat
    model's agentic attempt) and check them with Lean.

    Returns one record per attempt, task-major: {task (index into tasks), ok, status (Lean's verdict
    on the answer, the last candidate), text (that answer, as given to Lean), n_tokens (ids the
    policy sampled, every turn's end token included), entropy (mean over those tokens, nats),
    truncated, turns (generations), generated (what the policy wrote, every generation as written: the
    epistemic words are counted there, a reasoning model's "wait" included)}. One torch.Generator seeded with `seed` drives every
    batch, so (seed, batch_size) fix the samples. Under torchrun each process samples a contiguous share
    of the tasks (its generator seeded seed + rank) and every process gets all the records back. The
    policy is put back in the train/eval mode it was in."""
    was_training = policy.model.training
    policy.model.eval()
    mine = parallel.share(len(tasks))
    progress = progress and parallel.is_main()
    try:
        with lm.autocast(policy.device):   # bf16 matmuls on a GPU, as in training
            jobs = [i for i in mine for _ in range(n)]
            prompts = [prompting.encode(policy.tokenizer, t, tools=tools) for t in tasks]
            generator = torch.Generator(device=policy.device).manual_seed(seed + parallel.rank())
            records = []
            bar = tqdm(total=len(jobs), desc=f"held-out: {policy.name}", disable=not progress, leave=False)
            for start in range(0, len(jobs), batch_size):
                batch = jobs[start:start + batch_size]
                attempts = turns_lib.rollout(policy, env, [tasks[i] for i in batch], [prompts[i] for i in batch],
                                             turns, max_new_tokens, temperature, top_p, generator, message=message,
                                             tools=tools)
                for i, a in zip(batch, attempts):
                    entropy = [h for h, own in zip(a.entropy, a.trained) if own]
                    records.append(dict(task=i, ok=bool(a.result.ok), status=a.result.status, text=a.answer,
                                        n_tokens=a.n_sampled, truncated=bool(a.truncated), turns=a.turns,
                                        entropy=sum(entropy) / len(entropy) if entropy else float("nan"),
                                        candidates_ok=[bool(r.ok) for r in a.results[:a.turns]],
                                        first=a.candidates[0] if a.candidates else "",
                                        repeats=[c == p for p, c in zip(a.candidates, a.candidates[1:a.turns])],
                                        generated="\n".join(t for kind, t in a.log if kind == "model") or a.answer))
                bar.update(len(batch))
            bar.close()
    finally:
        policy.model.train(was_training)
    return parallel.gather(records)


def heldout(policy, env, tasks, n=8, max_new_tokens=MAX_NEW_TOKENS, turns=1, progress=False,
            tools=False) -> list[float]:
    """Per held-out task, the share of its n samples that Lean accepts (its pass@1 estimate), for the
    evaluations in fd.py and grpo.py. Temperature 1 and a fixed seed: every call during a run draws
    with the same random stream, so before and after differ by the model, not by luck, and the
    change can be paired task by task (intervals.paired_change)."""
    records = sample_and_check(policy, env, tasks, n=n, max_new_tokens=max_new_tokens, turns=turns, progress=progress,
                               tools=tools)
    return [sum(r["ok"] for r in records[i * n:(i + 1) * n]) / n for i in range(len(tasks))]


def pass1_per_task(attempts_file: str, n_tasks: int) -> list[float]:
    """Each task's share of accepted attempts (its pass@1 estimate) from an evaluation's attempts_K.jsonl."""
    ok, total = [0] * n_tasks, [0] * n_tasks
    with open(attempts_file) as f:
        for number, line in enumerate(f, 1):
            try:
                r = json.loads(line)
            except ValueError:
                raise ValueError(f"{attempts_file}, line {number}: not a JSON record (a cut-off evaluation?)") from None
            if not 0 <= r["task"] < n_tasks:
                raise ValueError(f"{attempts_file}, line {number}: task {r['task']} is not one of the {n_tasks} evaluated")
            ok[r["task"]] += bool(r["ok"])
            total[r["task"]] += 1
    if min(total, default=1) == 0:
        raise ValueError(f"{attempts_file}: task {total.index(0)} has no attempt (a cut-off evaluation?)")
    return [c / t for c, t in zip(ok, total)]



_NAME = re.compile(r"(?<![\w.'!?])[^\W\d][\w'!?]*(?:\.[\w'!?]+)*")
_KEYWORDS = {"fun", "λ", "let", "have", "show", "from", "by", "match", "with", "at", "if", "then",
             "else", "do", "in", "Prop", "Type", "Sort", "this", "theorem", "lemma", "sorry", "_",
             # common tactics, so that Mathlib tactic proofs count lemmas, not tactic names
             "exact", "apply", "intro", "intros", "rintro", "refine", "simp", "simp_all", "rw",
             "rfl", "omega", "linarith", "nlinarith", "norm_num", "ring", "ring_nf", "field_simp",
             "positivity", "decide", "constructor", "cases", "rcases", "obtain", "use", "induction",
             "aesop", "tauto", "calc", "specialize", "contradiction", "exfalso", "by_contra",
             "push_neg", "unfold", "only", "using", "left", "right", "assumption", "gcongr"}


def _local_names(statement: str, proof: str) -> set[str]:
    """Names bound locally (hypotheses, variables, fun/∀/∃/intro/have binders): not lemmas."""
    text = statement + "\n" + proof
    heads = re.findall(r"[(\[{⦃]\s*([^():\[\]{}]+?)\s*:", text)                # (h1 h2 : p)
    heads += re.findall(r"(?:\bfun|λ)\s(.*?)(?:=>|↦)", text)                       # fun ⟨a, b⟩ =>
    heads += re.findall(r"[∀∃]\s*(.*?),", text)                                     # ∀ (x : α) y,
    heads += re.findall(r"\|\s*(.*?)=>", text)                                      # | inl h =>
    heads += re.findall(r"\b(?:intros?|rintro|obtain|have|let)\s([^\n;]*?)(?::=|;|\n|$)", text)
    names = set()
    for head in heads:
        head = re.sub(r":.*", "", re.sub(r":[^()]*\)", ")", head))                   # drop types
        names.update(n for n in _NAME.findall(head) if "." not in n)   # a binder is never dotted
    return names


def identifiers(task, proof: str) -> set[str]:
    """Global constants a proof refers to (lemmas, constructors: Or.elim, absurd, Iff.intro ...):
    every name whose first component is not a local name (h1, h2.mp, x), keyword or tactic."""
    local = _local_names(task.statement, proof)
    return {name for name in _NAME.findall(proof)
            if name not in _KEYWORDS and name.split(".")[0] not in local}


def epistemic_words(text: str) -> int:
    """How many of EPISTEMIC_WORDS a text holds (the paper's Figure 13 counts them per step)."""
    return sum(w in EPISTEMIC_WORDS for w in re.findall(r"[a-z]+", text.lower()))


def normalize(proof: str) -> str:
    return " ".join(proof.split())

