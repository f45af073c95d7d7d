"""The mini world's theorem generator: propositional and simple first-order logic in plain Lean 4 core
syntax (`And p q`, `Or p q`, `Not p`, `Iff p q`, `→`, `∀ x, ...`, `Exists (fun x => P x)`), with term-mode
reference proofs that use only the mini prelude's names.

A task is generated backwards from a random goal: each step picks an introduction rule for the goal's
shape or an elimination that ends in it, and every leaf left open becomes a hypothesis. Difficulty is
the depth of the reference proof term: level 1 is depth 1, level 2 depth 2, level 3 depth 3-4 (deeper
levels were far beyond a few-million-parameter model).

    make_task(random.Random(0), level=2, first_order=False, name="t")   # one Task with its solution
"""
from dataclasses import dataclass

from lean_env import Task

DEPTHS = {1: (1, 1), 2: (2, 2), 3: (3, 4)}  # proof depth per level: deeper was unsolvable for a small model


@dataclass(frozen=True)
class Limits:
    """What one generated theorem may look like."""
    distractor: float = 0.2          # chance of one hypothesis the proof does not use
    max_hyps: int = 4
    max_chars: int = 150             # statement length limit
    max_size: int = 4                # connectives in one hypothesis or goal: no towers of Iff


# ---- terms. Formulas: ('p', i) atom, ('P', i, t) predicate on a term, ('and'|'or'|'iff'|'imp', A, B),
# ('not', A), ('F',) False, ('all', B) / ('ex', B) where B mentions the bound variable '#' (no nesting).
# Proofs: ('var', v), ('app', head, [args]), ('proj', h, 1|2), ('mp', h, 'mp'|'mpr') (an app head),
# ('pair', a, b), ('inl'|'inr', a), ('iffi', a, b), ('lam', v, body), ('exi', witness, p),
# ('orelim', h, left, right), ('exelim', h, branch), ('absurd', a, na), ('felim', f), where an
# elimination's branch ('br', [binders], body) prints as `(fun ha => body)` and adds no depth.
class V:  # a variable: 'hyp' (of the theorem), 'loc' (proof binder), 'term' (binder of α), 'const'
    def __init__(self, kind, typ=None, name=None):
        self.kind, self.type, self.name = kind, typ, name


class Fail(Exception):  # a dead end: the caller draws a new task
    pass


def walk(t):  # every node of a formula or proof, variables included
    yield t
    for x in t if isinstance(t, list) else t[1:] if isinstance(t, tuple) else ():
        yield from walk(x)


def subst(f, old, new):
    return new if f == old else tuple(subst(x, old, new) for x in f) if isinstance(f, tuple) else f


def mentions(f, v):
    return any(x is v for x in walk(f))


def quantified(f):
    return any(isinstance(x, tuple) and x[0] in ('all', 'ex') for x in walk(f))


def app(f, x):  # spines stay flat (`h a ha`): one application step
    return ('app', f[1], f[2] + [x]) if f[0] == 'app' else ('app', f, [x])


