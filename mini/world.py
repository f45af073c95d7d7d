"""The mini world's theorem generator: propositional and simple first-order logic in plain Lean 4 core
syntax (`And p q`, `Or p q`, `Not p`, `Iff p q`, `→`, `∀ x, ...`, `Exists (fun x => P x)`), with term-mode
reference proofs that use only the mini prelude's names.

A task is generated backwards from a random goal, as a natural-deduction proof read from the bottom
up: each step picks an introduction rule for the goal's shape or an elimination rule that ends in it,
and every leaf left open becomes a hypothesis of the theorem. Difficulty is the depth of the reference
proof term: level 1 is depth 1, level 2 depth 2, level 3 depth 3-4 (deeper levels were far beyond a
few-million-parameter model).

    make_task(random.Random(0), level=2, first_order=False, name="t")   # one Task with its solution
"""
from dataclasses import dataclass

from fdlean.lean import Task

DEPTHS = {1: (1, 1), 2: (2, 2), 3: (3, 4)}  # proof depth per level: deeper was unsolvable for a small model


@dataclass(frozen=True)
class Limits:
    """What one generated theorem may look like."""
    distractor: float = 0.2          # chance of one hypothesis the proof does not use
    max_hyps: int = 4                # hypotheses of the theorem
    max_chars: int = 150             # statement length limit
    max_size: int = 4                # connectives in one hypothesis or goal: no towers of Iff


# ---- formulas and proofs, as nested tuples tagged by their first element.
# Formulas: ('atom', i) a proposition, ('pred', i, t) a predicate applied to a term t of α,
# ('and'|'or'|'iff'|'imp', A, B), ('not', A), ('false',), and ('forall', B) / ('exists', B) where B
# mentions the bound variable BOUND (quantifiers do not nest).
# Proofs: ('var', v); ('app', head, [args]) an application (modus ponens, ∀-elimination);
# ('and_elim', h, 1|2) prints h.1 / h.2; ('iff_elim', h, 'mp'|'mpr') prints h.mp / h.mpr and is the
# head of an application; ('and_intro', a, b); ('inl'|'inr', a); ('iff_intro', a, b); ('lam', v, body)
# the introduction of → ¬ ∀; ('exists_intro', witness, p); ('or_elim', h, left, right);
# ('exists_elim', h, branch); ('absurd', a, not_a); ('false_elim', f). An elimination's branch
# ('branch', [binders], body) prints as `(fun ha => body)` and adds no depth.
BOUND = '#'


class Var:
    """A variable. kind: 'hypothesis' (of the theorem), 'assumption' (bound by a `fun` in the proof),
    'term' (a bound variable of type α), 'constant' (of type α). type: the formula an assumption or
    hypothesis proves."""

    def __init__(self, kind, type=None, name=None):
        self.kind, self.type, self.name = kind, type, name


class DeadEnd(Exception):  # the draw cannot be completed: the caller draws a new task
    pass


def walk(t):  # every node of a formula or proof, variables included
    yield t
    for x in t if isinstance(t, list) else t[1:] if isinstance(t, tuple) else ():
        yield from walk(x)


def substitute(f, old, new):
    return new if f == old else tuple(substitute(x, old, new) for x in f) if isinstance(f, tuple) else f


def mentions(f, v):
    return any(x is v for x in walk(f))


def quantified(f):
    return any(isinstance(x, tuple) and x[0] in ('forall', 'exists') for x in walk(f))


def apply(f, x):  # spines stay flat (`h a ha`): one application step
    return ('app', f[1], f[2] + [x]) if f[0] == 'app' else ('app', f, [x])


