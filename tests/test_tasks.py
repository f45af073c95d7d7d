"""tasks.py and mini_world.py: the committed test split and fresh training tasks check with the real Lean;
`python tasks.py --write-test` writes the committed split byte for byte; training never repeats a test
statement; generation is deterministic, varied, and leveled as configured; JSONL loading fails loudly on
bad input."""
import collections
import itertools
import json
import os
import random
import re
import subprocess
import sys

import pytest

import lean_env
from mathlib import repl as lean_mathlib
from mini import tasks
from mini import world as mini_world

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PRELUDE_NAMES = {"fun", "absurd", "Or.inl", "Or.inr", "Or.elim", "False.elim", "Iff.intro", "Exists.elim"}
IDENT = re.compile(r"[^\s()⟨⟩,]+")


@pytest.fixture(scope="module")
def env():
    return lean_env.load("mini")


@pytest.fixture(scope="module")
def test_split():
    return tasks.load("mini", split="test")


@pytest.fixture(scope="module")
def train():
    return tasks.load("mini", split="train", n=3000, seed=11)


def shape(solution):
    """The proof with every name that is not a prelude name replaced by _: `⟨_ _.2, _.1⟩`."""
    return IDENT.sub(lambda m: m.group() if m.group() in PRELUDE_NAMES or m.group() == "=>"
                     else re.sub(r"^[^.]+", "_", m.group()), solution)


def test_committed_split_checks_with_lean(env, test_split):
    assert len(test_split) == 600
    assert collections.Counter(t.level for t in test_split) == {1: 300, 2: 200, 3: 100}
    assert [t.name for t in test_split] == [f"mini_test_{i:04d}" for i in range(1, 601)]
    results = env.check_many([(t, t.solution) for t in test_split])
    bad = [(t.statement, t.solution, r.messages) for t, r in zip(test_split, results) if not r.ok]
    assert not bad, bad[:3]
    # and the checker is not vacuous: a wrong proof fails
    t = test_split[0]
    assert not env.check(t, "Or.inl " + t.solution).ok


def test_fresh_train_tasks_check_with_lean(env):
    fresh = tasks.load("mini", split="train", n=400, seed=2024)
    results = env.check_many([(t, t.solution) for t in fresh])
    bad = [(t.statement, t.solution, r.messages) for t, r in zip(fresh, results) if not r.ok]
    assert not bad, bad[:3]


def test_split_is_what_the_documented_command_writes(tmp_path, monkeypatch, capsys):
    """`python tasks.py --write-test` regenerates data/mini_test.jsonl byte for byte: the split is the
    generator's output for a fixed seed, so a change to the generator that alters it shows here."""
    written = tmp_path / "mini_test.jsonl"
    committed = tasks.TEST_PATH
    monkeypatch.setattr(tasks, "TEST_PATH", str(written))
    tasks.main(["--write-test"])
    assert capsys.readouterr().out == f"wrote {written}\n"
    with open(committed, "rb") as a, open(written, "rb") as b:
        assert a.read() == b.read()


def test_command_line_shows_training_tasks_and_refuses_bad_settings(capsys):
    tasks.main(["--show", "2", "--seed", "3", "--mix", "0", "0", "1", "--first-order", "1"])
    want = tasks.load("mini", split="train", n=2, seed=3, cfg=tasks.Generation(mix=(0, 0, 1), first_order=1))
    assert capsys.readouterr().out == "".join(f"-- level 3\n{t.statement}\n  {t.solution}\n" for t in want)
    assert all("α" in t.statement for t in want)
    for argv, why in [(["--mix", "1", "2"], "three weights"), (["--mix", "1", "x", "1"], "--mix"),
                      (["--mix", "0", "0", "0"], "not all 0"), (["--first-order", "1.5"], "between 0 and 1"),
                      (["--show", "-1"], "0 or more")]:
        with pytest.raises(SystemExit) as e:
            tasks.main(argv)
        assert e.value.code == 2 and why in capsys.readouterr().err, argv


