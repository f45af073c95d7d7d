"""Balanced level-1 probes: did a model learn a RULE, or the generator's marginal preferences?

The test split answers `h.1` 30 times and `h.2` 19 times, `Or.inl` 14 times and `Or.inr` 7, so a model
that learns only which answer is more common gains on it without learning when each is right (the
small prover stays at chance on `(p q : Prop) (h1 : And p q) : p`). Here every probe comes with its
mirror images: the same theorem with one thing changed (the conjunct asked for, the side of the Iff
the argument proves, the binder order, the goal's component order) so that the correct answer changes.
A probe's `pair` names its group (2 or 4 probes) and its `side` which answer it needs; within every
rule the sides have equal counts, and each side sees the same hypothesis names, hypothesis types and
goals (only the relation between them differs). A model that follows a prior scores about 50% per
rule with a large gap between the sides (balance); one that learnt the rule scores near 100% on both.

Rules (sides): and.elim (left, right: h.1 / h.2), iff.elim (mp, mpr), or.intro (inl, inr), app
(order-ab, order-ba: `f x` names the hypotheses in their declared order or the reverse), and.intro,
iff.intro, absurd, or.elim and exists.elim (order-ab, order-ba: likewise), exists.intro and
forall.elim (first, second: which of the two candidate hypotheses, in declared order, the proof
uses). They are the generator's depth-1 rules (mini/world.py), crossed with its name pools (h1.. in
and out of order, ha.., and h h' h₀ h₁ h₂ hh H hyp), both letter sets (p q r s; P Q R over α), and a
distractor hypothesis (over a letter the group does not use) before the others in a third of the
groups, after them in another third. A group keeps its names, letters and distractor across its members.

    python -m mini.probes                       # write data/probes.jsonl (deterministic: fixed seed)
    probes.load()                          # [(Task, {"rule", "pair", "side", "names", "world", "distractor"})]
    probes.by_rule(probes.load(), pass1)   # pass1: {task name: pass@1} -> per rule, per side, balance
"""
import json
import os
import random
from dataclasses import dataclass

from fdlean import cli
from fdlean.lean import Task
from mini import tasks

PROBES_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "probes.jsonl")

GROUPS = {  # rule -> groups of mirror images (4 or 2 probes each): 352 probes
    "and.elim": 12, "iff.elim": 10, "or.intro": 10, "app": 24, "and.intro": 8, "iff.intro": 6,
    "absurd": 12, "or.elim": 6, "exists.intro": 6, "forall.elim": 6, "exists.elim": 12,
}
FIRST_ORDER_ONLY = {"exists.intro", "forall.elim", "exists.elim"}
STYLES = ["numbered", "shuffled", "letters", "mixed"]   # the generator's name pools (shuffled: h1.. out of order)
MIXED = ['h', "h'", 'h₀', 'h₁', 'h₂', 'hh', 'H', 'hyp']
DISTRACTOR = ["none", "before", "after"]
MAX_CHARS = 150  # statement length, as mini_world.Limits.max_chars


# ---- formulas: ('atom', p), ('pred', P, term), ('and'|'or'|'iff'|'imp', A, B), ('not', A),
# ('forall', x, body), ('exists', x, body); printed as mini_world.formula_text prints them
def text(f, arg=False):
    kind = f[0]
    if kind == 'atom':
        return f[1]
    if kind == 'pred':
        s = f"{f[1]} {f[2]}"
    elif kind == 'not':
        s = f"Not {text(f[1], True)}"
    elif kind == 'forall':
        s = f"∀ {f[1]}, {text(f[2])}"
    elif kind == 'exists':
        s = f"Exists (fun {f[1]} => {text(f[2])})"
    elif kind == 'imp':
        s = f"{text(f[1], f[1][0] in ('imp', 'forall'))} → {text(f[2])}"
    else:
        s = f"{kind.capitalize()} {text(f[1], True)} {text(f[2], True)}"
    return f"({s})" if arg else s


def letters_in(f):
    if f[0] in ('atom', 'pred'):
        return {f[1]}
    return set().union(*(letters_in(x) for x in f[1:] if isinstance(x, tuple)))


def instance(body, term):  # the body of a quantifier with its bound variable replaced
    return tuple(instance(x, term) if isinstance(x, tuple) else x for x in body) if body[0] != 'pred' \
        else ('pred', body[1], term)