class TheoremBuilder:
    """Builds one theorem backwards from its goal. prove() gives a proof in normal form: introductions
    on top, then neutral terms (a hypothesis followed by eliminations, built by neutral())."""

    def __init__(self, rng, first_order, max_hyps):
        self.rng, self.first_order, self.max_hyps = rng, first_order, max_hyps
        self.n_atoms = rng.choice([2, 3]) if first_order else rng.choice([2, 3, 3, 4])
        self.constants = [Var('constant', name='a')]
        self.hyps, self.used = [], set()

    def atom(self, terms):
        if self.first_order:
            return ('pred', self.rng.randrange(self.n_atoms), self.rng.choice(terms))
        return ('atom', self.rng.randrange(self.n_atoms))

    def formula(self, size, terms):
        if size == 0:
            return self.atom(terms)
        op = self.rng.choice(['and', 'or', 'imp', 'iff', 'not', 'and', 'imp'])
        if op == 'not':
            return ('not', self.formula(size - 1, terms))
        a, b = self.formula(size - 1, terms), self.atom(terms)
        while b == a:
            b = self.atom(terms)
        return (op, a, b) if self.rng.random() < 0.5 else (op, b, a)

    def goal(self):
        if self.first_order and self.rng.random() < 0.6:
            body = self.formula(self.rng.choice([0, 1, 1]), [BOUND])
            quantifier = self.rng.choice(['forall', 'exists', 'exists', 'not_exists'])
            return ('not', ('exists', body)) if quantifier == 'not_exists' else (quantifier, body)
        return self.formula(self.rng.choice([0, 1, 1, 2]), self.constants)

    def terms(self, context):  # terms of α to build formulas from: bound ones when there are any
        return [v for v in context if v.kind == 'term'] or self.constants

    def budgets(self, n, depth):  # depths for n children: one gets depth - 1, so the node has that depth
        bs = [self.rng.randrange(depth) for _ in range(n)]
        bs[self.rng.randrange(n)] = depth - 1
        return bs

    def side_premise(self, context, goal, depth):
        """The other premise A of an elimination, with depth budgets (A's proof, the rest). Mostly the
        type of an assumption not used yet, proved by that assumption: so `fun ha => ...` bodies use ha."""
        fresh = [v for v in context if v.kind == 'assumption' and v not in self.used]
        if fresh and self.rng.random() < 0.8:
            premise, budgets = fresh[-1].type, (0, depth - 1)
        else:
            premise, budgets = self.formula(self.rng.choice([0, 0, 0, 1]), self.terms(context)), self.budgets(2, depth)
        if premise in (goal, ('false',)):
            raise DeadEnd
        return premise, budgets

    def leaf(self, goal, context):
        """An assumption or hypothesis that proves goal; a new hypothesis when there is none."""
        for v in sorted(reversed(context), key=lambda v: v in self.used):  # unused assumptions first
            if v.kind == 'assumption' and v.type == goal:
                self.used.add(v)
                return ('var', v)
        for v in self.hyps:
            if v.type == goal:
                return ('var', v)
        bound = [v for v in context if v.kind == 'term' and mentions(goal, v)]
        if len(bound) == 1 and not quantified(goal):  # `P w` for a bound w: from a hypothesis `∀ x, P x`
            return apply(self.leaf(('forall', substitute(goal, bound[0], BOUND)), context), bound[0])
        if goal == ('false',) or bound or len(self.hyps) == self.max_hyps:
            raise DeadEnd  # a False hypothesis would make the task trivial
        self.hyps.append(Var('hypothesis', goal))
        return ('var', self.hyps[-1])

    def prove(self, goal, context, depth):
        """A normal-form proof of goal of exactly this depth."""
        kind, rng = goal[0], self.rng
        if depth == 0:
            return self.leaf(goal, context)
        rules = {'neutral': 4, 'or_elim': 2, 'exists_elim': 6 * self.first_order, 'absurd': 0.6 * (kind != 'false'),
                 'false_elim': 0.3 * (kind != 'false')}
        rules['intro'] = {'and': 4, 'or': 4, 'iff': 3, 'imp': 5, 'not': 5, 'forall': 6, 'exists': 4}.get(kind, 0)
        rule = rng.choices(list(rules), list(rules.values()))[0]
        if rule == 'intro' and kind in ('and', 'iff'):
            depth_a, depth_b = self.budgets(2, depth)
            if kind == 'and':
                return ('and_intro', self.prove(goal[1], context, depth_a), self.prove(goal[2], context, depth_b))
            return ('iff_intro', self.prove(('imp', goal[1], goal[2]), context, depth_a),
                    self.prove(('imp', goal[2], goal[1]), context, depth_b))
        if rule == 'intro' and kind == 'or':
            i = rng.choice([1, 2])
            return ('inl' if i == 1 else 'inr', self.prove(goal[i], context, depth - 1))
        if rule == 'intro' and kind in ('imp', 'not', 'forall'):
            v = Var('term') if kind == 'forall' else Var('assumption', goal[1])
            body = substitute(goal[1], BOUND, v) if kind == 'forall' else goal[2] if kind == 'imp' else ('false',)
            return ('lam', v, self.prove(body, context + [v], depth - 1))
        if rule == 'intro':  # kind == 'exists'
            witness = rng.choice(self.terms(context))
            return ('exists_intro', witness, self.prove(substitute(goal[1], BOUND, witness), context, depth - 1))
        if rule == 'neutral':
            return self.neutral(goal, context, depth)
        if rule == 'false_elim':
            return ('false_elim', self.neutral(('false',), context, depth - 1))
        if rule == 'absurd':  # its first argument is neutral: Lean must infer its type from it
            a, (depth_a, depth_not_a) = self.side_premise(context, goal, depth)
            return ('absurd', self.neutral(a, context, depth_a), self.prove(('not', a), context, depth_not_a))
        if rule == 'or_elim':
            a, b = self.formula(rng.choice([0, 0, 1]), self.terms(context)), self.formula(0, self.terms(context))
            if a == b:
                raise DeadEnd
            depth_or, depth_left, depth_right = self.budgets(3, depth)
            return ('or_elim', self.neutral(('or', a, b), context, depth_or),
                    self.branch(a, goal, context, depth_left), self.branch(b, goal, context, depth_right))
        body, witness = self.formula(rng.choice([0, 0, 1]), [BOUND]), Var('term')  # rule == 'exists_elim'
        witness_proof = Var('assumption', substitute(body, BOUND, witness))
        depth_exists, depth_branch = self.budgets(2, depth)
        if rng.random() < 0.25 and not quantified(goal):  # the branch is a hypothesis `∀ x, P x → goal`
            branch = self.neutral(('forall', ('imp', body, goal)), context, depth_branch)
        else:
            branch = ('branch', [witness, witness_proof],
                      self.prove(goal, context + [witness, witness_proof], depth_branch))
        return ('exists_elim', self.neutral(('exists', body), context, depth_exists), branch)

    def branch(self, case, goal, context, depth):  # an Or.elim branch: `(fun ha => ...)` or a function hypothesis
        if self.rng.random() < 0.25:
            return self.neutral(('imp', case, goal), context, depth)
        v = Var('assumption', case)
        return ('branch', [v], self.prove(goal, context + [v], depth))

    def neutral(self, goal, context, depth):
        """A hypothesis followed by eliminations (.1 .2, modus ponens, .mp .mpr, ∀-elimination)."""
        if depth == 0:
            return self.leaf(goal, context)
        rng = self.rng
        terms = [t for t in self.constants + [v for v in context if v.kind == 'term'] if mentions(goal, t)]
        rule = rng.choices(['and_elim', 'modus_ponens', 'iff_elim', 'forall_elim'],
                           [2, 4, 1.5, 4 * bool(terms and not quantified(goal))])[0]
        if goal == ('false',):
            rule = 'modus_ponens'  # False only as `hn ha`: no hypothesis hides a False inside
        if rule == 'and_elim':
            other, i = self.formula(rng.choice([0, 0, 0, 1]), self.terms(context)), rng.choice([1, 2])
            if other == goal:
                raise DeadEnd
            conjunction = ('and', goal, other) if i == 1 else ('and', other, goal)
            return ('and_elim', self.neutral(conjunction, context, depth - 1), i)
        if rule == 'forall_elim':
            t = rng.choice(terms)
            return apply(self.neutral(('forall', substitute(goal, t, BOUND)), context, depth - 1), t)
        a, (depth_arg, depth_fun) = self.side_premise(context, goal, depth)
        if rule == 'modus_ponens':
            implication = ('not', a) if goal == ('false',) else ('imp', a, goal)
            return apply(self.neutral(implication, context, depth_fun), self.prove(a, context, depth_arg))
        direction = rng.choice(['mp', 'mpr'])
        iff = self.neutral(('iff', a, goal) if direction == 'mp' else ('iff', goal, a), context, depth_fun)
        return apply(('iff_elim', iff, direction), self.prove(a, context, depth_arg))


