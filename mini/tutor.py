"""The offline tutor: a rule-based critic that writes what a strong LLM would, for the mini world.

Paper: Narozniak et al., "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861),
Section 3 and Appendix A.3: the main runs ask Claude for 1 to 3 numbered "Do X" / "Don't do X" items
about the attempt. With no LLM on a laptop, this file writes such items from the reference proof and
Lean's messages: the reference's first rule ("Do start with Or.elim h1."), where an attempt that
began right leaves the reference ("Do apply h2 in the first part."), and what Lean objected to
("Don't use h1.1: h1 is not a conjunction."), never the whole proof. feedback.load("tutor") frames
the items for the teacher's prompt.

    from mini import tutor
    tutor.items(task, "⟨h2.1, h1.1⟩", truncated=False, result=lean_result)
    # -> ["Do build the pair ⟨_, _⟩.", "Do apply h2 in the first part.", "Don't use h2.1: ..."]
"""
import re

# ---- proof terms ----------------------------------------------------------------------------------
# Terms parse into tuples: ("name", s) | ("proj", term, field) | ("app", head, args) | ("pair", items)
# | ("fun", binders, body). Hints reuse the proof's own identifiers (the tiny
# model's tokenizer is word-level) and name the FIRST RULE of the reference proof: measured as the
# best feedback for a tiny model. Deterministic, pure Python.
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


def goal_head(statement):
    """The first word of the conclusion of `theorem n (binders) : GOAL :=`, e.g. "Iff"."""
    s, depth, colon = statement.rstrip().removesuffix(":="), 0, -1
    for i, c in enumerate(s):
        depth += (c in "([{⟨") - (c in ")]}⟩")
        colon = i if c == ":" and depth == 0 else colon
    return (s[colon + 1:].split() or [None])[0]


def _show(node):
    kind = node[0]
    if kind == "name":
        return node[1]
    if kind == "proj":
        return f"({_show(node[1])}).{node[2]}"
    if kind == "pair":
        return "⟨" + ", ".join(map(_show, node[1])) + "⟩"
    if kind == "fun":
        return f"fun {' '.join(node[1])} => {_show(node[2])}"
    return " ".join(_show(x) if x[0] in ("name", "proj", "pair") else f"({_show(x)})" for x in [node[1]] + node[2])


def rule(node, goal=None):
    """The first rule of a proof term as an imperative phrase, e.g. "start with Or.elim h1"."""
    kind = node[0]
    if kind == "fun":
        return f"introduce {' '.join(node[1])} with fun"
    if kind == "pair":
        first = node[1][0]
        if goal == "Exists" and first[0] == "name":
            return f"give the witness {first[1]} with ⟨{first[1]}, _⟩"
        blanks = "⟨" + ", ".join("_" for _ in node[1]) + "⟩"
        return f"build both directions {blanks}" if goal == "Iff" else f"build the pair {blanks}"
    if kind == "name":
        return f"use {node[1]}"
    if kind == "proj":   # (h2 h1).1: name the function, not the whole term
        fn = node[1]
        while fn[0] in ("app", "proj"):
            fn = fn[1]
        return f"apply {_show(fn)} first, then take .{node[2]}"
    head, args = node[1], node[2]
    if kind != "app" or head[0] != "name":
        return rule(head) if kind == "app" else f"start with {_show(node)}"
    name = head[1]
    if name in ("Or.inl", "Or.inr"):
        return f"prove the {'left' if name == 'Or.inl' else 'right'} side with {name}"
    if not (name[:1].isupper() or name in ("absurd", "trivial", "id", "mt")):   # a hypothesis
        return f"apply {name}"
    if len(args) > 1 and args[0][0] == "name":      # never the whole proof
        return f"start with {name} {args[0][1]}"
    return f"start with {name}"


def first_difference(ref, att):
    """Where an attempt that starts with the reference's first rule leaves it: the rule the
    reference uses at that place ("Do apply h2 in the first part.")."""
    where = ""
    while True:
        if where and rule(ref) != rule(att):
            return f"Do {rule(ref)} {where}."
        if ref[0] == "fun" and att[0] == "fun":
            ref, att = ref[2], att[2]
            continue
        if ref[0] == "pair" and att[0] == "pair" and len(ref[1]) == len(att[1]):
            pairs, place = list(zip(ref[1], att[1])), "in the {} part"
        elif ref[0] == "app" and att[0] == "app" and ref[1] == att[1]:
            if len(ref[2]) != len(att[2]):
                return f"Do give {_show(ref[1])} {len(ref[2])} arguments {where}".rstrip() + "."
            pairs, place = list(zip(ref[2], att[2])), "in argument {} of " + _show(ref[1])
        else:
            return None
        i = next((i for i, (r, a) in enumerate(pairs) if r != a), None)
        if i is None:
            return None
        ordinal = ["first", "second", "third", "fourth"][min(i, 3)] if "part" in place else i + 1
        (ref, att), where = pairs[i], place.format(ordinal)


