"""Exercise feedback: Lean's output as feedback, framed for the teacher's prompt (about 20 minutes; an estimate).

Paper: Feedback Distillation (Narozniak et al., arXiv 2605.30861), Section 3 (the teacher is the same
model with F(y) in its prompt) and the feedback-source ablations ("Lean FD": the compiler's output
is the feedback). The project's version is `frame` and `lean_feedback` in feedback.py.

Feedback reaches the teacher as a short block: a header line, then the text. The headers are the
project's, in feedback.TEMPLATES: a dict kind -> template with one "{text}" slot, for the kinds
"solution", "lean" and "hint" (use them: `from feedback import TEMPLATES` inside your function).

Write `frame(kind, text)`:
    in:  kind  "solution" | "lean" | "hint";  text  str
    out: str, TEMPLATES[kind] with the text, stripped of surrounding whitespace, in its slot

Write `lean_feedback(proof, ok, status, messages, limit=300)`, the "Lean FD" source:
    in:  proof     str, the attempt's proof text
         ok        bool, did Lean accept it
         status    str, Lean's verdict ("ok", "error", "timeout", "rejected", "crash")
         messages  list[str], Lean's messages, e.g. "1:0: error: Type mismatch ..."
         limit     int, the most characters of Lean output to keep
    out: str:
      - accepted: the proof itself, framed as "solution" (a correct attempt is its own best example)
      - rejected: Lean's output framed as "lean", where the output is
          * the messages, each stripped, joined by newlines, leaving out blank ones and the mini
            world's noise messages that contain "internal exception #3";
          * if none is left: "(no messages; status: STATUS)";
          * if longer than `limit` characters: its first `limit` characters, trailing whitespace
            removed, then " ..." (so the reader knows it was cut).

Check it:   python exercises/check.py feedback
"""


def frame(kind, text):
    raise NotImplementedError("write me: frame(kind, text) -> str")


def lean_feedback(proof, ok, status, messages, limit=300):
    raise NotImplementedError("write me: lean_feedback(proof, ok, status, messages, limit) -> str")