def test_the_generator_does_not_read_the_theorem_sets():
    """Imports go one way, lean_env <- mini_world <- tasks: the generator stands alone."""
    code = "import sys, mini.world; assert 'mini.tasks' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_canonical_form_ignores_names_and_order_only():
    a = "theorem t1 (p q : Prop) (h1 : And p q) (h2 : q → p) : p :="
    assert tasks.canonical(a) == tasks.canonical("theorem other (p q : Prop) (hb : q → p) (ha : And p q) : p :=")
    assert tasks.canonical(a) == tasks.canonical("theorem  t1 (p q : Prop)\n (H : And p q) (h : q → p) : p :=")
    assert tasks.canonical(a) != tasks.canonical("theorem t1 (p q : Prop) (h1 : And p q) (h2 : q → p) : q :=")
    assert tasks.canonical(a) != tasks.canonical("theorem t1 (p q : Prop) (h1 : And q p) (h2 : q → p) : p :=")
    assert tasks.canonical(a) != tasks.canonical("theorem t1 (q p : Prop) (h1 : And p q) (h2 : q → p) : p :=")


def test_train_never_repeats_a_test_statement(test_split, train):
    canon = {tasks.canonical(t.statement) for t in test_split}
    assert not [t for t in train if tasks.canonical(t.statement) in canon]
    # the filter is needed: the raw generator does hit test statements (level 1 is a small world)
    rng = random.Random(5)
    raw = [mini_world.make_task(rng, 1, rng.random() < 0.3, "x") for _ in range(1500)]
    assert sum(tasks.canonical(t.statement) in canon for t in raw) > 0


def test_deterministic_for_a_seed_across_processes():
    first = [(t.statement, t.solution) for t in itertools.islice(tasks.train_stream(seed=7), 50)]
    assert first == [(t.statement, t.solution) for t in tasks.load("mini", split="train", n=50, seed=7)]
    assert first != [(t.statement, t.solution) for t in tasks.load("mini", split="train", n=50, seed=8)]
    code = "from mini import tasks; import json; print(json.dumps([(t.statement, t.solution) for t in tasks.load('mini', " \
           "split='train', n=50, seed=7)]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT,
                         env={**os.environ, "PYTHONHASHSEED": "123"}).stdout
    assert [tuple(x) for x in json.loads(out)] == first


def test_names_are_unique_and_well_formed(train):
    assert len({t.name for t in train}) == len(train)
    assert all(t.name == f"mini_train_11_{i}" for i, t in enumerate(train))
    for t in train[:500]:
        assert t.statement.startswith(f"theorem {t.name} (") and t.statement.endswith(" :=")
        assert not set("∧∨¬↔∃") & set(t.statement + t.solution), t.statement   # application syntax only


def test_proofs_use_only_prelude_names_and_local_names(train):
    for t in train:
        declared = set(re.findall(r"[\w'₀-₉]+", t.statement))
        for tok in IDENT.findall(t.solution):
            if tok in PRELUDE_NAMES or tok == "=>":
                continue
            head, *fields = tok.split(".")
            assert head in declared | {""} or re.search(rf"fun [^=]*\b{re.escape(head)}(\s|$)", t.solution), (tok, t)
            assert all(f in ("1", "2", "mp", "mpr") for f in fields), (tok, t)


def test_variety(train):
    shapes = collections.Counter(shape(t.solution) for t in train)
    by_level = {lv: {shape(t.solution) for t in train if t.level == lv} for lv in (1, 2, 3)}
    assert len(by_level[1]) >= 8 and len(by_level[2]) >= 100 and len(by_level[3]) >= 200, \
        {lv: len(s) for lv, s in by_level.items()}
    assert shapes.most_common(1)[0][1] < 0.2 * len(train)        # no shape dominates
    hyp_names = [n for t in train for n in re.findall(r"\((\S+) : (?!Prop|Type|α)", t.statement)]
    numbered = sum(bool(re.fullmatch(r"h\d", n)) for n in hyp_names) / len(hyp_names)
    assert 0.4 < numbered < 0.85 and len(set(hyp_names)) >= 14
    assert len({re.search(r"\(([a-z ]+) : Prop\)", t.statement).group(1) for t in train if "Prop)" in t.statement
                and "α" not in t.statement}) >= 8                   # atom names vary
    assert any(" y, " in t.statement or "fun y =>" in t.statement for t in train)   # bound variable names vary
    unused = sum(any(n not in re.findall(r"[\w'₀-₉]+", t.solution)
                     for n in re.findall(r"\((\S+) : (?!Prop|Type|α)", t.statement)) for t in train)
    assert 0.08 < unused / len(train) < 0.35                    # some distractor hypotheses
    for lv in (1, 2, 3):
        level = [t for t in train if t.level == lv]
        assert 0.1 < sum("α" in t.statement for t in level) / len(level) < 0.3   # first-order at every level
    assert max(len(t.statement) for t in train) <= mini_world.Limits().max_chars
    assert max(len(re.findall(r"\((\S+) : (?!Prop|Type|α)", t.statement)) for t in train) <= 4
    for word in ("Or.elim", "Exists.elim", "absurd", "Iff.intro", "False.elim", ".mpr", "fun", "Or.inr"):
        assert any(word in t.solution for t in train), word