def proof_depth(t):  # every rule adds one; the `fun` of an elimination's branch is part of that rule
    if isinstance(t, Var) or t[0] == 'var':
        return 0
    children = list(t[1:]) + (t[2] if t[0] == 'app' else [])
    depth = max([proof_depth(x) for x in children if isinstance(x, tuple)], default=0)
    return depth if t[0] in ('iff_elim', 'branch') else depth + 1


def connectives(f):
    return sum(isinstance(x, tuple) and x[0] not in ('atom', 'pred', 'false') for x in walk(f))


def is_normal(t):
    """Every binder used (an unused `fun h` is a detour, and a linter warning) and no eta-redex
    `fun h => f h` (`f` itself is the proof)."""
    seen = [x for x in walk(t) if isinstance(x, Var)]
    if any(seen.count(v) < 2 for v in seen if v.kind in ('assumption', 'term')):
        return False
    for x in walk(t):
        if isinstance(x, tuple) and x[0] in ('lam', 'branch') and x[2][0] == 'app':
            binders, args = [x[1]] if x[0] == 'lam' else x[1], x[2][2]
            if args[-len(binders):] == [('var', b) if b.kind == 'assumption' else b for b in binders] and \
                    all(seen.count(b) == 2 for b in binders):
                return False
    return True