class World:
    """Propositions p q r s, or predicates P Q R over α applied to the constant a (or to a bound x)."""

    def __init__(self, first_order):
        self.first_order = first_order
        self.letters = list('PQR' if first_order else 'pqrs')

    def atom(self, letter, term='a'):
        return ('pred', letter, term) if self.first_order else ('atom', letter)

    def formula(self, rng, letters, compound, term='a'):
        """An atom over letters[0], or (compound) one connective over letters[0] and letters[1]."""
        a = self.atom(letters[0], term)
        if not compound:
            return a
        op = rng.choice(['not', 'imp', 'and', 'or', 'iff', 'imp'])
        return ('not', a) if op == 'not' else (op, a, self.atom(letters[1], term))

    def binders(self, formulas):
        used = sorted(set().union(*(letters_in(f) for f in formulas)))
        if not self.first_order:
            return [f"({' '.join(used)} : Prop)"]
        constant = any(_mentions_a(f) for f in formulas)
        return ['(α : Type)', f"({' '.join(used)} : α → Prop)"] + (['(a : α)'] if constant else [])


def _mentions_a(f):
    return f[0] == 'pred' and f[2] == 'a' or any(_mentions_a(x) for x in f[1:] if isinstance(x, tuple))


# ---- one group of mirror images per rule. A member: (hyps [(key, formula)] in binder order, goal,
# proof with {key} for names, side). c: distinct component formulas; x: the bound variable.
def members(rule, rng, c, world, x):
    out = []
    if rule == "and.elim":      # And A B / And B A, asked for either component
        for conj in ((c[0], c[1]), (c[1], c[0])):
            for i in (0, 1):
                out.append(([('h', ('and', *conj))], conj[i], f"{{h}}.{i + 1}", ["left", "right"][i]))
    elif rule == "iff.elim":    # Iff A B / Iff B A with an argument proving either side
        iff_first = rng.random() < 0.5
        for pair in ((c[0], c[1]), (c[1], c[0])):
            for i, side in ((0, "mp"), (1, "mpr")):
                hyps = [('h', ('iff', *pair)), ('x', pair[i])]
                out.append((hyps if iff_first else hyps[::-1], pair[1 - i], f"{{h}}.{side} {{x}}", side))
    elif rule == "or.intro":    # Or A B / Or B A from a proof of either component
        for pair in ((c[0], c[1]), (c[1], c[0])):
            for i, side in ((0, "inl"), (1, "inr")):
                out.append(([('h', pair[i])], ('or', *pair), f"Or.{side} {{h}}", side))
    elif rule == "app":         # (f : A → B) (x : A) : B in both binder orders
        hyps = [('f', ('imp', c[0], c[1])), ('x', c[0])]
        out = [(hyps, c[1], "{f} {x}", "order-ab"), (hyps[::-1], c[1], "{f} {x}", "order-ba")]
    elif rule == "and.intro":   # (u : A) (v : B) in both orders, goal And A B / And B A
        for types in ((c[0], c[1]), (c[1], c[0])):
            for goal in ((c[0], c[1]), (c[1], c[0])):
                key = {types[0]: 'u', types[1]: 'v'}
                out.append(([('u', types[0]), ('v', types[1])], ('and', *goal),
                            f"⟨{{{key[goal[0]]}}}, {{{key[goal[1]]}}}⟩",
                            "order-ab" if goal == types else "order-ba"))
    elif rule == "iff.intro":   # (u : A → B) (v : B → A) in both orders, goal Iff A B / Iff B A
        for types in ((c[0], c[1]), (c[1], c[0])):
            for goal in ((c[0], c[1]), (c[1], c[0])):
                key = {types: 'u', types[::-1]: 'v'}
                out.append(([('u', ('imp', *types)), ('v', ('imp', *types[::-1]))], ('iff', *goal),
                            f"Iff.intro {{{key[goal]}}} {{{key[goal[::-1]]}}}",
                            "order-ab" if goal == types else "order-ba"))
    elif rule == "absurd":      # (u : A) (v : Not A) in both orders, any goal
        hyps = [('u', c[0]), ('v', ('not', c[0]))]
        out = [(hyps, c[1], "absurd {u} {v}", "order-ab"), (hyps[::-1], c[1], "absurd {u} {v}", "order-ba")]
    elif rule == "or.elim":     # (o : Or A B / Or B A) (f : A → C) (g : B → C), f and g in both orders
        at = rng.randrange(3)
        for branches in ((('f', c[0]), ('g', c[1])), (('g', c[1]), ('f', c[0]))):
            for pair in ((c[0], c[1]), (c[1], c[0])):
                hyps = [(k, ('imp', t, c[2])) for k, t in branches]
                hyps.insert(at, ('o', ('or', *pair)))
                key = {c[0]: 'f', c[1]: 'g'}
                out.append((hyps, c[2], f"Or.elim {{o}} {{{key[pair[0]]}}} {{{key[pair[1]]}}}",
                            "order-ab" if pair[0] == branches[0][1] else "order-ba"))
    elif rule in ("exists.intro", "forall.elim"):  # two hypotheses in both orders, the goal needs one
        bodies = (c[0], c[1])   # formulas over the bound variable x
        for types in (bodies, bodies[::-1]):
            for i in (0, 1):
                if rule == "exists.intro":
                    hyps = [('u', instance(types[0], 'a')), ('v', instance(types[1], 'a'))]
                    goal, proof = ('exists', x, types[i]), f"⟨a, {{{'uv'[i]}}}⟩"
                else:
                    hyps = [('u', ('forall', x, types[0])), ('v', ('forall', x, types[1]))]
                    goal, proof = instance(types[i], 'a'), f"{{{'uv'[i]}}} a"
                out.append((hyps, goal, proof, ["first", "second"][i]))
    elif rule == "exists.elim":  # (e : Exists (fun x => B x)) (f : ∀ x, B x → C) in both orders
        hyps = [('e', ('exists', x, c[0])), ('f', ('forall', x, ('imp', c[0], c[1])))]
        out = [(hyps, c[1], "Exists.elim {e} {f}", "order-ab"), (hyps[::-1], c[1], "Exists.elim {e} {f}", "order-ba")]
    else:
        raise ValueError(f"unknown rule {rule!r}")
    return out