def test_level_mix_follows_the_setting(train):
    counts = collections.Counter(t.level for t in train)
    for lv, want in zip((1, 2, 3), tasks.Generation().mix):
        assert abs(counts[lv] / len(train) - want) < 0.04, counts
    only3 = tasks.load("mini", split="train", n=40, seed=1, cfg=tasks.Generation(mix=(0, 0, 1)))
    assert {t.level for t in only3} == {3}
    # harder levels have longer proofs
    mean_len = {lv: sum(len(t.solution) for t in train if t.level == lv) / counts[lv] for lv in (1, 2, 3)}
    assert mean_len[1] < mean_len[2] < mean_len[3], mean_len


def test_stream_levels_spec():
    """fd.py trains on "mini:1" by default: the spec keeps only the levels it names."""
    assert {t.level for t in itertools.islice(tasks.stream("mini:1", seed=3), 60)} == {1}
    two = collections.Counter(t.level for t in itertools.islice(tasks.stream("mini:2,3", seed=3), 200))
    assert set(two) == {2, 3} and two[2] > two[3]           # Config.mix's weights, renormalised
    assert {t.level for t in itertools.islice(tasks.stream("mini", seed=3), 100)} == {1, 2, 3}
    # resuming skips exactly what was used
    a = [t.statement for t in itertools.islice(tasks.stream("mini:1", seed=4), 10)]
    assert [t.statement for t in itertools.islice(tasks.stream("mini:1", seed=4, skip=6), 4)] == a[6:]
    for bad in ("mini:4", "mini:", "mini:one", "minis"):
        with pytest.raises(ValueError, match="mini:LEVELS"):
            tasks.stream(bad)


def test_jsonl_loader(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"name": "a1", "statement": "theorem a1 (p : Prop) (h : p) : p :=", "solution": "h"})
                    + "\n\n" + json.dumps({"name": "a2", "statement": "theorem a2 : True :=", "header": "import X",
                                           "level": 2}) + "\n")
    a1, a2 = tasks.load(f"jsonl:{good}")
    assert (a1.name, a1.solution, a1.header, a1.level) == ("a1", "h", "", 0)
    assert (a2.header, a2.level, a2.solution) == ("import X", 2, None)
    ok = json.dumps({"name": "b", "statement": "theorem b : True :="})
    for lines, why in [([ok, "{not json"], "bad JSON"),
                       ([ok, json.dumps({"statement": "c : True :="})], "no 'name'"),
                       ([ok, json.dumps({"name": "c", "statement": "theorem c : True"})], ":="),
                       ([ok, ok], "duplicate"),
                       ([ok, json.dumps({"name": "c", "statement": "theorem c : True :=", "level": "2"})], "integer"),
                       # statements that carry their own proof, or a second declaration, or a command
                       ([ok, json.dumps({"name": "c", "statement": "theorem c : True := trivial -- : False :="})],
                        "no other `:=`"),
                       ([ok, json.dumps({"name": "c", "statement": "theorem c : False /- x -/ :="})], "comments"),
                       ([ok, json.dumps({"name": "c", "statement": "theorem c : False\naxiom x : False :="})],
                        "`axiom` is not allowed"),
                       ([ok, json.dumps({"name": "c", "statement": "theorem c : False\n#exit :="})], "commands"),
                       ([ok, json.dumps({"name": "c", "statement": "theorem d : False :="})], "theorem c"),
                       ([ok, json.dumps({"name": "c", "statement": "theorem c : False endλ :="})], "`end`")]:
        bad = tmp_path / "bad.jsonl"
        bad.write_text("\n".join(lines) + "\n")
        with pytest.raises(ValueError, match=rf"bad\.jsonl, line 2: .*{re.escape(why)}"):
            tasks.load(f"jsonl:{bad}")
    with pytest.raises(ValueError, match="unknown task set"):
        tasks.load("minif2f")


