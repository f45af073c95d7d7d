"""The paper's agentic attempt in miniature: write a proof, let Lean check it, read Lean's answer, write again.

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Section 3 and Appendix A.2.
The paper's attempts are one long generation in which the model writes a Lean file, compiles it,
reads the compiler's output and rewrites; the final file is the answer, and without these tools its
FD collapses. Here an attempt is up to N turns: the policy writes a candidate proof (ending with its
end token), Lean checks it, and unless Lean accepts it, Lean's message is appended to the context as
a tool result, after which the policy writes again. It stops at an accepted candidate or after N.
The answer is the last candidate: pass@k, GRPO's reward and train accuracy use it.

Tool-result tokens are context for student and teacher alike: never sampled, never in a loss, never in
the entropy (`Attempt.trained` marks the policy's own tokens, every turn's). N = 1 is the one-shot
attempt: the same samples as sampling.sample with the same generator (a test holds the two equal).

    attempts = rollout(policy, env, tasks, turns=3, max_new_tokens=64, generator=0)
    a = attempts[0]; a.answer, a.result.ok, a.turns, a.ids, a.trained

The small prover reads Lean's message in a compact form made of words it knows (`compact`), as a
Lean comment before a new `:=`, where its prompt template puts feedback: the environment checks each
candidate. A chat model drives the loop itself, as in the paper, calling tools (agent.py).

What reaches the model's context from Lean goes through prompting.as_text (tool_ids): a proof quoting `<eos>`
back through Lean's message tokenizes as text. The attempt itself (its tokens, what is trained on, the transcript a
critic reads) is attempt.py; a chat model's loop with the paper's tools is agent.py.
"""
import re

import torch

from fdlean import lean, prompting, sampling
from fdlean.attempt import (  # noqa: F401  (read as turns.X too)
    TRANSCRIPT_CHARS,
    Attempt,
    _plain,
    go_on,
    rows_of,
    safe_transcript,
    tool_blocks,
    transcript,
)

# ----------------------------------------------------------------------------- Lean's message, as a tool result

def compact(message: str, limit: int = 160) -> str:
    """One Lean message in few words, for a small model: the position and the application it sits
    in dropped, `has type ... but is expected to have type ...` as `has type ... but expected ...`,
    backticks and line breaks gone. What is left names the offending term and both types."""
    text = re.sub(r"^\s*\d+:\d+:\s*(error|warning):\s*", "", message)
    text = re.sub(r"\s+", " ", text).replace("`", "")
    text = re.sub(r"\s*\bin the application\b.*$", "", text)
    text = re.sub(r"^Application type mismatch: The (?:last )?argument\b ?", "", text)
    text = re.sub(r"^Application type mismatch: The last (.*?) argument has type", r"\1 has type", text)
    text = re.sub(r"^Type mismatch ", "", text)
    text = text.replace("but is expected to have type", "but expected")
    text = re.sub(r"^Invalid projection: .*? The expression (.*?) has type (.*?) which does not have the "
                  r"necessary form\.?", r"\1 has type \2 no field", text)
    text = re.sub(r"\.left\b", ".1", re.sub(r"\.right\b", ".2", text))  # Lean prints h.1 as h.left
    text = text.strip()
    return text if len(text) <= limit else text[:limit].rstrip() + " ..."


def lean_said(result, message: bool = True) -> str:
    """What the small prover reads after a rejected candidate: Lean's first real message, compacted;
    `status error` (or timeout, crash) where there is none or `message=False` (only that Lean refused)."""
    real = lean.real_messages(result) if message else []
    return compact(real[0]) if real else f"status {result.status}"