class Gen:
    """Builds one theorem backwards from its goal. check() gives a proof in normal form: introductions
    on top, then neutral terms (a hypothesis followed by eliminations, built by neutral())."""

    def __init__(self, rng, fo, max_hyps):
        self.rng, self.fo, self.max_hyps = rng, fo, max_hyps
        self.n_atoms = rng.choice([2, 3]) if fo else rng.choice([2, 3, 3, 4])
        self.consts = [V('const', name='a')]
        self.hyps, self.used = [], set()

    def atom(self, terms):
        if self.fo:
            return ('P', self.rng.randrange(self.n_atoms), self.rng.choice(terms))
        return ('p', self.rng.randrange(self.n_atoms))

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
        if self.fo and self.rng.random() < 0.6:
            body, q = self.formula(self.rng.choice([0, 1, 1]), ['#']), self.rng.choice(['all', 'ex', 'ex', 'notex'])
            return ('not', ('ex', body)) if q == 'notex' else (q, body)
        return self.formula(self.rng.choice([0, 1, 1, 2]), self.consts)

    def terms(self, ctx):  # terms of α to build formulas from: bound ones when there are any
        return [v for v in ctx if v.kind == 'term'] or self.consts

    def budgets(self, n, d):  # depths for n children: one gets d - 1, so the node has depth d
        bs = [self.rng.randrange(d) for _ in range(n)]
        bs[self.rng.randrange(n)] = d - 1
        return bs

    def side(self, ctx, goal, d):
        """The other premise A of an elimination, with depth budgets (A's proof, the rest). Mostly the
        type of a binder not used yet, proved by that binder: so `fun ha => ...` bodies use ha."""
        fresh = [v for v in ctx if v.kind == 'loc' and v not in self.used]
        if fresh and self.rng.random() < 0.8:
            f, budgets = fresh[-1].type, (0, d - 1)
        else:
            f, budgets = self.formula(self.rng.choice([0, 0, 0, 1]), self.terms(ctx)), self.budgets(2, d)
        if f in (goal, ('F',)):
            raise Fail
        return f, budgets

    def leaf(self, g, ctx):
        """A binder or hypothesis of type g; a new hypothesis when there is none."""
        for v in sorted(reversed(ctx), key=lambda v: v in self.used):  # unused binders first
            if v.kind == 'loc' and v.type == g:
                self.used.add(v)
                return ('var', v)
        for v in self.hyps:
            if v.type == g:
                return ('var', v)
        bound = [v for v in ctx if v.kind == 'term' and mentions(g, v)]
        if len(bound) == 1 and not quantified(g):  # `P w` for a bound w: from a hypothesis `∀ x, P x`
            return app(self.leaf(('all', subst(g, bound[0], '#')), ctx), bound[0])
        if g == ('F',) or bound or len(self.hyps) == self.max_hyps:
            raise Fail  # a False hypothesis would make the task trivial
        self.hyps.append(V('hyp', g))
        return ('var', self.hyps[-1])

    def check(self, g, ctx, d):
        """A normal-form proof of g of depth d."""
        if d == 0:
            return self.leaf(g, ctx)
        k, r = g[0], self.rng
        rules = {'neutral': 4, 'orelim': 2, 'exelim': 6 * self.fo, 'absurd': 0.6 * (k != 'F'),
                 'felim': 0.3 * (k != 'F')}
        rules['intro'] = {'and': 4, 'or': 4, 'iff': 3, 'imp': 5, 'not': 5, 'all': 6, 'ex': 4}.get(k, 0)
        rule = r.choices(list(rules), list(rules.values()))[0]
        if rule == 'intro' and k in ('and', 'iff'):
            b1, b2 = self.budgets(2, d)
            if k == 'and':
                return ('pair', self.check(g[1], ctx, b1), self.check(g[2], ctx, b2))
            return ('iffi', self.check(('imp', g[1], g[2]), ctx, b1), self.check(('imp', g[2], g[1]), ctx, b2))
        if rule == 'intro' and k == 'or':
            i = r.choice([1, 2])
            return ('inl' if i == 1 else 'inr', self.check(g[i], ctx, d - 1))
        if rule == 'intro' and k in ('imp', 'not', 'all'):
            v = V('term') if k == 'all' else V('loc', g[1])
            body = subst(g[1], '#', v) if k == 'all' else g[2] if k == 'imp' else ('F',)
            return ('lam', v, self.check(body, ctx + [v], d - 1))
        if rule == 'intro':  # k == 'ex'
            w = r.choice(self.terms(ctx))
            return ('exi', w, self.check(subst(g[1], '#', w), ctx, d - 1))
        if rule == 'neutral':
            return self.neutral(g, ctx, d)
        if rule == 'felim':
            return ('felim', self.neutral(('F',), ctx, d - 1))
        if rule == 'absurd':  # its first argument is neutral: Lean must infer its type from it
            a, (b1, b2) = self.side(ctx, g, d)
            return ('absurd', self.neutral(a, ctx, b1), self.check(('not', a), ctx, b2))
        if rule == 'orelim':
            a, b = self.formula(r.choice([0, 0, 1]), self.terms(ctx)), self.formula(0, self.terms(ctx))
            if a == b:
                raise Fail
            bh, bl, br = self.budgets(3, d)
            return ('orelim', self.neutral(('or', a, b), ctx, bh), self.branch(a, g, ctx, bl),
                    self.branch(b, g, ctx, br))
        body, w = self.formula(r.choice([0, 0, 1]), ['#']), V('term')  # rule == 'exelim'
        hw = V('loc', subst(body, '#', w))
        b1, b2 = self.budgets(2, d)
        if r.random() < 0.25 and not quantified(g):  # the branch is a hypothesis `∀ x, P x → g`
            branch = self.neutral(('all', ('imp', body, g)), ctx, b2)
        else:
            branch = ('br', [w, hw], self.check(g, ctx + [w, hw], b2))
        return ('exelim', self.neutral(('ex', body), ctx, b1), branch)

    def branch(self, a, g, ctx, d):  # an Or.elim branch: `(fun ha => ...)` or a function hypothesis
        if self.rng.random() < 0.25:
            return self.neutral(('imp', a, g), ctx, d)
        v = V('loc', a)
        return ('br', [v], self.check(g, ctx + [v], d))

    def neutral(self, g, ctx, d):
        """A hypothesis followed by eliminations (.1 .2, application, .mp .mpr, ∀-instantiation)."""
        if d == 0:
            return self.leaf(g, ctx)
        r = self.rng
        terms = [t for t in self.consts + [v for v in ctx if v.kind == 'term'] if mentions(g, t)]
        rule = r.choices(['proj', 'app', 'mp', 'inst'], [2, 4, 1.5, 4 * bool(terms and not quantified(g))])[0]
        if g == ('F',):
            rule = 'app'  # False only as `hn ha`: no hypothesis hides a False inside
        if rule == 'proj':
            b, i = self.formula(r.choice([0, 0, 0, 1]), self.terms(ctx)), r.choice([1, 2])
            if b == g:
                raise Fail
            return ('proj', self.neutral(('and', g, b) if i == 1 else ('and', b, g), ctx, d - 1), i)
        if rule == 'inst':
            t = r.choice(terms)
            return app(self.neutral(('all', subst(g, t, '#')), ctx, d - 1), t)
        a, (b_arg, b_fun) = self.side(ctx, g, d)
        if rule == 'app':
            return app(self.neutral(('not', a) if g == ('F',) else ('imp', a, g), ctx, b_fun),
                       self.check(a, ctx, b_arg))
        i = r.choice(['mp', 'mpr'])
        h = self.neutral(('iff', a, g) if i == 'mp' else ('iff', g, a), ctx, b_fun)
        return app(('mp', h, i), self.check(a, ctx, b_arg))