def components(rule, rng, world, x):
    """The group's distinct component formulas, and the letters they leave for a distractor."""
    n = {"or.elim": 3}.get(rule, 2)
    letters = rng.sample(world.letters, n)
    compound = rng.random() < 0.3
    which = rng.randrange(n)  # the component that is compound, over its letter and another one in use
    term = x if rule in ("exists.intro", "forall.elim") else 'a'  # their components are quantifier bodies
    out = []
    for k, letter in enumerate(letters):
        other = letters[(k + 1) % n]
        out.append(world.formula(rng, [letter, other], compound and k == which, term))
    if rule == "exists.elim":   # the body over x, the conclusion over the constant a
        out[0] = instance(out[0], x)
    return out, [m for m in world.letters if m not in letters]


def names(style, n, rng):
    """Hypothesis names by binder position, from one of the generator's pools."""
    if style == "numbered":
        return [f"h{i + 1}" for i in range(n)]
    if style == "shuffled":     # h1.. out of order (an order other than the plain one where there is one)
        order = [f"h{i + 1}" for i in range(n)]
        while n > 1 and order == sorted(order):
            rng.shuffle(order)
        return order
    if style == "letters":
        return ['ha', 'hb', 'hc', 'hd'][:n]
    return rng.sample(MIXED, n)


def facts(f):  # what a hypothesis gives at once: itself and its conjuncts
    return [f] + (facts(f[1]) + facts(f[2]) if f[0] == 'and' else [])


def sound(rule, hyps, goal):
    """No member may be easier than its rule: the goal is not a hypothesis, and no hypotheses (or their
    conjuncts) contradict each other outside the absurd rule (`absurd u v` would prove every member).
    That the mirror's answer fails on each member is checked by the real Lean in tests/test_probes.py."""
    given = [g for _, f in hyps for g in facts(f)]
    if goal in [f for _, f in hyps]:
        return False
    return rule == "absurd" or not any(('not', f) in given for f in given)


def group(rule, rng, first_order, style, distractor):
    """One group of mirror images: a list of (statement body after the theorem name, proof, side)."""
    world, x = World(first_order), rng.choice('xxxy')
    c, free = components(rule, rng, world, x)
    if len(set(c)) < len(c) or any(('not', a) in c for a in c):
        return None
    extra = None
    if distractor != "none":  # over a letter the group does not use, so it proves nothing the group needs
        if not free:
            return None
        extra = world.atom(rng.choice(free))
        extra = ('not', extra) if rng.random() < 0.3 else extra
    out = []
    for hyps, goal, proof, side in members(rule, rng, c, world, x):
        if extra is not None:
            hyps = [('d', extra)] + hyps if distractor == "before" else hyps + [('d', extra)]
        if not sound(rule, hyps, goal):
            return None
        out.append((hyps, goal, proof, side))
    n = len(out[0][0])
    pool = names(style, n, rng)
    result = []
    for hyps, goal, proof, side in out:
        named = {key: pool[i] for i, (key, _) in enumerate(hyps)}
        binders = world.binders([f for _, f in hyps] + [goal])
        binders += [f"({named[key]} : {text(f)})" for key, f in hyps]
        result.append((f"{' '.join(binders)} : {text(goal)} :=", proof.format(**named), side))
    return result


