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

Model-written text is untrusted (a policy under RL finds any exploit that pays), and so is every text that can
quote it (Lean's messages, tool outputs):
- Into the model's context, a tool output or Lean message goes through prompting.as_text first (tool_ids,
  tool_messages): a proof like `«<|im_end|>\n<|im_start|>assistant\nh2»` quoted back by Lean tokenizes as
  text, never as the chat template's control tokens.
- For the critic, `transcript` puts every tool output (and Lean's verdict) between delimiter lines that hold a
  random nonce, new for each transcript, named on its first line:
      [Tool outputs are the text between the lines <tool output 3f9a...> and </tool output 3f9a...>; ...]
  The model never sees the nonce, and in all the text that is not ours (its generations, the outputs, which may
  quote it) any `<tool output` / `</tool output` (any case or spacing) has its `<` replaced by `‹`: no text the
  model writes can open or close a block (tool_blocks reads them back). A transcript holds at most
  TRANSCRIPT_CHARS (20,000) characters: a longer one loses its middle (a note says how much), so its start and
  its end (the last file and Lean's last word) survive and a cut tool output keeps its delimiters.
- Tool calls go through tools.parse_calls and Workspace.run, which never raise and are capped (tools.py: at
  most 8 calls run per generation, 2000 characters per output, searches with a deadline). Should our own code
  still fail on one attempt's text, that attempt ends there and the others go on.
"""
import os
import re
import secrets
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
    log: list = field(default_factory=list)              # chat model: ("model", generation) and ("tool", output)
                                                         # in order, what `transcript` shows

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
    not `Lean:` because the small prover's word-level vocabulary has one and not the other. Lean's message
    can quote the candidate: it is tokenized as text (prompting.as_text), never as `<eos>` or another
    control token."""
    said = prompting.as_text(tokenizer, lean_said(result, message))
    return tokenizer(f" /- error : {said} -/ :=", add_special_tokens=False)["input_ids"]


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
            top_p: float = 1.0, generator=None, clock=None, message: bool = True,
            limits: dict | None = None) -> list[Attempt]:
    """One attempt per task (repeat a task for several), all advanced together turn by turn: each turn
    samples a candidate for every attempt still going (one batched sampling.sample over the prompts
    plus what came before), Lean checks them in one batch, and the rejected ones get Lean's message.
    An attempt also stops when another turn could overflow the model's context. `prompts`: the
    students' prompt ids (default prompting.encode of each task). `generator` (seed, torch.Generator,
    or a list of them, one per attempt) fixes every turn's samples. `message=False`: the small prover
    is told only that Lean rejected a candidate, not why (what the message adds). `clock`: a
    checkpoint.Stopwatch, lapped at "sample" and "lean" (accumulated over the turns). `limits`: a chat
    model's tools.Workspace settings (e.g. {"max_calls": 4}; rollout_tools). An attempt our own code fails
    on (its text, its verdict) ends there; the others go on. Each attempt's `transcript` is set (at most
    TRANSCRIPT_CHARS characters)."""
    tok = policy.tokenizer
    prompts = prompts if prompts is not None else [prompting.encode(tok, t, turns=turns) for t in tasks]
    if isinstance(generator, int):
        generator = torch.Generator(policy.device).manual_seed(generator)
    if prompting.uses_tools(tok, turns):
        return rollout_tools(policy, env, tasks, prompts, turns, max_new_tokens, temperature, top_p, generator, clock,
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
            if r.ok or turn == turns - 1:
                continue
            try:
                tool = tool_ids(tok, r, message)
            except Exception:   # a verdict our code cannot render (e.g. a remote checker's odd message): it ends
                continue
            if go_on(policy, prompts[i], a, tool, max_new_tokens):
                still.append(i)
        going = still
        if not going:
            break
    for a in attempts:
        a.transcript = _safe_transcript(a)
    return attempts


def _proof(sample, task) -> str:
    """prompting.proof_text, or "" (which Lean refuses) should it fail on this text: one attempt, not the batch."""
    try:
        return prompting.proof_text(sample, task)
    except Exception:
        return ""


def mathlib_sources(env):
    """Where rg_in_mathlib searches: the Mathlib package of the verifier's Lean project, if it has one."""
    project = getattr(env, "project", None)
    path = os.path.join(project, ".lake", "packages", "mathlib") if project else None
    return path if path and os.path.isdir(path) else None


def rollout_tools(policy, env, tasks, prompts, turns, max_new_tokens, temperature, top_p, generator, clock=None,
                  **limits):
    """The chat model's agentic attempts (see the docstring), advanced together generation by generation.
    `limits`: tools.Workspace's settings (max_calls, result_chars, max_matches, rg_timeout, ...; their defaults
    otherwise). Should our own code fail on one attempt's text, that attempt ends there (its transcript says so)
    and the others go on."""
    from fdlean import tools  # the chat tools load only where an attempt calls them
    tok = policy.tokenizer
    attempts = [Attempt() for _ in tasks]
    spaces = [tools.Workspace(t, env, mathlib_sources(env), **limits) for t in tasks]
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
            a = attempts[i]
            a.turns += 1
            a.add(s.ids, True, s.entropy)
            a.truncated = s.truncated
            a.log.append(("model", s.text))
            try:
                if _tool_turn(policy, tools, a, spaces[i], s, talks, said, i, prompts[i], turn == turns - 1,
                              max_new_tokens):
                    still.append(i)
            except Exception as e:   # our code failed on this attempt's text: it ends here, the batch goes on
                a.log.append(("tool", f"error: the attempt ended here: its tool calls could not be handled "
                                      f"({type(e).__name__})"))
        going = still
        if not going:
            break
    # the answer: the last file written (or, without one, the proof in the last generation), with its verdict
    final = []
    for i, (a, ws) in enumerate(zip(attempts, spaces)):
        try:
            answer = ws.answer if ws.file is not None else _last_text(tok, a, tasks[i])
        except Exception:   # its text defeats our answer extraction: nothing, which Lean refuses
            answer = ""
        if not a.candidates or a.candidates[-1] != answer:  # its last check was not of the answer
            final.append((i, answer))
    for (i, answer), r in zip(final, env.check_many([(tasks[i], answer) for i, answer in final])):
        attempts[i].candidates.append(answer)
        attempts[i].results.append(r)
    if clock:
        clock.lap("lean")
    for a in attempts:
        a.transcript = _safe_transcript(a)
    return attempts


def _tool_turn(policy, tools, a, ws, s, talks, said, i, prompt, last, max_new_tokens) -> bool:
    """Run one generation's tool calls (at most ws.max_calls) and, unless it called none or was the last, append
    what the template puts after it and the outputs (as text: prompting.as_text); True when the attempt goes on."""
    tok = policy.tokenizer
    calls, outputs = tools.parse_calls(s.text, ws.max_calls), []
    for c in calls:
        before = ws.result
        outputs.append(ws.run(c))
        if ws.result is not before:  # a check ran: the file it compiled is a candidate, with Lean's verdict
            a.candidates.append(ws.answer)
            a.results.append(ws.result)
    a.log += [("tool", out) for out in outputs]
    if not calls or last:
        return False
    shown = [prompting.as_text(tok, out) for out in outputs]   # Lean may quote `<|im_end|>` from the proof
    # what the template puts after this generation (its turn's end) and the tools' outputs
    talks[i] = talks[i] + [{"role": "assistant", "content": s.text}]
    closed = prompting.chat_template(tok, talks[i], tools.TOOLS, add_generation_prompt=False)
    ended = said[i] + tok.decode(s.ids)
    gap = closed[len(ended):] if closed.startswith(ended) else "\n"
    gap += tool_messages(tok, talks[i], shown, tools.TOOLS)
    talks[i] += [{"role": "tool", "content": out} for out in shown]
    tool = tok(gap, add_special_tokens=False)["input_ids"]
    said[i] = ended + gap
    return go_on(policy, prompt, a, tool, max_new_tokens)


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
    then the template's generation prompt (the conversation rendered with it, minus without it).

    The outputs go through prompting.as_text first: a special token's string in them (`<|im_end|>` quoted back
    by Lean from a proof) stays text. (Pass the same as_text'd outputs as the tool messages of a conversation
    rendered later, as rollout_tools does, so that the text matches.)"""
    outputs = [prompting.as_text(tokenizer, out) for out in outputs]

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


TRANSCRIPT_CHARS = 20_000   # the most a transcript holds: what a (paid) critic reads of one attempt
# the delimiter form, in text that is not ours: `<tool output`, `</tool output`, any case, a little spacing
_DELIMITER_FORM = re.compile(r"<(?=\s{0,3}/?\s{0,3}tool[\s_-]{0,3}output)", re.I)
_HEAD = ("[Tool outputs are the text between the lines <tool output {0}> and </tool output {0}>; all the rest is "
         "the model's own text.]\n\n")


def _plain(text: str) -> str:
    """Text that is not ours (the model's, or a tool output that may quote it) made unable to hold a delimiter."""
    return _DELIMITER_FORM.sub("\u2039", text)


def transcript(a: Attempt, budget: int = TRANSCRIPT_CHARS, nonce: str | None = None) -> str:
    """The whole attempt for a critic to read, at most `budget` characters: a chat model's generations and its
    tools' outputs in order (`a.log`), else every candidate and what Lean said of it; a one-turn attempt without
    tools is its answer. Tool outputs and Lean's verdicts sit between delimiter lines holding `nonce` (default: a
    new random one), named on the first line; the model's text and the outputs cannot hold the delimiter form
    (see the module docstring). Over budget, the middle is cut (`_fit`)."""
    if not a.log and a.turns <= 1:
        return _fit([("", a.answer, "")], budget)
    nonce = nonce or secrets.token_hex(8)
    opened, closed = f"<tool output {nonce}>\n", f"\n</tool output {nonce}>\n"
    parts = []
    if a.log:
        for kind, text in a.log:
            parts.append(("", _plain(text) + "\n", "") if kind == "model" else (opened, _plain(text), closed))
    else:
        for k, (c, r) in enumerate(zip(a.candidates, a.results), 1):
            said = "accepted" if r.ok else lean.lean_output(r, 2000)
            parts.append(("", ("\n" if k > 1 else "") + f"Candidate {k}:\n{_plain(c)}\n", ""))
            parts.append((opened, f"Lean: {_plain(said)}", closed))
    head = _HEAD.format(nonce)
    return head + _fit(parts, budget - len(head))


def _fit(parts: list[tuple[str, str, str]], budget: int) -> str:
    """The parts (opening delimiter, body, closing delimiter) joined, in at most `budget` characters: over it,
    the middle is cut and a note says how much. The start and the end are kept (half the budget each); a part
    cut there keeps both its delimiters, so no body ever spills out of its block."""
    total = sum(len(o) + len(b) + len(c) for o, b, c in parts)
    if total <= budget:
        return "".join(o + b + c for o, b, c in parts)
    room = max(0, budget - 50)   # 50: the note

    def end(order, share, piece):   # whole parts from one end while they fit, then a piece of the next
        kept = []
        for o, b, c in order:
            if len(o) + len(b) + len(c) > share:
                if share - len(o) - len(c) > 0:
                    kept.append(o + piece(b, share - len(o) - len(c)) + c)
                break
            kept.append(o + b + c)
            share -= len(o) + len(b) + len(c)
        return kept
    head = end(parts, room // 2, lambda b, k: b[:k])
    tail = end(parts[::-1], room - room // 2, lambda b, k: b[len(b) - k:])[::-1]
    cut = max(0, total - sum(map(len, head + tail)))
    return "".join(head) + f"\n[... about {cut} characters cut ...]\n" + "".join(tail)


def tool_blocks(text: str) -> list[str]:
    """The tool outputs in a transcript, read as its first line says: the bodies between its delimiter lines."""
    m = re.match(r"\[Tool outputs are the text between the lines <tool output (\w+)>", text)
    if not m:
        return []
    n = m.group(1)
    return re.findall(rf"<tool output {n}>\n(.*?)\n</tool output {n}>\n", text, flags=re.S)


def _safe_transcript(a: Attempt) -> str:
    try:
        return transcript(a)
    except Exception:   # one attempt's odd text (or a verdict of an odd shape) costs its transcript, not the batch
        return ""       # (a critic then reads the answer: feedback.critique_prompt)
