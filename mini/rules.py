"""Levels 3 and 4 of the offline tutor: self-contained orders, each a rule over the statement's propositions.

Paper: Narozniak et al., "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Appendix A.3
and C.3: the critique prompts (3) and (4) ask for orders useful to someone who never saw the attempt. For each
step of the reference proof (outermost first) this file states the rule that step uses, over the propositions it
acts on, computed through projections and applications: both sides of a rule, never a hypothesis name, never
the proof. mini/tutor.py frames them (tutor.advice); general() turns Lean's complaint into the rule it breaks.

    from mini import rules
    rules.orders("theorem t (p q r : Prop) (h1 : q → And p r) (h2 : q) : r :=", "(h1 h2).2")
    # -> ["Do apply q → And p r to a proof of q to get And p r.", "Do get p from And p r by .1 and r by .2."]
"""
import re

# ---- proof terms ----------------------------------------------------------------------------------
# Terms parse into tuples: ("name", s) | ("proj", term, field) | ("app", head, args) | ("pair", items)
# | ("fun", binders, body); the tutor's hints (mini/tutor.py) and the orders below read them. Pure Python.
_TOKEN = re.compile(r"=>|⟨|⟩|\(|\)|,|:|[^\s()⟨⟩,:]+")
_STOP = (None, ")", "⟩", ",", ":", "=>")


def parse_term(text):
    toks, pos = _TOKEN.findall(text), 0

    def peek():
        return toks[pos] if pos < len(toks) else None

    def take(expected=None):
        nonlocal pos
        if pos >= len(toks) or (expected and toks[pos] != expected):
            raise ValueError(f"expected {expected or 'more'} at token {pos} of {text!r}")
        pos += 1
        return toks[pos - 1]

    def term():
        if peek() in ("fun", "λ"):
            take()
            names = []
            while peek() != "=>":
                names.append(take())
            take()
            names = [n for n in names if n not in "()"]   # drop a binder's type: `(x : α)`
            return ("fun", names[:names.index(":")] if ":" in names else names, term())
        head, args = atom(), []
        while peek() not in _STOP:
            args.append(term() if peek() in ("fun", "λ") else atom())
        return ("app", head, args) if args else head

    def atom():
        t = take()
        if t == "(":
            node = term()
            take(")")
        elif t == "⟨":
            node = ("pair", [term()])
            while peek() == ",":
                take()
                node[1].append(term())
            take("⟩")
        elif t in _STOP:
            raise ValueError(f"unexpected {t!r} in {text!r}")
        else:
            node = ("name", t)
        if (peek() or "").startswith("."):   # (h2 h1).1: h1.2 itself is one name token
            node = ("proj", node, take()[1:])
        return node

    node = term()
    if peek() is not None:
        raise ValueError(f"trailing {peek()!r} in {text!r}")
    return node