def depth(t):  # every rule adds one; the `fun` of an elimination's branch is part of that rule
    if isinstance(t, V) or t[0] == 'var':
        return 0
    kids = list(t[1:]) + (t[2] if t[0] == 'app' else [])
    d = max([depth(x) for x in kids if isinstance(x, tuple)], default=0)
    return d if t[0] in ('mp', 'br') else d + 1


def size(f):  # connectives
    return sum(isinstance(x, tuple) and x[0] not in ('p', 'P', 'F') for x in walk(f))


def normal(t):
    """Every binder used (an unused `fun h` is a detour, and a linter warning) and no eta-redex
    `fun h => f h` (`f` itself is the proof)."""
    seen = [x for x in walk(t) if isinstance(x, V)]
    if any(seen.count(v) < 2 for v in seen if v.kind in ('loc', 'term')):
        return False
    for x in walk(t):
        if isinstance(x, tuple) and x[0] in ('lam', 'br') and x[2][0] == 'app':
            bs, args = [x[1]] if x[0] == 'lam' else x[1], x[2][2]
            if args[-len(bs):] == [('var', b) if b.kind == 'loc' else b for b in bs] and \
                    all(seen.count(b) == 2 for b in bs):
                return False
    return True


def consequences(facts, consts):
    """Every fact one elimination step away (.1 .2, modus ponens, .mp .mpr, `h a`, `h a ha`)."""
    out = set(facts)
    for f in facts:
        if f[0] == 'and':
            out |= {f[1], f[2]}
        if f[0] in ('imp', 'iff') and f[1] in facts:
            out.add(f[2])
        if f[0] == 'iff' and f[2] in facts:
            out.add(f[1])
        for b in [subst(f[1], '#', c) for c in consts] if f[0] == 'all' else []:
            out.add(b[2] if b[0] == 'imp' and b[1] in facts else b)
    return frozenset(out)