def _as_written(term, attempt):
    # Lean prints h1.1 as h1.left (or h1.mp): show the spelling the attempt used.
    alt = re.sub(r"\.(left|mp)\b", ".1", re.sub(r"\.(right|mpr)\b", ".2", term))
    return alt if alt in attempt and term not in attempt else term


_ERRORS = [  # (pattern over one Lean message, "Don't" item from the match and the attempt)
    (r"Unknown identifier `([^`]+)`", lambda m, a: f"Don't use {m[1]}: {m[1].split('.')[0]} is not a hypothesis here."),
    (r"Invalid (?:projection|field notation).*?\n\s*(\S+)\n", lambda m, a: _bad_projection(m[1], a)),
    (r"Invalid field `(\w+)`.*?expression\n\s*(\S+)\n", lambda m, a: f"Don't use {m[2]}.{m[1]}: {m[2]} has no field {m[1]}."),
    (r"(?:Type|Application type) mismatch.*?\n\s*(.+?)\nhas type\n\s*(.+?)\nbut is expected to have type\n\s*(.+?)(?:\n|$)",
     lambda m, a: _mismatch(_as_written(m[1], a), m[2], m[3])),
    (r"notation: The expected type `([^`]+)` has more than one", lambda m, a: f"Don't build a pair for {m[1]}: use Or.inl or Or.inr."),
    (r"notation: The expected type `([^`]+)` is not", lambda m, a: f"Don't build a pair for {m[1]}."),
    (r"Insufficient number of fields", lambda m, a: "Don't leave out a part of ⟨_, _⟩."),
    (r"^empty proof$", lambda m, a: "Don't leave the proof empty."),
    (r"Function expected|Unknown constant `CoeFun`", lambda m, a: "Don't apply a proof that is not an implication."),
    (r"unexpected (?:token|end of input)", lambda m, a: "Don't leave a bracket open: close every ( and ⟨."),
]


def _bad_projection(name, attempt):
    used = (re.findall(re.escape(name) + r"\.\w+", attempt) or [name + ".1"])[0]
    kind = "an iff" if used.endswith(("mp", "mpr")) else "a conjunction"
    return f"Don't use {used}: {name} is not {kind}."


def _mismatch(term, has, want):
    if term.startswith("fun "):
        return "Don't start with fun: the goal is not an implication."
    if has.endswith("→ " + want):
        return f"Don't stop at {term}: it needs one more argument."
    if "?m" in has + want or len(has + want) > 40:   # unreadable or long types: leave them out
        return f"Don't use {term} there: its type does not fit."
    return f"Don't use {term} there: it proves {has}, not {want}."


def error_item(attempt, result):
    """A "Don't ..." item from the first Lean message the tutor understands, else None."""
    for msg in result.messages:   # Lean's variants of one message, made alike first
        msg = re.sub(r"The last\n\s*(.+?)\nargument ", r"The argument\n  \1\n", msg)
        msg = re.sub(r"\nof sort `\w+` ", "\n", msg)
        for pattern, item in _ERRORS:
            m = re.search(pattern, msg, re.S)
            if m:
                text = item(m, attempt)
                return text if len(text) <= 90 else text.split(":")[0] + "."   # long types: drop them
    return None


def items(task, text, truncated, result):
    """Level 2 of advice(): 1 to 3 items about this attempt, in its own names: the reference's first rule,
    where the attempt leaves the reference, what Lean objected to. text: the attempt's proof text."""
    return advice(task, text, truncated, result, level=2)


# ---- rules over shapes (levels 3 and 4) -----------------------------------------------------------
# The paper's prompts (3) and (4) ask for orders useful to someone who never saw the attempt. Here an order
# states a rule over the statement's shapes (And A B, Iff A B, A → B, Or A B, Exists, Not A) with A, B
# for its parts: the same sentence for every statement of that shape, never a hypothesis name, never a proof.
SHAPE = {
    "use": "Do use the hypothesis that states the goal.",
    "and": "Do get A from And A B by .1 and B by .2.",
    "iff": "Do get B from Iff A B and A by .mp, and A from B by .mpr.",
    "imp": "Do apply a hypothesis A → B to a proof of A to get B.",
    "not": "Do apply a hypothesis Not A to a proof of A to get False.",
    "all": "Do apply a hypothesis ∀ x, P x to a term a to get P a.",
    "pair": "Do prove And A B by ⟨_, _⟩ from a proof of A and a proof of B.",
    "iff_pair": "Do prove Iff A B by ⟨_, _⟩ or Iff.intro from A → B and B → A.",
    "witness": "Do prove Exists by ⟨_, _⟩ from a witness and a proof for it.",
    "or_intro": "Do prove Or A B by Or.inl from A or by Or.inr from B.",
    "or_elim": "Do use Or A B by Or.elim with one fun for each case.",
    "exists_elim": "Do use Exists by Exists.elim with a fun of the witness and its proof.",
    "fun": "Do prove A → B or Not A by fun, then prove the rest from A.",
    "absurd": "Do prove any goal by absurd from a proof of A and a proof of Not A.",
    "false": "Do prove any goal by False.elim from a proof of False.",
}
_CONSTANTS = {"Or.inl": "or_intro", "Or.inr": "or_intro", "Or.elim": "or_elim", "Iff.intro": "iff_pair",
              "Exists.elim": "exists_elim", "absurd": "absurd", "False.elim": "false"}


