"""What the paper counts in a training step besides accuracy: distinct lemmas in correct proofs and
"epistemic" words in what the policy wrote.

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Figures 3-4 (FD finds more
distinct Mathlib lemmas in its correct proofs, cumulatively over steps, than GRPO) and Figure 13 (how
often the policy writes wait, hmm, perhaps, ...: ground-truth feedback removes them, critiques keep them).
fd.py and grpo.py log both per step (`distinct_lemmas`, cumulative; `epistemic_words`, per attempt).

    proof_metrics.lemmas(task, "fun h => Or.inr (and_comm.mp h)")   # {'Or.inr', 'and_comm'}
    proof_metrics.epistemic_words("Wait, maybe simp works. Let me check.")   # 3

A lemma is a global name the proof uses: an identifier that is not bound by the statement or the proof
(binders, `fun`, `intro`, `have`, `obtain` patterns, ...), not a keyword and not a tactic (the first word
of a tactic) and not a type (an undotted capitalised name); a trailing projection (`.mp`, `.1`, `.symm`, ...) is dropped. It reads the text, not Lean's
elaboration, so it is an estimate; the same rule for every method keeps the comparison fair.
Test: python -m pytest -q tests/test_proof_metrics.py
"""
import re

import lean_screen

EPISTEMIC = ("wait", "hmm", "perhaps", "maybe", "actually", "alternatively", "seems", "might", "likely", "check")
_EPISTEMIC = re.compile(r"\b(" + "|".join(EPISTEMIC) + r")\b", flags=re.I)

# a name as Lean reads it, dotted parts included, not itself a field after a `.` (as in `(f x).symm`)
_NAME = re.compile(rf"(?<![.{lean_screen.ID_REST}])@?({lean_screen.WORD}(?:\.{lean_screen.WORD}|\.[0-9]+)*)")
# words that bind the names after them, up to `=>`, `:=`, `:`, `,` or the line's end
_BINDER = re.compile(r"(?:\b(?:fun|intro|intros|rintro|have|let|obtain|set|rcases|cases|induction|with|generalizing)\b|λ)"
                     r"([^\n]*?)(?:=>|:=|\n|$)")
_STATEMENT_BINDER = re.compile(r"[({\[⦃]\s*([^(){}\[\]⦃⦄:]+?)\s*:")
_TACTIC_START = re.compile(rf"^\s*({lean_screen.WORD})", flags=re.M)   # after cutting at `by`, `;`, `<;>`, `·`
_PROJECTIONS = {"mp", "mpr", "symm", "trans", "elim", "left", "right", "le", "lt", "ne", "resolve_left",
                "resolve_right", "out", "some", "choose", "choose_spec", "1", "2"}
_NOT_LEMMAS = (lean_screen.TERM_KEYWORDS | lean_screen.SHORT_KEYWORDS | lean_screen.FORBIDDEN
               | {"this", "only", "using", "then", "else", "calc", "at", "with", "from", "fun", "λ", "_"})


def epistemic_words(text: str) -> int:
    return len(_EPISTEMIC.findall(text))


def _bound(statement: str, proof: str) -> set[str]:
    names = set()
    for group in _STATEMENT_BINDER.findall(statement.split(":=")[0]):
        names.update(group.split())
    for m in re.finditer(r"[∀∃]\s*([^,:]+)", statement):
        names.update(m.group(1).split())
    for part in _BINDER.findall(proof):
        part = re.sub(r":[^()]*\)", ")", part).split(":")[0]   # names, not their types: (x : T) y : T
        names.update(lean_screen.words(part))
    return names


def lemmas(task, proof: str) -> set[str]:
    """The global names a proof uses (see the module docstring)."""
    bound = _bound(task.statement, proof)
    tactics = set()
    if re.search(r"\bby\b", proof):
        tactics = {m.group(1) for m in _TACTIC_START.finditer(re.sub(r"\bby\b|<;>|;|·", "\n", proof))}
    found = set()
    for m in _NAME.finditer(proof):
        parts = m.group(1).split(".")
        if parts[0] in bound or parts[0] in _NOT_LEMMAS or parts[0] == task.name:
            continue
        while len(parts) > 1 and parts[-1] in _PROJECTIONS:
            parts.pop()
        name = ".".join(parts)
        if name not in tactics and not (len(parts) == 1 and name[0].isupper()):   # `Nat`, `Real`: types
            found.add(name)
    return found