def test_stream_cycles_a_jsonl_set_deterministically(tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text("".join(json.dumps({"name": f"t{i}", "statement": f"theorem t{i} : True :=",
                                        "solution": "trivial"}) + "\n" for i in range(5)))
    first = [t.name for t in itertools.islice(tasks.stream(f"jsonl:{path}", seed=1), 10)]
    again = [t.name for t in itertools.islice(tasks.stream(f"jsonl:{path}", seed=1), 10)]
    assert first == again
    assert sorted(first[:5]) == sorted(first[5:]) == [f"t{i}" for i in range(5)]  # whole epochs
    assert first[:5] != first[5:]  # reshuffled each epoch (fixed seed: this order is known to differ)


# ---- the published layouts, read unchanged (tests/data: records written for these tests in those layouts)
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
MINIF2F = os.path.join(DATA, "minif2f_deepseek.jsonl")     # DeepSeek-Prover's miniF2F layout: one object a line
WORKBOOK = os.path.join(DATA, "lean_workbook.json")         # LeanWorkbook's layout: one JSON array


def test_published_minif2f_jsonl_loads_unchanged():
    rows = [json.loads(line) for line in open(MINIF2F, encoding="utf-8")]
    assert all(r["formal_statement"].endswith(":= by\n") and "statement" not in r for r in rows)  # as published
    got = tasks.load(f"jsonl:{MINIF2F}")
    assert [t.name for t in got] == [r["name"] for r in rows]
    for t, r in zip(got, rows):
        assert t.statement == r["formal_statement"][:-len(" by\n")]          # only the `by` tail is cut
        assert t.statement.endswith(":=") and t.header == r["header"] and t.solution is None
    assert "\n  (h₂ : a * b = 21)" in got[1].statement                        # a statement over two lines stays so
    valid, test = tasks.load(f"jsonl:{MINIF2F}@valid"), tasks.load(f"jsonl:{MINIF2F}@test")
    assert [t.name for t in valid] == [r["name"] for r in rows if r["split"] == "valid"] != []
    assert [t.name for t in test] == [r["name"] for r in rows if r["split"] == "test"] != []
    with pytest.raises(ValueError, match=r"no tasks with split 'train' in .*minif2f_deepseek\.jsonl \(its splits: test, valid\)"):
        tasks.load(f"jsonl:{MINIF2F}@train")


def test_published_lean_workbook_json_array_loads_unchanged():
    rows = json.load(open(WORKBOOK, encoding="utf-8"))
    assert all("name" not in r and "header" not in r and r["formal_statement"].endswith("by sorry") for r in rows)
    got = tasks.load(f"jsonl:{WORKBOOK}")
    assert [t.name for t in got] == ["lean_workbook_3120", "lean_workbook_8847", "lean_workbook_plus_20311",
                                     "lean_workbook_plus_5207"]                 # from `theorem NAME`
    for t, r in zip(got, rows):
        assert t.statement.endswith(":=") and not t.statement.endswith(" :=  :=")
        assert t.statement == r["formal_statement"][:r["formal_statement"].rindex(":=") + 2]
        assert t.header == lean_mathlib.DEFAULT_HEADER and t.header.startswith("import Mathlib\n")
    assert got[0].statement.endswith("2 * a * b  :=")                            # `:=  by sorry`: two spaces
    # the solution is the first non-empty proof, as the text after `:=`; none when the list is empty
    assert got[0].solution == "by nlinarith [sq_nonneg (a - b)]"
    assert got[1].solution is None
    assert got[2].solution.startswith("by\n  have hxy : 0 < x * y := mul_pos hx hy\n  field_simp\n")
    assert got[3].solution == rows[3]["proof"][0]                                # already `by ...`: as it is
    plus = tasks.load(f"jsonl:{WORKBOOK}@lean_workbook_plus")
    assert [t.name for t in plus] == ["lean_workbook_plus_20311", "lean_workbook_plus_5207"]


def test_published_layouts_one_line_array_and_streaming(tmp_path):
    rows = json.load(open(WORKBOOK, encoding="utf-8"))
    one_line, as_jsonl = tmp_path / "wb_one_line.json", tmp_path / "wb.jsonl"
    one_line.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    as_jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    want = tasks.load(f"jsonl:{WORKBOOK}")
    assert tasks.load(f"jsonl:{one_line}") == want == tasks.load(f"jsonl:{as_jsonl}")
    # training (fd.py / grpo.py) reads the same spec through tasks.stream, split filter included
    seen = [t.name for t in itertools.islice(tasks.stream(f"jsonl:{WORKBOOK}@lean_workbook", seed=0), 6)]
    assert sorted(set(seen)) == ["lean_workbook_3120", "lean_workbook_8847"]
    assert {t.name for t in itertools.islice(tasks.stream(f"jsonl:{MINIF2F}@test", seed=2), 4)} == \
        {"mathd_numbertheory_411", "induction_sumodd_sq"}
    with pytest.raises(ValueError, match="no tasks with split 'nope'"):
        next(tasks.stream(f"jsonl:{MINIF2F}@nope", seed=0))
    # a file whose own name holds '@' is still read whole
    at = tmp_path / "mini@f2f.jsonl"
    at.write_text(open(MINIF2F, encoding="utf-8").read(), encoding="utf-8")
    assert len(tasks.load(f"jsonl:{at}")) == 4


def test_published_layouts_bad_records_name_file_and_line(tmp_path):
    rows = json.load(open(WORKBOOK, encoding="utf-8"))
    for bad_row, why in [({**rows[1], "formal_statement": "theorem lean_workbook_8847 (x : ℤ) : x = 5"}, "end with ':='"),
                         ({**rows[1], "formal_statement": "(x : ℤ) : x = 5 := by sorry"}, "theorem NAME"),
                         ({**rows[1], "proof": [3]}, "'proof' must be text"),
                         ({**rows[1], "split": 7}, "must be text"),
                         ({**rows[1], "formal_statement": rows[0]["formal_statement"]}, "duplicate name"),
                         ({**rows[1], "formal_statement": "theorem w (x : ℤ) : x = 5 := by simp -- :="}, "no other `:=`"),
                         ("just text", "JSON object")]:
        path = tmp_path / "wb.json"
        text = json.dumps([rows[0], bad_row, rows[2]], ensure_ascii=False, indent=2)
        path.write_text(text, encoding="utf-8")
        line = text.split("\n").index("  {", 2) + 1 if isinstance(bad_row, dict) else \
            next(n for n, x in enumerate(text.split("\n"), 1) if "just text" in x)
        with pytest.raises(ValueError, match=rf"wb\.json, line {line}: .*{re.escape(why)}"):
            tasks.load(f"jsonl:{path}")
    broken = tmp_path / "broken.json"
    broken.write_text('[\n  {"formal_statement": "theorem a : True := by sorry"},\n  {"formal_statement": \n]\n')
    with pytest.raises(ValueError, match=r"broken\.json, line 4: bad JSON"):
        tasks.load(f"jsonl:{broken}")
    unclosed = tmp_path / "unclosed.json"
    unclosed.write_text('[\n  {"formal_statement": "theorem a : True := by sorry"}\n  {"formal_statement": "x"}\n]')
    with pytest.raises(ValueError, match=r"unclosed\.json, line 3: bad JSON \(expected ','"):
        tasks.load(f"jsonl:{unclosed}")
    lines = open(MINIF2F, encoding="utf-8").read().split("\n")
    jsonl = tmp_path / "f2f.jsonl"
    jsonl.write_text("\n".join(lines[:2] + ['{"name": "x", "formal_statement": "theorem y : True := by\\n"}'] + lines[2:]))
    with pytest.raises(ValueError, match=r"f2f\.jsonl, line 3: statement of 'x': must start with `theorem x`"):
        tasks.load(f"jsonl:{jsonl}")