# ---- the orders ----------------------------------------------------------------------------------
# The paper's prompts (3) and (4) ask for orders useful to someone who never saw the attempt. Here an order
# states the rule a step of the reference proof uses over the shapes of the statement's propositions
# ("Do get p from And p q by .1 and q by .2."): both sides of the rule, the propositions it acts on, never a
# hypothesis name, never the proof. The student must still find the hypothesis of that shape and the side the
# goal needs. A proposition too long to read (over LONG characters) gives the rule with A and B instead.
LONG = 60
A, B = ("w", "A"), ("w", "B")
ORDERS = {   # key: (the order over the propositions {t0} {t1} {t2} ({a0} {a1}: bracketed as arguments, {arrow}:
             # t0 → t1), the parts it is written with when one is unknown or too long, or that text itself)
    "use": ("Do use the hypothesis that states the goal.", ()),
    "and": ("Do get {t0} from And {a0} {a1} by .1 and {t1} by .2.", (A, B)),
    "iff": ("Do get {t1} from Iff {a0} {a1} and {t0} by .mp, and {t0} from {t1} by .mpr.", (A, B)),
    "imp": ("Do apply {arrow} to a proof of {t0} to get {t1}.", (A, B)),
    "not": ("Do apply Not {a0} to a proof of {t0} to get False.", (A,)),
    "all": ("Do apply {t0} to a term to get its instance.", "Do apply ∀ x, P x to a term a to get P a."),
    "pair": ("Do prove And {a0} {a1} by ⟨_, _⟩ from a proof of {t0} and a proof of {t1}.", (A, B)),
    "iff_pair": ("Do prove Iff {a0} {a1} by ⟨_, _⟩ or Iff.intro from {t0} → {t1} and {t1} → {t0}.", (A, B)),
    "witness": ("Do prove {t0} by ⟨_, _⟩ from a witness and a proof for it.", (("w", "Exists"),)),
    "or_intro": ("Do prove Or {a0} {a1} by Or.inl from {t0} or by Or.inr from {t1}.", (A, B)),
    "or_elim": ("Do use Or {a0} {a1} by Or.elim with one fun for each case.", (A, B)),
    "exists_elim": ("Do use {t0} by Exists.elim with a fun of the witness and its proof.", (("w", "Exists"),)),
    "fun": ("Do prove {t0} by fun, then prove {t1} from {t2}.", (("→", A, B), B, A)),
    "absurd": ("Do prove the goal by absurd from a proof of {t0} and a proof of Not {a0}.", (A,)),
    "false": ("Do prove the goal by False.elim from a proof of False.", ()),
}
_CONSTANTS = {"Or.inl", "Or.inr", "Or.elim", "Iff.intro", "Exists.elim", "absurd", "False.elim"}
_FORMULA = re.compile(r"=>|→|[(),]|[^\s(),→]+")


def parse_formula(text):
    """A mini-world proposition as a tree: ("→", A, B) | ("∀", vars, body) | ("fun", vars, body) |
    ("app", head, args) | ("w", word). ValueError if it is not one."""
    toks, pos = _FORMULA.findall(text), 0

    def peek():
        return toks[pos] if pos < len(toks) else None

    def take():
        nonlocal pos
        if pos >= len(toks):
            raise ValueError(f"unexpected end of {text!r}")
        pos += 1
        return toks[pos - 1]

    def formula():
        if peek() in ("∀", "fun"):
            kind, names = take(), []
            while peek() not in (",", "=>", None):
                names.append(take())
            take()
            return (kind, names, formula())
        left = app()
        if peek() == "→":
            take()
            return ("→", left, formula())
        return left

    def app():
        head, args = atom(), []
        while peek() not in (None, ")", "→", ",", "=>"):
            args.append(atom())
        return ("app", head[1], args) if args and head[0] == "w" else head

    def atom():
        t = take()
        if t == "(":
            node = formula()
            if take() != ")":
                raise ValueError(f"unbalanced {text!r}")
            return node
        if t in (")", ",", "=>", "→"):
            raise ValueError(f"unexpected {t!r} in {text!r}")
        return ("w", t)

    node = formula()
    if peek() is not None:
        raise ValueError(f"trailing {peek()!r} in {text!r}")
    return node


def show(f, arg=False):
    kind = f[0]
    if kind == "w":
        return f[1]
    if kind == "app":
        text = " ".join([f[1]] + [show(a, True) for a in f[2]])
    elif kind == "→":
        text = f"{show(f[1], f[1][0] in ('→', '∀', 'fun'))} → {show(f[2])}"
    else:
        text = f"{kind} {' '.join(f[1])}{',' if kind == '∀' else ' =>'} {show(f[2])}"
    return f"({text})" if arg else text


def _subst(f, old, new):
    if f[0] == "w":
        return ("w", new) if f[1] == old else f
    if f[0] == "app":
        return ("app", f[1], [_subst(a, old, new) for a in f[2]])
    if f[0] == "→":
        return ("→", _subst(f[1], old, new), _subst(f[2], old, new))
    return f if old in f[1] else (f[0], f[1], _subst(f[2], old, new))


def hypotheses(statement):
    """{name: type text} of the binders `(h1 h2 : T)` of a statement."""
    out, depth, start = {}, 0, None
    for i, c in enumerate(statement):
        if c == "(":
            depth += 1
            start = i + 1 if depth == 1 else start
        elif c == ")":
            depth -= 1
            if depth == 0 and start is not None and ":" in statement[start:i]:
                names, _, kind = statement[start:i].partition(":")
                out.update({n: kind.strip() for n in names.split()})
    return out