def hypotheses(statement):
    """{name: type} of the binders `(h1 h2 : T)` before the statement's last top-level colon."""
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


def _type_rule(kind):
    """The rule that uses a hypothesis of this type by application."""
    kind = kind.strip()
    while kind.startswith("(") and kind.endswith(")"):
        kind = kind[1:-1].strip()
    if kind.startswith("Not "):
        return "not"
    if kind.startswith("∀"):
        return "all"
    return "imp"


def _name_rules(name, hyps, applied):
    base, *fields = name.split(".")
    if name in _CONSTANTS:
        return [_CONSTANTS[name]]
    found = ["iff" if f in ("mp", "mpr") else "and" for f in fields if f in ("1", "2", "mp", "mpr")]
    if applied and not fields and base in hyps:
        found.append(_type_rule(hyps[base]))
    elif applied and fields:
        found.append("imp")
    return found


def shape_rules(node, goal, hyps):
    """The SHAPE keys a proof term uses, outermost first, each once."""
    found, terms = [], {n for n, kind in hyps.items() if kind in ("α", "Type")}   # names of terms, not proofs

    def walk(node, goal=None, applied=False):
        kind = node[0]
        if kind == "name":
            found.extend(_name_rules(node[1], hyps, applied))
        elif kind == "proj":
            found.append("iff" if node[2] in ("mp", "mpr") else "and")
            walk(node[1])
        elif kind == "fun":
            found.append("fun")
            walk(node[2])
        elif kind == "pair":
            first = node[1][0]
            witness = first[0] == "name" and first[1] in terms or goal == "Exists"
            found.append("witness" if witness else "iff_pair" if goal == "Iff" else "pair")
            for x in node[1]:
                walk(x)
        else:   # app
            if node[1] == ("name", "Exists.elim") and len(node[2]) > 1 and node[2][1][0] == "fun":
                terms.add(node[2][1][1][0])   # Exists.elim h (fun x hx => ...): x is the witness
            walk(node[1], applied=True)
            for x in node[2]:
                walk(x)

    walk(node, goal)
    if node[0] == "name" and not found:   # the whole proof is one hypothesis
        found.append("use")
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


def advice(task, text, truncated, result, level=4, candidates=()):
    """The tutor's feedback on one attempt at the paper's four prompt levels (Appendix A.3, C.3), as items
    (level 1: one unnumbered remark). 1: a bare remark on what went wrong, in the attempt's names. 2: 1-3
    items about this attempt: the reference's first rule, where the attempt leaves the reference, what Lean
    objected to. 3: 1-3 self-contained orders over the statement's shapes (SHAPE: the reference's rules,
    outermost first, and the rule Lean's complaint breaks): no hypothesis names, no proof. 4: as 3, plus
    "be concise" when the attempt was cut off and "read Lean's message" when a multi-turn attempt repeated a
    rejected candidate. Never the proof at any level. text: the proof text; candidates: a multi-turn
    attempt's candidates, in order."""
    if level not in (1, 2, 3, 4):
        raise ValueError(f"tutor level must be 1, 2, 3 or 4, not {level!r}")
    if result.ok:
        return ["The attempt is right."] if level == 1 else ["Do keep the same proof."]
    if not (task.solution or "").strip():
        raise ValueError(f"tutor: task {task.name} has no reference solution")
    error = error_item(text, result)
    if level == 1:
        why = error.split(": ", 1)[1] if error and ": " in error else None
        return [f"The attempt fails: {why}" if why else "The attempt does not prove the goal."]
    goal = goal_head(task.statement)
    try:
        ref = parse_term(task.solution)
    except ValueError:             # not a mini-world term (e.g. a tactic proof)
        ref = None
    if level == 2:
        found = [f"Do {rule(ref, goal)}." if ref else f"Do start with {task.solution.split()[0]}."]
        try:
            att = parse_term(text)
            if ref is not None and rule(att, goal) == rule(ref, goal):
                found.append(first_difference(ref, att))
        except ValueError:
            pass
        return [x for x in found + [error] if x][:3]
    rules = [SHAPE[k] for k in shape_rules(ref, goal, hypotheses(task.statement))] if ref else []
    rules = rules or ["Do prove the goal from the hypotheses of the statement."]
    extra = [general(error)] if error else []
    if level == 4 and truncated:
        extra.append("Do write a shorter proof.")
    if level == 4 and text in list(candidates)[:-1]:
        extra.append("Don't repeat a rejected proof: read Lean's message first.")
    return rules[:max(1, 3 - len(extra))] + extra[:2]     # at least the first rule, at most 3 items
