"""data/textbook.jsonl: a second held-out set, hand-written logic-textbook theorems in the mini world's syntax
that the generator never produced. It loads; every reference proof checks with the real Lean and a mirrored
one fails; each level is the generator's depth measure of its proof; the proofs use only prelude names and
the mirror images of each rule in balance; no statement is one of the test split or of a generated sample."""
import collections
import os
import re

import pytest

import lean_env
from mini import tasks
from mini import world as mini_world

PATH = os.path.join(os.path.dirname(tasks.TEST_PATH), "textbook.jsonl")
PRELUDE_NAMES = {"fun", "absurd", "Or.inl", "Or.inr", "Or.elim", "False.elim", "Iff.intro", "Exists.elim"}
MIRRORS = [(r"\.[12]\b", ".1", ".2"), (r"\.mpr?\b", ".mp", ".mpr"), (r"Or\.in[lr]\b", "Or.inl", "Or.inr")]
SWAP = {a: b for _, x, y in MIRRORS for a, b in ((x, y), (y, x))}
TOKEN = re.compile(r"\s*(Or\.inl|Or\.inr|Or\.elim|Iff\.intro|False\.elim|Exists\.elim|\.mpr|\.mp|\.1|\.2|=>|[()⟨⟩,]"
                   r"|[^\s()⟨⟩,.]+)")
RULES = {'Or.inl': 'inl', 'Or.inr': 'inr', 'Iff.intro': 'iff_intro', 'Or.elim': 'or_elim',
         'Exists.elim': 'exists_elim', 'absurd': 'absurd', 'False.elim': 'false_elim'}
BRANCH = {'Or.elim': 1, 'Exists.elim': 2}  # binders of an elimination's `fun` argument: a branch, no depth


@pytest.fixture(scope="module")
def book():
    return tasks.read_jsonl(PATH)


def proof_tree(proof):
    """A printed proof read back into mini_world's proof tuples (what mini_world.proof_text prints), so that
    mini_world.proof_depth measures it as it measures a generated proof."""
    toks, i = TOKEN.findall(proof) + [None], 0

    def take():
        nonlocal i
        i += 1
        return toks[i - 1]

    def term(branch=0):
        if toks[i] == 'fun':
            take()
            binders = []
            while toks[i] != '=>':
                binders.append(take())
            take()
            body = term()
            for b in reversed(binders[branch:]):
                body = ('lam', b, body)
            return ('branch', binders[:branch], body) if branch else body
        head = atom()
        arity = BRANCH.get(head[1], 0) if head[0] == 'var' else 0
        args = []
        while toks[i] not in (None, ')', '⟩', ','):
            args.append(term(arity) if toks[i] == 'fun' else atom(arity))
        if not args:
            return head
        if head[0] == 'var' and head[1] in RULES:
            return (RULES[head[1]], *args)
        return ('app', head[1], head[2] + args) if head[0] == 'app' else ('app', head, args)

    def atom(branch=0):
        tok = take()
        if tok == '(':
            t = term(branch)
            assert take() == ')', proof
        elif tok == '⟨':  # ⟨a, b⟩: And.intro, Iff.intro or Exists.intro, one rule
            first = term()
            assert take() == ',', proof
            t = ('and_intro', first, term())
            assert take() == '⟩', proof
        else:
            t = ('var', tok)
        while toks[i] in ('.1', '.2', '.mp', '.mpr'):
            p = take()[1:]
            t = ('and_elim', t, int(p)) if p in '12' else ('iff_elim', t, p)
        return t

    t = term()
    assert toks[i] is None, (proof, toks[i:])
    return t


def level_of(proof):
    depth = mini_world.proof_depth(proof_tree(proof))
    return next(lv for lv, (lo, hi) in mini_world.DEPTHS.items() if lo <= depth <= hi)


def test_loads_with_unique_names_and_every_level(book):
    assert [t.name for t in book] == [f"textbook_{i:03d}" for i in range(1, len(book) + 1)]
    assert all(t.statement.startswith(f"theorem {t.name} (") and t.statement.endswith(" :=") for t in book)
    levels = collections.Counter(t.level for t in book)
    assert set(levels) == {1, 2, 3} and min(levels.values()) >= 25, levels
    assert {1, 2, 3} <= {t.level for t in book[:10]}   # interleaved: a prefix has every level
    assert not set("∧∨¬↔∃") & set("".join(t.statement + t.solution for t in book))   # application syntax only


def test_every_reference_proof_checks_with_lean_and_a_mirrored_one_fails(book):
    def mirrored(s):  # the first projection or injection turned into its mirror image: a wrong proof
        m = re.search("|".join(p for p, _, _ in MIRRORS), s)
        return m and s[:m.start()] + SWAP[m.group()] + s[m.end():]
    wrong = [(t, mirrored(t.solution)) for t in book if mirrored(t.solution)]
    assert len(wrong) > len(book) // 2
    results = lean_env.load("mini").check_many([(t, t.solution) for t in book] + wrong)
    bad = [(t.statement, t.solution, r.messages) for t, r in zip(book, results) if not r.ok]
    assert not bad, bad[:3]
    accepted = [(t.statement, w) for (t, w), r in zip(wrong, results[len(book):]) if r.ok]
    assert not accepted, accepted[:3]


def test_levels_are_the_generators_depth_measure(book):
    generated = tasks.load("mini", split="test")   # the reader agrees with the generator on its own proofs
    assert all(level_of(t.solution) == t.level for t in generated)
    wrong = [(t.name, t.solution, t.level, level_of(t.solution)) for t in book if level_of(t.solution) != t.level]
    assert not wrong, wrong


def test_proofs_use_only_prelude_names_and_local_names(book):
    for t in book:
        declared = set(re.findall(r"[\w'₀-₉]+", t.statement))
        bound = set(re.findall(r"fun ([^=]*)=>", t.solution))
        local = declared | {n for b in bound for n in b.split()}
        for tok in re.findall(r"[^\s()⟨⟩,]+", t.solution):
            head, *fields = tok.split(".")
            assert tok in PRELUDE_NAMES | {"=>"} or head in local | {""}, (tok, t.name)   # "": `(h x).1`
            assert tok in PRELUDE_NAMES or all(f in ("1", "2", "mp", "mpr") for f in fields), (tok, t.name)


def test_mirror_images_in_balance(book):
    """Per pair, the solutions whose last projection (or injection) is each side: within a factor 1.5."""
    for pattern, a, b in MIRRORS:
        last = collections.Counter(re.findall(pattern, t.solution)[-1] for t in book if re.search(pattern, t.solution))
        n_a, n_b = last[a], last[b]
        assert min(n_a, n_b) >= 10 and max(n_a, n_b) <= 1.5 * min(n_a, n_b), (a, n_a, b, n_b)


def test_held_out_from_the_test_split_and_generated_tasks(book):
    mine = collections.Counter(tasks.canonical(t.statement) for t in book)
    assert max(mine.values()) == 1                       # no two theorems the same up to names
    test = {tasks.canonical(t.statement) for t in tasks.load("mini", split="test")}
    train = {tasks.canonical(t.statement) for t in tasks.load("mini", split="train", n=3000, seed=0)}
    assert not set(mine) & test
    assert not set(mine) & train
