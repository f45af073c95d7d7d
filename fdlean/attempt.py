"""One attempt: the policy's tokens and the tool results between them, which of them are trained on, and the
transcript a critic reads.

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Section 4.1: an attempt is one
generation in which tool outputs are appended to the context; a critic reads the whole attempt. Tool-result tokens
are context for student and teacher alike: never sampled, never in a loss, never in the entropy (`Attempt.trained`
marks the policy's own tokens; lm.attempt_hidden makes them the mask of the losses). turns.py and agent.py fill it.

Model-written text is untrusted (a policy under RL finds any exploit that pays), and so is every text that can
quote it (Lean's messages, tool outputs). For the critic, `transcript` puts every tool output (and Lean's
verdict) between delimiter lines that hold a random nonce, new for each transcript, named on its first line:
    [Tool outputs are the text between the lines <tool output 3f9a...> and </tool output 3f9a...>; ...]
The model never sees the nonce, and in all the text that is not ours (its generations, the outputs, which may
quote it) any `<tool output` / `</tool output` (any case or spacing) has its `<` replaced by `‹`: no text the
model writes can open or close a block (tool_blocks reads them back). A transcript holds at most TRANSCRIPT_CHARS
(20,000) characters: a longer one loses its middle (a note says how much), so its start and its end (the last
file and Lean's last word) survive and a cut tool output keeps its delimiters.
"""
import re
import secrets
from dataclasses import dataclass, field


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
    log: list = field(default_factory=list)              # ("model", generation as written) and ("tool", output)
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



TRANSCRIPT_CHARS = 20_000   # the most a transcript holds: what a (paid) critic reads of one attempt
# the delimiter form, in text that is not ours: `<tool output`, `</tool output`, any case, a little spacing
_DELIMITER_FORM = re.compile(r"<(?=\s{0,3}/?\s{0,3}tool[\s_-]{0,3}output)", re.I)
_HEAD = ("[Tool outputs are the text between the lines <tool output {0}> and </tool output {0}>; all the rest is "
         "the model's own text.]\n\n")


def _plain(text: str) -> str:
    """Text that is not ours (the model's, or a tool output that may quote it) made unable to hold a delimiter."""
    return _DELIMITER_FORM.sub("\u2039", text)


def transcript(a: Attempt, budget: int = TRANSCRIPT_CHARS, nonce: str | None = None) -> str:
    """The attempt as generated, for a critic to read, in at most `budget` characters: the policy's generations as
    written (a reasoning model's thinking included) and the tools' outputs (a chat model's, or Lean's verdict between
    the small prover's candidates) in order (`a.log`; an attempt without one: its answer). Tool outputs sit between
    delimiter lines holding `nonce` (default: a new random one), named on the first line; the model's text and the
    outputs cannot hold the delimiter form (see the module docstring). Over budget, the middle is cut (`_fit`).
    The final Lean output is not in it: the critic's prompt gives it apart (feedback.critique_prompt)."""
    log = a.log or [("model", a.answer)]
    if all(kind == "model" for kind, _ in log):   # no tool output: the generations alone, no delimiters needed
        return _fit([("", "\n".join(text for _, text in log), "")], budget)
    nonce = nonce or secrets.token_hex(8)
    opened, closed = f"<tool output {nonce}>\n", f"\n</tool output {nonce}>\n"
    parts = [("", _plain(text) + "\n", "") if kind == "model" else (opened, _plain(text), closed) for kind, text in log]
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


def safe_transcript(a: Attempt) -> str:
    try:
        return transcript(a)
    except Exception:   # one attempt's odd text (or a verdict of an odd shape) costs its transcript, not the batch
        return ""       # (a critic then reads the answer: feedback.critique_prompt)