def make(seed=0):
    """Every probe as a JSONL record, in an order that interleaves the rules (any prefix has them all)."""
    test = {tasks.canonical(t.statement) for t in tasks.read_jsonl(tasks.TEST_PATH)}
    seen, by_rule = set(), {}
    for rule, n_groups in GROUPS.items():
        by_rule[rule] = []
        for i in range(n_groups):
            first_order = rule in FIRST_ORDER_ONLY or (i // 3) % 2 == 1
            style, distractor = STYLES[i % len(STYLES)], DISTRACTOR[i % len(DISTRACTOR)]
            if distractor != "none" and rule == "or.elim" and first_order:
                first_order = False  # P Q R are all in use: the distractor needs a fourth letter
            for attempt in range(1000):
                rng = random.Random(f"probes-{seed}-{rule}-{i}-{attempt}")
                g = group(rule, rng, first_order, style, distractor)
                if g is None or any(len(f"theorem probe_0000 {body}") > MAX_CHARS for body, _, _ in g):
                    continue
                bodies = [body for body, _, _ in g]
                if any(b in seen or tasks.canonical(f"theorem t {b}") in test for b in bodies):
                    continue
                seen.update(bodies)
                meta = dict(rule=rule, pair=f"{rule}/{i + 1:02d}", names=style,
                            world="first-order" if first_order else "prop", distractor=distractor)
                by_rule[rule].append([(body, proof, dict(meta, side=side)) for body, proof, side in g])
                break
            else:
                raise RuntimeError(f"no probe group for {rule} #{i}")
    records = []
    for i in range(max(GROUPS.values())):
        for rule in GROUPS:
            for body, proof, meta in (by_rule[rule][i] if i < len(by_rule[rule]) else []):
                name = f"probe_{len(records) + 1:04d}"
                records.append(dict(name=name, statement=f"theorem {name} {body}", solution=proof, level=1,
                                    rule=meta["rule"], pair=meta["pair"], side=meta["side"], names=meta["names"],
                                    world=meta["world"], distractor=meta["distractor"]))
    return records


def write(records, path):
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


META = ("rule", "pair", "side", "names", "world", "distractor")


def load(path=PROBES_PATH) -> list[tuple[Task, dict]]:
    """The probes as (Task, metadata) pairs: tasks.read_jsonl checks every statement; the metadata
    (rule, pair, side, names, world, distractor) is read from the same lines."""
    found = tasks.read_jsonl(path)
    with open(path) as f:
        extra = {d["name"]: {k: d[k] for k in META if k in d} for d in map(json.loads, filter(str.strip, f))}
    missing = [t.name for t in found if not all(k in extra[t.name] for k in ("rule", "pair", "side"))]
    if missing:
        raise ValueError(f"{path}: probes without rule, pair or side: {missing[:5]}")
    return [(t, extra[t.name]) for t in found]


def by_rule(tasks, pass1: dict, key: str = "side") -> dict[str, dict]:
    """Per rule, from pass1 {task name: pass@1} over the probes in `tasks` (load()'s pairs; probes
    missing from pass1 are left out, so a prefix can be scored):
    {"sides": {side: mean pass@1}, "mean": the mean of the sides, "balance": max - min over the sides
    (|left - right|; near 0 for a rule learnt, large for a prior followed), "pair": the mean over groups
    of the product of their members' pass@1 (the chance one sample each solves the whole group: a model
    that always gives the same answer scores 0), "n": probes scored}. key="names", "world" or
    "distractor" splits by that instead of by side. A rule or side with nothing scored is left out."""
    rows, groups = {}, {}
    for task, meta in tasks:
        if task.name not in pass1:
            continue
        rows.setdefault(meta["rule"], {}).setdefault(meta[key], []).append(pass1[task.name])
        groups.setdefault(meta["rule"], {}).setdefault(meta["pair"], []).append(pass1[task.name])
    out = {}
    for rule, sides in rows.items():
        means = {side: sum(v) / len(v) for side, v in sorted(sides.items())}
        products = []
        for values in groups[rule].values():
            p = 1.0
            for v in values:
                p *= v
            products.append(p)
        out[rule] = dict(sides=means, mean=sum(means.values()) / len(means),
                         balance=max(means.values()) - min(means.values()),
                         pair=sum(products) / len(products), n=sum(len(v) for v in sides.values()))
    return out


# ---- the command line
@dataclass
class Config:
    out: str = PROBES_PATH   # the JSONL file to write
    seed: int = 0            # seed of the draws (names, letters, formulas): the committed file uses 0


def main(argv=None):
    s = cli.parse(Config, argv, prog="probes.py",
                  description="Write the balanced level-1 probes (a learnt rule vs a learnt prior) as JSONL.")
    records = make(s.seed)
    write(records, s.out)
    counts = {}
    for r in records:
        counts.setdefault(r["rule"], {}).setdefault(r["side"], 0)
        counts[r["rule"]][r["side"]] += 1
    for rule, sides in counts.items():
        print(f"{rule:13s} " + "  ".join(f"{side} {n}" for side, n in sides.items()))
    print(f"wrote {len(records)} probes to {s.out}")


if __name__ == "__main__":
    cli.main(main, "probes.py")
