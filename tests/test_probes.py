"""probes.py: `python probes.py` writes the committed data/probes.jsonl byte for byte; the real Lean
accepts every reference proof and, in every group of mirror images, each of the group's answers on
exactly half its members (so a model that gives one answer whatever the statement scores 50%); every
rule has equal counts per side and no name, hypothesis type or goal that only one side has; no probe is
a test statement; by_rule scores sides, mean, balance and whole groups."""
import collections
import json

import pytest

import lean_env
from fdlean import cli
from mini import probes, tasks


@pytest.fixture(scope="module")
def loaded():
    return probes.load()


def parts(statement):
    """(hypothesis binders [(name, type)], goal) of a probe statement."""
    s = " ".join(statement.split())[:-len(":=")].strip()
    s = s.split(" ", 2)[2]  # drop `theorem NAME`
    binders = []
    while s.startswith("("):
        depth, end = 0, 0
        while end == 0 or depth:
            depth, end = depth + (s[end] == "(") - (s[end] == ")"), end + 1
        binders, s = binders + [s[1:end - 1]], s[end:].lstrip()
    assert s.startswith(": ")
    hyps = [tuple(x.strip() for x in b.split(" : ", 1)) for b in binders]
    hyps = [(n, t) for n, t in hyps if t not in ("Type", "Prop", "α → Prop", "α")]
    return hyps, s[2:]


def test_the_file_is_what_the_command_writes(tmp_path, capsys):
    out = tmp_path / "probes.jsonl"
    probes.main(["--out", str(out)])
    with open(probes.PROBES_PATH, "rb") as f:
        assert out.read_bytes() == f.read(), "data/probes.jsonl is stale: run `python probes.py`"
    assert "wrote 352 probes" in capsys.readouterr().out


def test_lean_accepts_each_answer_on_exactly_its_half_of_the_group(loaded):
    """One check_many call: every member of a group against every answer of that group."""
    groups = collections.defaultdict(list)
    for task, meta in loaded:
        groups[meta["pair"]].append(task)
    items, expected = [], []
    for members in groups.values():
        answers = sorted({t.solution for t in members})
        assert len(answers) == 2, members
        for task in members:
            for answer in answers:
                items.append((task, answer))
                expected.append(answer == task.solution)
    results = lean_env.load("mini").check_many(items)
    wrong = [(t.statement, a, r.status, r.messages[:1]) for (t, a), r, e in zip(items, results, expected) if r.ok != e]
    assert not wrong, wrong[:5]
    assert sum(expected) == len(loaded)  # every reference proof among them


def test_the_file_loads_and_names_itself(loaded):
    plain = tasks.read_jsonl(probes.PROBES_PATH)
    assert [t for t, _ in loaded] == plain
    assert 200 <= len(loaded) <= 400
    for k, (task, meta) in enumerate(loaded, 1):
        assert task.name == f"probe_{k:04d}" and task.statement.startswith(f"theorem {task.name} (")
        assert task.statement.endswith(":=") and task.level == 1 and task.solution
        assert meta["rule"] in probes.GROUPS and meta["pair"].startswith(meta["rule"] + "/")
    bodies = [t.statement.split(" ", 2)[2] for t, _ in loaded]
    assert len(set(bodies)) == len(bodies)
    assert len(loaded) == len({t.name for t, _ in loaded})
    assert {meta["rule"] for _, meta in loaded[:len(probes.GROUPS) * 4]} == set(probes.GROUPS)  # interleaved


def test_pairs_and_sides_are_balanced(loaded):
    by_pair, by_rule = collections.defaultdict(list), collections.defaultdict(collections.Counter)
    for _, meta in loaded:
        by_pair[meta["pair"]].append(meta["side"])
        by_rule[meta["rule"]][meta["side"]] += 1
    for pair, sides in by_pair.items():
        counts = collections.Counter(sides)
        assert len(counts) == 2 and len(set(counts.values())) == 1, (pair, counts)
    for rule, counts in by_rule.items():
        assert len(counts) == 2 and len(set(counts.values())) == 1, (rule, counts)
    assert set(by_rule) == set(probes.GROUPS)