def too_easy(goal, facts, steps, consts):
    """Whether a few cheap rules prove the goal in depth <= steps: a level promises that its tasks are
    not easier than that, and the generated proof is only an upper bound."""
    if goal in facts:
        return True
    if steps == 0:
        return False
    if ('F',) in facts or any(('not', f) in facts for f in facts):
        return True  # absurd h hn
    k, easy = goal[0], lambda g, fs=facts: too_easy(g, fs, steps - 1, consts)
    if k == 'or' and (easy(goal[1]) or easy(goal[2])) or k == 'and' and easy(goal[1]) and easy(goal[2]) \
            or k == 'imp' and easy(goal[2], facts | {goal[1]}) or k == 'not' and easy(('F',), facts | {goal[1]}) \
            or k == 'ex' and any(easy(subst(goal[1], '#', c)) for c in consts):
        return True
    return too_easy(goal, consequences(facts, consts), steps - 1, consts)


# ---- printing: names are chosen last, so one proof shape appears under many namings
def fmt(f, nm, arg=False):
    """A formula in application syntax; arg=True parenthesises it as an argument."""
    k = f[0]
    if k in ('p', 'F'):
        return nm[f[1]] if k == 'p' else 'False'
    if k == 'P':
        s = f"{nm[('P', f[1])]} {nm[f[2]]}"
    elif k == 'not':
        s = f"Not {fmt(f[1], nm, True)}"
    elif k == 'all':
        s = f"∀ {nm['#']}, {fmt(f[1], nm)}"
    elif k == 'ex':
        s = f"Exists (fun {nm['#']} => {fmt(f[1], nm)})"
    elif k == 'imp':  # right-associative; a ∀ on the left would swallow the arrow
        s = f"{fmt(f[1], nm, f[1][0] in ('imp', 'all'))} → {fmt(f[2], nm)}"
    else:
        s = f"{k.capitalize()} {fmt(f[1], nm, True)} {fmt(f[2], nm, True)}"
    return f"({s})" if arg else s


NAMES = {'inl': 'Or.inl', 'inr': 'Or.inr', 'iffi': 'Iff.intro', 'orelim': 'Or.elim', 'exelim': 'Exists.elim',
         'absurd': 'absurd', 'felim': 'False.elim'}


def pr(t, nm, arg=False):
    """A proof term; arg=True parenthesises it unless it is atomic (h, h.1, ⟨a, b⟩)."""
    if isinstance(t, V) or t[0] == 'var':
        return nm[t] if isinstance(t, V) else nm[t[1]]
    k = t[0]
    if k in ('proj', 'mp'):
        s = f"{pr(t[1], nm, t[1][0] != 'proj')}.{t[2]}"
    elif k in ('pair', 'exi'):
        s = f"⟨{pr(t[1], nm)}, {pr(t[2], nm)}⟩"
    elif k == 'app':
        s = ' '.join([pr(t[1], nm, t[1][0] not in ('proj', 'mp'))] + [pr(x, nm, True) for x in t[2]])
    elif k in ('lam', 'br'):  # `fun h => fun x => b` prints as `fun h x => b`
        names, body = [nm[v] for v in t[1]] if k == 'br' else [], t
        while k == 'lam' and body[0] == 'lam':
            names, body = names + [nm[body[1]]], body[2]
        s = f"fun {' '.join(names)} => {pr(body if k == 'lam' else t[2], nm)}"
    else:
        s = ' '.join([NAMES[k]] + [pr(x, nm, True) for x in t[1:]])
    return f"({s})" if arg and k not in ('proj', 'pair', 'exi') else s