def consequences(facts, constants):
    """Every fact one elimination step away (.1 .2, modus ponens, .mp .mpr, `h a`, `h a ha`)."""
    out = set(facts)
    for f in facts:
        if f[0] == 'and':
            out |= {f[1], f[2]}
        if f[0] in ('imp', 'iff') and f[1] in facts:
            out.add(f[2])
        if f[0] == 'iff' and f[2] in facts:
            out.add(f[1])
        for instance in [substitute(f[1], BOUND, c) for c in constants] if f[0] == 'forall' else []:
            out.add(instance[2] if instance[0] == 'imp' and instance[1] in facts else instance)
    return frozenset(out)


def too_easy(goal, facts, steps, constants):
    """Whether a few cheap rules prove the goal in depth <= steps: a level promises that its tasks are
    not easier than that, and the generated proof is only an upper bound."""
    if goal in facts:
        return True
    if steps == 0:
        return False
    if ('false',) in facts or any(('not', f) in facts for f in facts):
        return True  # absurd h hn
    kind = goal[0]

    def easy(g, fs=facts):
        return too_easy(g, fs, steps - 1, constants)
    if kind == 'or' and (easy(goal[1]) or easy(goal[2])) or kind == 'and' and easy(goal[1]) and easy(goal[2]) \
            or kind == 'imp' and easy(goal[2], facts | {goal[1]}) \
            or kind == 'not' and easy(('false',), facts | {goal[1]}) \
            or kind == 'exists' and any(easy(substitute(goal[1], BOUND, c)) for c in constants):
        return True
    return too_easy(goal, consequences(facts, constants), steps - 1, constants)


# ---- printing: names are chosen last, so one proof shape appears under many namings
def formula_text(f, names, arg=False):
    """A formula in application syntax; arg=True parenthesises it as an argument."""
    kind = f[0]
    if kind in ('atom', 'false'):
        return names[f[1]] if kind == 'atom' else 'False'
    if kind == 'pred':
        s = f"{names[('pred', f[1])]} {names[f[2]]}"
    elif kind == 'not':
        s = f"Not {formula_text(f[1], names, True)}"
    elif kind == 'forall':
        s = f"∀ {names[BOUND]}, {formula_text(f[1], names)}"
    elif kind == 'exists':
        s = f"Exists (fun {names[BOUND]} => {formula_text(f[1], names)})"
    elif kind == 'imp':  # right-associative; a ∀ on the left would swallow the arrow
        s = f"{formula_text(f[1], names, f[1][0] in ('imp', 'forall'))} → {formula_text(f[2], names)}"
    else:
        s = f"{kind.capitalize()} {formula_text(f[1], names, True)} {formula_text(f[2], names, True)}"
    return f"({s})" if arg else s


LEAN_NAMES = {'inl': 'Or.inl', 'inr': 'Or.inr', 'iff_intro': 'Iff.intro', 'or_elim': 'Or.elim',
              'exists_elim': 'Exists.elim', 'absurd': 'absurd', 'false_elim': 'False.elim'}


def proof_text(t, names, arg=False):
    """A proof term; arg=True parenthesises it unless it is atomic (h, h.1, ⟨a, b⟩)."""
    if isinstance(t, Var) or t[0] == 'var':
        return names[t] if isinstance(t, Var) else names[t[1]]
    kind = t[0]
    if kind in ('and_elim', 'iff_elim'):
        s = f"{proof_text(t[1], names, t[1][0] != 'and_elim')}.{t[2]}"
    elif kind in ('and_intro', 'exists_intro'):
        s = f"⟨{proof_text(t[1], names)}, {proof_text(t[2], names)}⟩"
    elif kind == 'app':
        s = ' '.join([proof_text(t[1], names, t[1][0] not in ('and_elim', 'iff_elim'))]
                     + [proof_text(x, names, True) for x in t[2]])
    elif kind in ('lam', 'branch'):  # `fun h => fun x => b` prints as `fun h x => b`
        binders, body = [names[v] for v in t[1]] if kind == 'branch' else [], t
        while kind == 'lam' and body[0] == 'lam':
            binders, body = binders + [names[body[1]]], body[2]
        s = f"fun {' '.join(binders)} => {proof_text(body if kind == 'lam' else t[2], names)}"
    else:
        s = ' '.join([LEAN_NAMES[kind]] + [proof_text(x, names, True) for x in t[1:]])
    return f"({s})" if arg and kind not in ('and_elim', 'and_intro', 'exists_intro') else s