def tool_ids(tokenizer, result, message: bool = True) -> list[int]:
    """The ids appended after a rejected candidate of the small prover's loop (it ended with the
    policy's end token): ` /- error : MESSAGE -/ :=`, Lean's words where the prompt puts feedback,
    then a new `:=` for the next candidate. (A chat model's tool results: rollout_tools.) `error` and
    not `Lean:` because the small prover's word-level vocabulary has one and not the other. Lean's message
    can quote the candidate: it is tokenized as text (prompting.as_text), never as `<eos>` or another
    control token."""
    said = prompting.as_text(tokenizer, lean_said(result, message))
    return tokenizer(f" /- error : {said} -/ :=", add_special_tokens=False)["input_ids"]



# ----------------------------------------------------------------------------- the loop

def rollout(policy, env, tasks, prompts=None, turns: int = 1, max_new_tokens: int = 64, temperature: float = 1.0,
            top_p: float = 1.0, generator=None, clock=None, message: bool = True,
            limits: dict | None = None, tools: bool = False) -> list[Attempt]:
    """One attempt per task (repeat a task for several), all advanced together turn by turn: each turn
    samples a candidate for every attempt still going (one batched sampling.sample over the prompts
    plus what came before), Lean checks them in one batch, and the rejected ones get Lean's message.
    An attempt also stops when another turn could overflow the model's context. `prompts`: the
    students' prompt ids (default prompting.encode of each task). `generator` (seed, torch.Generator,
    or a list of them, one per attempt) fixes every turn's samples. `message=False`: the small prover
    is told only that Lean rejected a candidate, not why (what the message adds). `clock`: a
    checkpoint.Stopwatch, lapped at "sample" and "lean" (accumulated over the turns). `tools`: a chat model's
    agentic attempt instead (agent.py: `turns` is then 1, `max_new_tokens` the whole attempt's budget, `limits` its
    tools.Workspace settings, e.g. {"max_calls": 4}). An attempt our own code fails on (its text, its verdict) ends
    there; the others go on. Each attempt's `transcript` is set (at most TRANSCRIPT_CHARS characters)."""
    tok = policy.tokenizer
    prompts = prompts if prompts is not None else [prompting.encode(tok, t, tools=tools) for t in tasks]
    if isinstance(generator, int):
        generator = torch.Generator(policy.device).manual_seed(generator)
    if tools:
        from fdlean import agent  # a chat model's loop (and its tools) loads only where one calls tools
        return agent.rollout_tools(policy, env, tasks, prompts, max_new_tokens, temperature, top_p, generator, clock,
                                   **(limits or {}))
    attempts = [Attempt() for _ in tasks]
    going = list(range(len(tasks)))
    for turn in range(turns):
        contexts = [prompts[i] + attempts[i].ids for i in going]
        samples = sampling.sample(policy, contexts, max_new_tokens, temperature, top_p, rows_of(generator, going))
        if clock:
            clock.lap("sample")
        candidates = [_proof(s, tasks[i]) for s, i in zip(samples, going)]
        results = env.check_many([(tasks[i], c) for i, c in zip(going, candidates)])
        if clock:
            clock.lap("lean")
        still = []
        for i, s, c, r in zip(going, samples, candidates, results):
            a = attempts[i]
            a.turns += 1
            a.add(s.ids, True, s.entropy)
            a.candidates.append(c)
            a.results.append(r)
            a.truncated = s.truncated
            a.log.append(("model", s.text))   # what the critic reads: the generation as written
            if r.ok or turn == turns - 1:
                continue
            try:
                tool, said = tool_ids(tok, r, message), "Lean: " + lean.lean_output(r, 2000)
            except Exception:   # a verdict our code cannot render (e.g. a remote checker's odd message): it ends
                continue
            if go_on(policy, prompts[i], a, tool, max_new_tokens):
                a.log.append(("tool", said))   # for the critic: Lean's whole verdict, not the compact line
                still.append(i)
        going = still
        if not going:
            break
    for a in attempts:
        a.transcript = safe_transcript(a)
    return attempts


def _proof(sample, task) -> str:
    """prompting.proof_text, or "" (which Lean refuses) should it fail on this text: one attempt, not the batch."""
    try:
        return prompting.proof_text(sample, task)
    except Exception:
        return ""