def test_no_surface_feature_tells_the_side(loaded):
    """Within a rule, each side has the same multiset of hypothesis names, of hypothesis types, of goals,
    of name pools, letter sets and distractor places: only how they relate tells which answer is right."""
    features = collections.defaultdict(lambda: collections.defaultdict(collections.Counter))
    for task, meta in loaded:
        hyps, goal = parts(task.statement)
        f = features[meta["rule"]][meta["side"]]
        f.update(("name", n) for n, _ in hyps)
        f.update(("type", t) for _, t in hyps)
        f.update([("goal", goal), ("names", meta["names"]), ("world", meta["world"]),
                  ("distractor", meta["distractor"])])
    for rule, sides in features.items():
        a, b = sides.values()
        assert a == b, (rule, (a - b) + (b - a))
    pools = {meta["names"] for _, meta in loaded}
    assert pools == set(probes.STYLES)
    names = {n for task, _ in loaded for n, _ in parts(task.statement)[0]}
    assert {"h1", "h2", "h3", "ha", "hb", "hc", "h", "h'", "H", "hyp"} <= names
    assert {meta["world"] for _, meta in loaded} == {"prop", "first-order"}
    assert {meta["distractor"] for _, meta in loaded} == {"none", "before", "after"}


def test_no_probe_is_a_test_statement(loaded):
    test = {tasks.canonical(t.statement) for t in tasks.read_jsonl(tasks.TEST_PATH)}
    assert not [t.name for t, _ in loaded if tasks.canonical(t.statement) in test]


def test_by_rule():
    def probe(name, rule, pair, side):
        return (lean_env.Task(name=name, statement=f"theorem {name} (p : Prop) (h : p) : p :=", level=1),
                dict(rule=rule, pair=pair, side=side, names="numbered", world="prop", distractor="none"))
    made = [probe("a1", "and.elim", "g1", "left"), probe("a2", "and.elim", "g1", "right"),
            probe("a3", "and.elim", "g2", "left"), probe("a4", "and.elim", "g2", "right"),
            probe("b1", "app", "g3", "order-ab"), probe("b2", "app", "g3", "order-ba")]
    pass1 = {"a1": 1.0, "a2": 0.0, "a3": 0.5, "a4": 0.5, "b1": 0.75, "b2": 0.25}
    got = probes.by_rule(made, pass1)
    assert got["and.elim"] == dict(sides={"left": 0.75, "right": 0.25}, mean=0.5, balance=0.5,
                                   pair=(1.0 * 0.0 + 0.5 * 0.5) / 2, n=4)
    assert got["app"] == dict(sides={"order-ab": 0.75, "order-ba": 0.25}, mean=0.5, balance=0.5,
                              pair=0.75 * 0.25, n=2)
    partial = probes.by_rule(made, {"a1": 0.2, "a3": 0.6})  # a prefix: the unscored are left out
    assert partial["and.elim"]["sides"] == pytest.approx({"left": 0.4}) and partial["and.elim"]["balance"] == 0
    assert partial["and.elim"]["n"] == 2 and "app" not in partial
    assert probes.by_rule(made, pass1, key="names")["app"]["sides"] == {"numbered": 0.5}


def test_a_prior_scores_half_and_a_rule_all(loaded):
    """A model that always answers `.1`-style (the left side) vs one that knows the rule."""
    first = sorted({meta["side"] for _, meta in loaded if meta["rule"] == "and.elim"})[0]
    prior = {t.name: float(meta["side"] == first) for t, meta in loaded if meta["rule"] == "and.elim"}
    got = probes.by_rule(loaded, prior)["and.elim"]
    assert got["mean"] == 0.5 and got["balance"] == 1.0 and got["pair"] == 0.0
    rule = probes.by_rule(loaded, {t.name: 1.0 for t, _ in loaded})
    assert all(r["mean"] == 1.0 and r["balance"] == 0.0 and r["pair"] == 1.0 for r in rule.values())


def test_load_needs_the_metadata(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(dict(name="t", statement="theorem t (p : Prop) (h : p) : p :=", solution="h")) + "\n")
    with pytest.raises(ValueError, match="without rule, pair or side"):
        probes.load(str(bad))


def test_settings_have_help():
    helps = cli.field_help(probes.Config)
    assert all(helps.get(name) for name in ("out", "seed"))