def name_binders(t, names, scope, rng, style):
    """Binder names, fresh in their scope: plain (h, h') or numbered (h3)."""
    if not isinstance(t, tuple):
        return
    for v in [t[1]] if t[0] == 'lam' else t[1] if t[0] == 'branch' else []:
        if v.kind == 'term':
            pool = ['x', 'y', 'z'] if t[0] == 'lam' else rng.choice([['w', 'y', 'z'], ['x', 'y', 'z']])
            names[v] = next(n for n in pool + [f"x{i}" for i in range(9)] if n not in scope)
        else:
            plain = ['h' + "'" * i for i in range(4)] if style != 'numbered' else []
            names[v] = next(n for n in plain + [f"h{i}" for i in range(1, 99)] if n not in scope)
        scope = scope | {names[v]}
    for x in t[1:]:
        for y in x if isinstance(x, list) else [x]:
            name_binders(y, names, scope, rng, style)


def render(builder, goal, proof, name, rng):
    """The statement and the reference proof as Lean text, with names drawn at random."""
    first_order = builder.first_order
    letters = rng.sample('PQR' if first_order else 'pqrs', builder.n_atoms)
    names = {BOUND: rng.choice('xxxy'), **{(('pred', i) if first_order else i): s for i, s in enumerate(letters)}}
    names.update({c: c.name for c in builder.constants})
    hyps = rng.sample(builder.hyps, len(builder.hyps))  # binder order shuffled
    # names from small pools, each frequent enough for a small model to learn to copy it: with
    # mnemonic names (hpq, hnr: hundreds of rare words) the small prover copied reference proofs worse
    style = rng.choices(['numbered', 'letters', 'mixed'], [6, 1.5, 1.5])[0]
    pool = {'numbered': [f"h{i + 1}" for i in range(len(hyps))], 'letters': ['ha', 'hb', 'hc', 'hd'],
            'mixed': rng.sample(['h', "h'", 'h₀', 'h₁', 'h₂', 'hh', 'H', 'hyp'], len(hyps))}[style]
    if style == 'numbered' and rng.random() < 0.2:
        rng.shuffle(pool)
    for v, n in zip(hyps, pool):
        names[v] = next(n + "'" * i for i in range(9) if n + "'" * i not in names.values())
    name_binders(proof, names, frozenset(names[v] for v in hyps), rng, rng.choice(['plain', 'numbered']))
    nodes = [x for x in walk([goal, proof] + [v.type for v in hyps]) if isinstance(x, (tuple, Var))]

    def declared(kind):  # the names of the atoms or predicates that occur, in one binder
        return ' '.join(sorted({names[(kind, x[1]) if first_order else x[1]] for x in nodes
                                if isinstance(x, tuple) and x[0] == kind}))
    if first_order:
        constants = [c.name for c in builder.constants if c in nodes]
        binders = ['(α : Type)', f"({declared('pred')} : α → Prop)"]
        binders += [f"({' '.join(constants)} : α)"] if constants else []
    else:
        binders = [f"({declared('atom')} : Prop)"]
    binders += [f"({names[v]} : {formula_text(v.type, names)})" for v in hyps]
    return f"theorem {name} {' '.join(binders)} : {formula_text(goal, names)} :=", proof_text(proof, names)


def make_task(rng, level, first_order, name, limits=Limits()):
    """Draw until a theorem meets the level's depth and every limit."""
    lo, hi = DEPTHS[level]
    while True:
        builder = TheoremBuilder(rng, first_order, limits.max_hyps)
        try:
            goal = builder.goal()
            proof = builder.prove(goal, [], rng.randint(lo, hi))
            if rng.random() < limits.distractor and len(builder.hyps) < limits.max_hyps:
                builder.hyps.append(Var('hypothesis', builder.formula(rng.choice([0, 1]), builder.constants)))
        except DeadEnd:
            continue
        types = [v.type for v in builder.hyps]
        if not lo <= proof_depth(proof) <= hi or len(set(types)) < len(types) or not is_normal(proof) \
                or max(connectives(f) for f in types + [goal]) > limits.max_size \
                or too_easy(goal, frozenset(types), lo - 1, builder.constants):
            continue
        statement, solution = render(builder, goal, proof, name, rng)
        if len(statement) <= limits.max_chars:
            return Task(name=name, statement=statement, solution=solution, level=level)
