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
candidate. A chat model drives the loop itself, as in the paper: its prompt declares the three tools of
tools.py through its chat template, each turn is one generation whose tool calls (its own format,
e.g. Qwen's <tool_call> JSON) are run, their outputs appended in the template's tool role; it stops
when a generation calls no tool or after N generations. Its answer is the last file it wrote (checked
by Lean if its last check was not of that file; without any file, the proof in its last generation).
"""
import os
import re
from dataclasses import dataclass, field

import torch

from fdlean import lean, prompting, sampling


@dataclass
class Attempt:
    ids: list[int] = field(default_factory=list)        # everything after the prompt, in order: the
                                                         # candidates' sampled ids and the tool results
    trained: list[bool] = field(default_factory=list)   # per id: sampled by the policy (loss, entropy)
    entropy: list[float] = field(default_factory=list)  # per id: the policy's entropy there (0 at tool ids)
    candidates: list[str] = field(default_factory=list) # each turn's proof text, as given to Lean
    results: list = field(default_factory=list)         # Lean's verdict on each candidate
    truncated: bool = False                              # the last candidate ran out of tokens
    transcript: str = ""                                 # the whole attempt as text, for a critic to read
    turns: int = 0                                       # the policy's generations (the loop: its candidates)

    def add(self, ids: list[int], sampled: bool, entropy: list[float] | None = None):
        """Append a generation (sampled by the policy: trained on) or a tool result (context only)."""
        self.ids += ids
        self.trained += [sampled] * len(ids)
        self.entropy += entropy or [0.0] * len(ids)

    @property
    def answer(self) -> str:
        return self.candidates[-1]

    @property
    def text(self) -> str:  # feedback sources read the answer as `.text` (and `.truncated`)
        return self.answer

    @property
    def result(self):
        return self.results[-1]

    @property
    def n_sampled(self) -> int:
        return sum(self.trained)

    @property
    def sampled_ids(self) -> list[int]:  # what the policy wrote, every turn, without the tool results
        return [i for i, own in zip(self.ids, self.trained) if own]


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
    not `Lean:` because the small prover's word-level vocabulary has one and not the other."""
    return tokenizer(f" /- error : {lean_said(result, message)} -/ :=", add_special_tokens=False)["input_ids"]


# ----------------------------------------------------------------------------- the loop

def rows_of(generator, rows):
    """A list of generators (one per attempt: see sampling.next_tokens) follows its attempts into each turn."""
    return [generator[i] for i in rows] if isinstance(generator, (list, tuple)) else generator


def go_on(policy, prompt, attempt, tool, max_new_tokens) -> bool:
    """Append the tool result (context, never trained on) and say yes when the context still holds it and
    another whole generation; else the attempt ends here."""
    limit = getattr(policy.model.config, "max_position_embeddings", None) or 1 << 30
    if len(prompt) + len(attempt.ids) + len(tool) + max_new_tokens > limit:
        return False
    attempt.add(tool, False)
    return True


def rollout(policy, env, tasks, prompts=None, turns: int = 1, max_new_tokens: int = 64, temperature: float = 1.0,
            top_p: float = 1.0, generator=None, clock=None, message: bool = True) -> list[Attempt]:
    """One attempt per task (repeat a task for several), all advanced together turn by turn: each turn
    samples a candidate for every attempt still going (one batched sampling.sample over the prompts
    plus what came before), Lean checks them in one batch, and the rejected ones get Lean's message.
    An attempt also stops when another turn could overflow the model's context. `prompts`: the
    students' prompt ids (default prompting.encode of each task). `generator` (seed, torch.Generator,
    or a list of them, one per attempt) fixes every turn's samples. `message=False`: the small prover
    is told only that Lean rejected a candidate, not why (what the message adds). `clock`: a checkpoint.Stopwatch, lapped at "sample"
    and "lean" (accumulated over the turns)."""
    tok = policy.tokenizer
    prompts = prompts if prompts is not None else [prompting.encode(tok, t, turns=turns) for t in tasks]
    if isinstance(generator, int):
        generator = torch.Generator(policy.device).manual_seed(generator)
    if prompting.uses_tools(tok, turns):
        return rollout_tools(policy, env, tasks, prompts, turns, max_new_tokens, temperature, top_p, generator, clock)
    attempts = [Attempt() for _ in tasks]
    going = list(range(len(tasks)))
    for turn in range(turns):
        contexts = [prompts[i] + attempts[i].ids for i in going]
        samples = sampling.sample(policy, contexts, max_new_tokens, temperature, top_p, rows_of(generator, going))
        if clock:
            clock.lap("sample")
        candidates = [prompting.proof_text(s, tasks[i]) for s, i in zip(samples, going)]
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
            if r.ok or turn == turns - 1:
                continue
            tool = tool_ids(tok, r, message)
            if go_on(policy, prompts[i], a, tool, max_new_tokens):
                still.append(i)
        going = still
        if not going:
            break
    for a in attempts:
        a.transcript = transcript(a)
    return attempts


def mathlib_sources(env):
    """Where rg_in_mathlib searches: the Mathlib package of the verifier's Lean project, if it has one."""
    project = getattr(env, "project", None)
    path = os.path.join(project, ".lake", "packages", "mathlib") if project else None
    return path if path and os.path.isdir(path) else None


def rollout_tools(policy, env, tasks, prompts, turns, max_new_tokens, temperature, top_p, generator, clock=None):
    """The chat model's agentic attempts (see the docstring), advanced together generation by generation."""
    from fdlean import tools  # the chat tools load only where an attempt calls them
    tok = policy.tokenizer
    attempts = [Attempt() for _ in tasks]
    spaces = [tools.Workspace(t, env, mathlib_sources(env)) for t in tasks]
    talks = [prompting.chat_messages(t, tools=tools.TOOLS) for t in tasks]
    said = [prompting.render(tok, t, tools=tools.TOOLS) for t in tasks]  # the text so far, as rendered
    going = list(range(len(tasks)))
    for turn in range(turns):
        samples = sampling.sample(policy, [prompts[i] + attempts[i].ids for i in going], max_new_tokens,
                                  temperature, top_p, rows_of(generator, going))
        if clock:
            clock.lap("sample")
        still = []
        for i, s in zip(going, samples):
            a, ws = attempts[i], spaces[i]
            a.turns += 1
            a.add(s.ids, True, s.entropy)
            a.truncated = s.truncated
            a.transcript += s.text + "\n"
            calls, outputs = tools.parse_calls(s.text), []
            for c in calls:
                before = ws.result
                outputs.append(ws.run(c))
                if ws.result is not before:  # a check ran: the file it compiled is a candidate, with Lean's verdict
                    a.candidates.append(ws.answer)
                    a.results.append(ws.result)
            if not calls or turn == turns - 1:
                continue
            # what the template puts after this generation (its turn's end) and the tools' outputs
            talks[i] = talks[i] + [{"role": "assistant", "content": s.text}]
            closed = prompting.chat_template(tok, talks[i], tools.TOOLS, add_generation_prompt=False)
            ended = said[i] + tok.decode(s.ids)
            gap = closed[len(ended):] if closed.startswith(ended) else "\n"
            gap += tool_messages(tok, talks[i], outputs, tools.TOOLS)
            talks[i] += [{"role": "tool", "content": out} for out in outputs]
            a.transcript += "".join(f"[tool output]\n{out}\n" for out in outputs)
            tool = tok(gap, add_special_tokens=False)["input_ids"]
            said[i] = ended + gap
            if go_on(policy, prompts[i], a, tool, max_new_tokens):
                still.append(i)
        going = still
        if not going:
            break
    # the answer: the last file written (or, without one, the proof in the last generation), with its verdict
    final = []
    for i, (a, ws) in enumerate(zip(attempts, spaces)):
        answer = ws.answer if ws.file is not None else _last_text(tok, a, tasks[i])
        if not a.candidates or a.candidates[-1] != answer:  # its last check was not of the answer
            final.append((i, answer))
    for (i, answer), r in zip(final, env.check_many([(tasks[i], answer) for i, answer in final])):
        attempts[i].candidates.append(answer)
        attempts[i].results.append(r)
    if clock:
        clock.lap("lean")
    return attempts


# ---- the chat side: the text that feeds the tools' outputs back to the model
def tool_messages(tokenizer, conversation: list[dict], outputs: list[str], tools) -> str:
    """The text that follows the rendered `conversation` (its last message: the assistant's generated text, with
    its tool calls) so that the next assistant turn starts: the tools' outputs in the template's tool role, then
    the generation prompt. The next prompt is render(conversation) + this, where render is the chat template
    without generation prompt: earlier tokens never change, so one attempt stays one sequence.

    It is the template's own rendering, as a difference: conversation + tool messages with the generation prompt,
    minus the conversation alone. A template that rewrites earlier turns has no such difference (Qwen3 gives the
    last assistant turn a <think> block, empty if need be, that the turn loses once a tool message follows it);
    then the plain rendering: each output in <tool_response> tags (Qwen3's own wrapping) on lines of their own,
    then the template's generation prompt (the conversation rendered with it, minus without it)."""
    def render(messages, prompt):
        return prompting.chat_template(tokenizer, messages, tools, add_generation_prompt=prompt)
    before = render(conversation, False)
    after = render(conversation + [{"role": "tool", "content": out} for out in outputs], True)
    if after.startswith(before):
        return after[len(before):]
    opened = render(conversation, True)
    start = opened[len(before):] if opened.startswith(before) else ""
    return "".join(f"<tool_response>\n{out}\n</tool_response>\n" for out in outputs) + start


def _last_text(tok, a: Attempt, task) -> str:
    """The proof in the attempt's last generation: its ids after the last tool output."""
    start = len(a.trained) - next((k for k, own in enumerate(reversed(a.trained)) if not own), len(a.trained))
    return prompting.proof_text(tok.decode(a.ids[start:], skip_special_tokens=True), task)


def trained_mask(attempts, like):
    """(B, L) bool on `like`'s device, aligned with lm.attempt_hidden's attempt positions: True at
    the ids the policy sampled, False at tool-result ids and past each attempt's end."""
    mask = torch.zeros(like.shape, dtype=torch.bool)
    for b, a in enumerate(attempts):
        mask[b, :len(a.trained)] = torch.tensor(a.trained, dtype=torch.bool)
    return mask.to(like.device)


def transcript(a: Attempt) -> str:
    """The whole attempt for a critic to read: every candidate and what Lean said of it."""
    if a.turns == 1:
        return a.answer
    parts = []
    for k, (c, r) in enumerate(zip(a.candidates, a.results), 1):
        said = "accepted" if r.ok else lean.lean_output(r, 2000)
        parts.append(f"Candidate {k}:\n{c}\nLean: {said}")
    return "\n\n".join(parts)
