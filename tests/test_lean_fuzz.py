"""Seeded fuzzing of the mini world's checker with the real Lean: mutations of real proofs (inserted keywords, glued
suffixes, Unicode separators, comments, brackets), on true and false statements, with and without headers.
Invariants: no false statement is ever accepted; every item gets the same verdict batched as alone; nothing raises.
    Run: python -m pytest -q tests/test_lean_fuzz.py        (FUZZ_SEED=N FUZZ_N=M for other draws)"""
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import lean_env  # noqa: E402
from lean_env import Task  # noqa: E402

SCOPED = "def P : Prop := True\nsection\nvariable (P : Prop)\n"     # `P` is provable only if a proof escapes
NAMESPACED = "namespace N\ndef Q : Prop := True\nend N\nnamespace M\n"


def T(name, rest, header=""):
    return Task(name, f"theorem {name} {rest} :=", header=header)


TRUE = [  # (task, proofs that Lean accepts)
    (T("z_and", "(p q : Prop) (h1 : And p q) : And q p"), ["⟨h1.2, h1.1⟩", "And.symm h1", "And.intro h1.2 h1.1"]),
    (T("z_or", "(p q : Prop) (h : Or p q) : Or q p"), ["Or.elim h (fun hp => Or.inr hp) (fun hq => Or.inl hq)"]),
    (T("z_iff", "(p q : Prop) (h : Iff p q) (hq : q) : p"), ["h.mpr hq", "Iff.mpr h hq"]),
    (T("z_all", "(α : Type) (P : α → Prop) (h : ∀ x, P x) (a : α) : P a"), ["h a", "id (h a)"]),
    (T("z_scoped", "(h : P) : P", SCOPED), ["h", "id h"]),
    (T("z_ns", "(h : N.Q) : N.Q", NAMESPACED), ["h"]),
]
FALSE = [  # (task, tempting proofs: each would prove it if the checker could be fooled)
    (T("y_any", "(p q : Prop) (h1 : p) : q"), ["h1", "trivial", "absurd h1 h1", "False.elim h1"]),
    (T("y_false", ": False"), ["trivial", "False.elim trivial", "fun x => x"]),
    (T("y_orand", "(p q : Prop) (h1 : Or p q) : And p q"), ["⟨h1, h1⟩", "h1.elim id id", "And.intro h1 h1"]),
    (T("y_scoped", ": P", SCOPED), ["trivial", "True.intro"]),
    (T("y_ns", ": M.R", NAMESPACED + "def R : Prop := False\n"), ["trivial", "N.Q"]),
]
KEYWORDS = sorted(lean_env.FORBIDDEN) + ["fun", "in", "by", "at", "with", "let", "have", "show"]
GLUE = ["", " ", "λ", "·", "→", "⟨", "\n", "0b1", "0xf", "1e5", "«", "\u2028", ".", "_", "'"]
NOISE = ["\u2028", "\u2029", "\u0085", "\u00a0", "\ufeff", "\u200b", "\r", "\t", "--", "/-", "-/", "/- x -/", '"',
         "(", ")", "⟨", "⟩", "{", "}", "sorry", "end", "section", "#exit", "\udcff", "null", "{}", "\\", "»", "..."]


def mutate(rng, proof):
    for _ in range(rng.randint(1, 3)):
        i = rng.randint(0, len(proof))
        kind = rng.random()
        if kind < 0.4:
            piece = rng.choice(GLUE) + rng.choice(KEYWORDS) + rng.choice(GLUE)
        elif kind < 0.8:
            piece = rng.choice(NOISE)
        else:
            j = rng.randint(0, len(proof))
            piece = proof[min(i, j):max(i, j)]            # a repeated slice of the proof itself
        proof = proof[:i] + piece + proof[i:]
    return proof


def draw(seed, n):
    rng, items, false = random.Random(seed), [], []
    for _ in range(n):
        pool, is_false = (FALSE, True) if rng.random() < 0.5 else (TRUE, False)
        task, proofs = rng.choice(pool)
        proof = rng.choice(proofs)
        items.append((task, proof if rng.random() < 0.15 else mutate(rng, proof)))
        false.append(is_false)
    return items, false


def test_fuzzed_proofs_never_fool_the_checker_and_batching_never_changes_a_verdict():
    seed, n = int(os.environ.get("FUZZ_SEED", 0)), int(os.environ.get("FUZZ_N", 300))
    items, false = draw(seed, n)
    batched = lean_env.load("mini", workers=2).check_many(items)
    solo = lean_env.load("mini", workers=2, batch_size=1).check_many(items)   # one Lean process per item
    for (task, proof), is_false, b, s in zip(items, false, batched, solo):
        assert not (is_false and (b.ok or s.ok)), (task.statement, task.header, proof, b, s)
        assert (b.ok, b.status) == (s.ok, s.status), (task.statement, proof, b, s)
    by_status = {st: sum(r.status == st for r in batched) for st in ("ok", "error", "rejected", "crash", "timeout")}
    print(f"fuzz seed {seed}: {n} items, {sum(false)} on false statements; {by_status}")
    assert by_status["ok"] >= n // 20 and by_status["error"] >= n // 10, by_status   # Lean really judged many