def conclusion(statement):
    """The text after the last top-level colon of `theorem n (binders) : GOAL :=`."""
    s, depth, colon = statement.rstrip().removesuffix(":="), 0, -1
    for i, c in enumerate(s):
        depth += (c in "([{⟨") - (c in ")]}⟩")
        colon = i if c == ":" and depth == 0 else colon
    return s[colon + 1:].strip()


def order(key, parts):
    """The order ORDERS[key] over these propositions; over A and B when one is unknown or longer than LONG."""
    template, generic = ORDERS[key]
    texts = [show(p) for p in parts if p is not None]
    if len(texts) < len(parts) or any(len(t) > LONG for t in texts):
        if isinstance(generic, str):
            return generic
        parts, texts = generic, [show(p) for p in generic]
    fields = {f"t{i}": t for i, t in enumerate(texts)} | {f"a{i}": show(p, True) for i, p in enumerate(parts)}
    if len(parts) >= 2:
        fields["arrow"] = show(("→", parts[0], parts[1]))
    return template.format(**fields)


def _both(f, head):
    return f[2] if f and f[0] == "app" and f[1] == head and len(f[2]) == 2 else None


def orders(statement, solution):
    """The self-contained orders of levels 3 and 4: the rule of each step of the reference proof, outermost
    first, each once, over the statement's own propositions. ValueError if the solution is not a term."""
    ref, found = parse_term(solution), []
    hyps, terms = {}, set()
    for name, kind in hypotheses(statement).items():
        if kind in ("Type", "α") or kind.endswith("→ Prop"):
            terms.add(name)
            continue
        try:
            hyps[name] = parse_formula(kind)
        except ValueError:
            pass
    try:
        goal = parse_formula(conclusion(statement))
    except ValueError:
        goal = None

    def say(key, *parts):
        found.append(order(key, parts))

    def project(t, field):   # the rule a projection uses, and the type it gives
        if field in ("1", "2"):
            parts = _both(t, "And")
            say("and", *(parts or (None, None)))
            return parts[int(field) - 1] if parts else None
        parts = _both(t, "Iff")
        say("iff", *(parts or (None, None)))
        if not parts:
            return None
        return ("→", parts[0], parts[1]) if field == "mp" else ("→", parts[1], parts[0])

    def typed(node, local):   # the type of a proof term (None: unknown), saying the rules of its eliminations
        kind = node[0]
        if kind == "name":
            base, *fields = node[1].split(".")
            if node[1] in _CONSTANTS or base not in local:
                return None
            t = local[base]
            for field in fields:
                t = project(t, field) if field in ("1", "2", "mp", "mpr") else None
            return t
        if kind == "proj":
            return project(typed(node[1], local), node[2])
        if kind == "app" and node[1][0] == "name" and node[1][1] in _CONSTANTS:
            return walk(node, None, local)
        if kind == "app":
            t = typed(node[1], local)
            for arg in node[2]:
                if t and t[0] == "→":
                    say("imp", t[1], t[2])
                    walk(arg, t[1], local)
                    t = t[2]
                elif t and t[0] == "app" and t[1] == "Not":
                    say("not", t[2][0])
                    walk(arg, t[2][0], local)
                    t = ("w", "False")
                elif t and t[0] == "∀":
                    say("all", t)
                    t = _subst(t[2], t[1][0], arg[1]) if arg[0] == "name" else None
                else:
                    walk(arg, None, local)
                    t = None
            return t
        return walk(node, None, local)

    def walk(node, goal, local):   # a term proving `goal` (None: unknown)
        kind = node[0]
        if kind == "pair":
            first = node[1][0]
            if first[0] == "name" and first[1] in terms or goal and goal[0] == "app" and goal[1] == "Exists":
                say("witness", goal)
                body = None   # Exists (fun x => B) with the witness w: the proof part proves B with w for x
                if goal and goal[0] == "app" and goal[1] == "Exists" and goal[2][0][0] == "fun" and first[0] == "name":
                    body = _subst(goal[2][0][2], goal[2][0][1][0], first[1])
                for x in node[1][1:]:
                    walk(x, body, local)
                return goal
            iff = _both(goal, "Iff")
            parts = iff or _both(goal, "And") or (None, None)
            say("iff_pair" if iff else "pair", *parts)
            if iff:
                parts = (("→", iff[0], iff[1]), ("→", iff[1], iff[0]))
            for x, g in zip(node[1], list(parts) + [None] * len(node[1])):
                walk(x, g, local)
            return goal
        if kind == "fun":
            body_goal, local = goal, dict(local)
            for name in node[1]:
                if body_goal and body_goal[0] == "→":
                    local[name], body_goal = body_goal[1], body_goal[2]
                elif body_goal and body_goal[0] == "app" and body_goal[1] == "Not":
                    local[name], body_goal = body_goal[2][0], ("w", "False")
                else:
                    body_goal = None
            premise = local.get(node[1][0]) if node[1] else None
            say("fun", goal, body_goal, premise)
            walk(node[2], body_goal, local)
            return goal
        if kind == "app" and node[1][0] == "name" and node[1][1] in _CONSTANTS:
            name, args = node[1][1], node[2]
            if name in ("Or.inl", "Or.inr"):
                parts = _both(goal, "Or") or (None, None)
                say("or_intro", *parts)
                walk(args[0], parts[name == "Or.inr"], local)
            elif name == "Or.elim":
                parts = _both(typed(args[0], local), "Or") or (None, None)
                say("or_elim", *parts)
                for arm, case in zip(args[1:], parts):
                    walk(arm, ("→", case, goal) if case and goal else None, local)
            elif name == "Iff.intro":
                parts = _both(goal, "Iff")
                say("iff_pair", *(parts or (None, None)))
                for arg, g in zip(args, [("→", parts[0], parts[1]), ("→", parts[1], parts[0])] if parts else []):
                    walk(arg, g, local)
            elif name == "Exists.elim":
                t = typed(args[0], local)
                say("exists_elim", t)
                inner = dict(local)
                if len(args) > 1 and args[1][0] == "fun" and len(args[1][1]) >= 2:
                    x, hx = args[1][1][:2]
                    terms.add(x)
                    if t and t[0] == "app" and t[1] == "Exists" and t[2][0][0] == "fun":
                        bound = t[2][0]
                        inner[hx] = _subst(bound[2], bound[1][0], x)
                    walk(args[1][2], goal, inner)
            elif name == "absurd":
                t = typed(args[0], local)
                say("absurd", t)
                for arg in args[1:]:
                    walk(arg, None, local)
            else:
                say("false")
                for arg in args:
                    walk(arg, None, local)
            return goal
        if kind == "name" and "." not in node[1] and node[1] in local:
            return local[node[1]]
        return typed(node, local)

    if ref[0] == "name" and "." not in ref[1]:
        say("use")
    walk(ref, goal, hyps)
    return list(dict.fromkeys(found))


_GENERAL = [  # (pattern of an instance item, the same mistake as a self-contained order)
    (r"is not a hypothesis", "Don't use a name that is not a hypothesis of the statement."),
    (r"is not an iff", "Don't take .mp or .mpr of a hypothesis that is not Iff A B."),
    (r"is not a conjunction|has no field", "Don't take .1 or .2 of a hypothesis that is not And A B."),
    (r"goal is not an implication", "Don't start with fun when the goal is not A → B or Not A."),
    (r"needs one more argument", "Don't stop before an implication has its argument."),
    (r"build a pair for .*Or\.inl", "Don't build a pair for Or A B: use Or.inl or Or.inr."),
    (r"build a pair|leave out a part", "Don't build a pair unless the goal is And A B, Iff A B or Exists."),
    (r"not an implication", "Don't apply a hypothesis that is not A → B, Not A or ∀."),
    (r"bracket", "Don't leave a bracket open: close every ( and ⟨."),
    (r"empty", "Don't leave the proof empty."),
    (r"", "Don't use a proof whose type is not the goal."),
]


def general(item):
    """An instance item of error_item() as the rule it breaks, with no names of this attempt."""
    return next(order for pattern, order in _GENERAL if re.search(pattern, item))