def name_binders(t, nm, scope, rng, style):
    """Binder names, fresh in their scope: plain (h, h') or numbered (h3)."""
    if not isinstance(t, tuple):
        return
    for v in [t[1]] if t[0] == 'lam' else t[1] if t[0] == 'br' else []:
        if v.kind == 'term':
            pool = ['x', 'y', 'z'] if t[0] == 'lam' else rng.choice([['w', 'y', 'z'], ['x', 'y', 'z']])
            nm[v] = next(n for n in pool + [f"x{i}" for i in range(9)] if n not in scope)
        else:
            plain = ['h' + "'" * i for i in range(4)] if style != 'numbered' else []
            nm[v] = next(n for n in plain + [f"h{i}" for i in range(1, 99)] if n not in scope)
        scope = scope | {nm[v]}
    for x in t[1:]:
        for y in x if isinstance(x, list) else [x]:
            name_binders(y, nm, scope, rng, style)


def render(g, goal, proof, name, rng):
    """The statement and the reference proof as Lean text, with names drawn at random."""
    letters = rng.sample('PQR' if g.fo else 'pqrs', g.n_atoms)
    nm = {'#': rng.choice('xxxy'), **{(('P', i) if g.fo else i): s for i, s in enumerate(letters)}}
    nm.update({c: c.name for c in g.consts})
    hyps = rng.sample(g.hyps, len(g.hyps))  # binder order shuffled
    # names from small pools, each frequent enough for a small model to learn to copy it: with
    # mnemonic names (hpq, hnr: hundreds of rare words) the small prover copied reference proofs worse
    style = rng.choices(['numbered', 'letters', 'mixed'], [6, 1.5, 1.5])[0]
    names = {'numbered': [f"h{i + 1}" for i in range(len(hyps))], 'letters': ['ha', 'hb', 'hc', 'hd'],
             'mixed': rng.sample(['h', "h'", 'h₀', 'h₁', 'h₂', 'hh', 'H', 'hyp'], len(hyps))}[style]
    if style == 'numbered' and rng.random() < 0.2:
        rng.shuffle(names)
    for v, n in zip(hyps, names):
        nm[v] = next(n + "'" * i for i in range(9) if n + "'" * i not in nm.values())
    name_binders(proof, nm, frozenset(nm[v] for v in hyps), rng, rng.choice(['plain', 'numbered']))
    nodes = [x for x in walk([goal, proof] + [v.type for v in hyps]) if isinstance(x, (tuple, V))]
    used = lambda kind: ' '.join(sorted({nm[(kind, x[1]) if g.fo else x[1]] for x in nodes
                                         if isinstance(x, tuple) and x[0] == kind}))
    binders = [f"({used('p')} : Prop)"]
    if g.fo:
        consts = [c.name for c in g.consts if c in nodes]
        binders = ['(α : Type)', f"({used('P')} : α → Prop)"] + ([f"({' '.join(consts)} : α)"] if consts else [])
    binders += [f"({nm[v]} : {fmt(v.type, nm)})" for v in hyps]
    return f"theorem {name} {' '.join(binders)} : {fmt(goal, nm)} :=", pr(proof, nm)


def make_task(rng, level, fo, name, limits=Limits()):
    """Draw until a theorem meets the level's depth and every limit."""
    lo, hi = DEPTHS[level]
    while True:
        g = Gen(rng, fo, limits.max_hyps)
        try:
            goal = g.goal()
            proof = g.check(goal, [], rng.randint(lo, hi))
            if rng.random() < limits.distractor and len(g.hyps) < limits.max_hyps:
                g.hyps.append(V('hyp', g.formula(rng.choice([0, 1]), g.consts)))
        except Fail:
            continue
        types = [v.type for v in g.hyps]
        if not lo <= depth(proof) <= hi or len(set(types)) < len(types) or not normal(proof) \
                or max(size(f) for f in types + [goal]) > limits.max_size \
                or too_easy(goal, frozenset(types), lo - 1, g.consts):
            continue
        statement, solution = render(g, goal, proof, name, rng)
        if len(statement) <= limits.max_chars:
            return Task(name=name, statement=statement, solution=solution, level=level)

