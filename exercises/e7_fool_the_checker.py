"""Exercise fool_the_checker: fool a weak proof checker, then see why the real one holds (about 15 minutes; an estimate).

Paper: Feedback Distillation (Narozniak et al., arXiv 2605.30861), the setting: the reward and the
"Lean" feedback both come from Lean's verdict, so a checker that can be fooled teaches the model to
fool it (reward hacking). The project's real checker is lean_env.py (with fdlean/screen.py in front):
read its module docstring, "How a batch is checked", after you try.

The theorem, in the mini world (mini/prelude.lean: a tiny Lean 4 library, no Mathlib, no tactics):

    theorem fool (p : Prop) : p :=

It says every proposition is true. No honest proof exists.

The WEAK checker (written in exercises/check.py, `weak_check`) accepts a proof when
    1. the proof text does not contain the word `sorry`, and
    2. Lean, run on the mini prelude + the theorem + your proof, reports no error.
(Many homemade checkers look only at errors, or only at the exit code.)

Write `fooling_proof()`:
    in:  nothing
    out: str, the proof text that follows ":=" (one line is enough)
It passes when the weak checker ACCEPTS your proof. The checker then runs the real one
(lean_env.load("mini")) on it, shows that it refuses, and explains why.
Hint: read the top of mini/prelude.lean. Lean treats some things as warnings, not errors.

Check it:   python exercises/check.py fool_the_checker      (runs the real Lean: a few seconds)
"""


def fooling_proof() -> str:
    raise NotImplementedError("write me: fooling_proof() -> the proof text after ':='")
