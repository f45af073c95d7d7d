"""Theorem sets: the mini world's committed test split and its endless training stream (theorems from
the generator in mini/world.py, never a test statement), and JSONL task files (miniF2F, LeanWorkbook).

    python -m mini.tasks --write-test           # regenerate data/mini_test.jsonl (fixed seed; 300 / 200 / 100 per level)
    python -m mini.tasks --show 6 --seed 0      # print a few training tasks

    tasks.load("mini", split="test")                   # the committed test split
    tasks.load("mini", split="train", n=1000, seed=0)  # fresh generated tasks, never a test statement
    tasks.train_stream(seed=0)                         # the same, forever
    tasks.stream("mini:1", seed=0)                     # level 1 only, forever (fd.py's default pool)
    tasks.load("jsonl:PATH")                           # a JSONL task file, or a published one as downloaded:
    tasks.load("jsonl:minif2f.jsonl@test")             #   DeepSeek-Prover's miniF2F, its test split only
    tasks.load("jsonl:lean_workbook.json")             #   LeanWorkbook's JSON array (formal_statement, proof, split)
"""
import hashlib
import itertools
import json
import os
import random
import re
from dataclasses import dataclass

from fdlean import cli
from fdlean.lean import DEFAULT_HEADER, Task
from fdlean.screen import WORD, statement_problem
from mini.world import Limits, make_task

TEST_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "mini_test.jsonl")


@dataclass
class Generation:
    """How the mini world's task sets are drawn (the generator's own limits: mini/world.py)."""
    mix: tuple = (0.45, 0.35, 0.20)  # training weight of levels 1, 2, 3: only mixed outcomes teach
    first_order: float = 0.2         # fraction of tasks over predicates on a type α
    limits: Limits = Limits()        # what one theorem may look like
    test_seed: int = 0
    test_levels: tuple = (1, 2, 1, 2, 1, 3)  # the test split's repeating level pattern: 300 / 200 / 100 of 600,
    test_size: int = 600             # weighted to the levels a small prover can learn from


# ---- splits: the test split is committed; training never repeats a test statement
def canonical(statement):
    """The statement up to the theorem's name and the names and order of its hypotheses: binders whose
    names nothing later mentions are anonymised and sorted."""
    s = re.sub(r'^(theorem|lemma)\s+\S+\s*', '', ' '.join(statement.split()))
    binders = []
    while s[:1] in ('(', '{', '['):
        nesting, end = 0, 0  # the binder ends where its bracket closes
        while end == 0 or nesting:
            nesting, end = nesting + (s[end] in '({[') - (s[end] in ')}]'), end + 1
        binders, s = binders + [s[:end]], s[end:].lstrip()
    kept, anonymous = [], []
    for k, binder in enumerate(binders):
        names, type_ = binder[1:-1].split(':', 1)
        later = set(re.findall(r"[\w'.]+", ' '.join(binders[k + 1:] + [s])))
        if any(n in later for n in names.split()):
            kept.append(binder)
        else:
            anonymous += [binder[0] + type_.strip() + binder[-1]] * len(names.split())
    return ' '.join(kept + sorted(anonymous) + [s])


_test_canonical = None


def train_stream(seed=0, cfg=None):
    """Fresh training tasks forever: levels drawn by cfg.mix, test statements skipped."""
    global _test_canonical
    cfg = cfg or Generation()
    if _test_canonical is None:
        test = read_jsonl(TEST_PATH) if os.path.exists(TEST_PATH) else []
        _test_canonical = {canonical(t.statement) for t in test}
    rng, i = random.Random(f"mini-train-{seed}"), 0
    while True:
        level = rng.choices([1, 2, 3], cfg.mix)[0]
        task = make_task(rng, level, rng.random() < cfg.first_order, f"mini_train_{seed}_{i}", cfg.limits)
        if canonical(task.statement) not in _test_canonical:
            yield task
            i += 1


def make_test(cfg=None):
    cfg = cfg or Generation()
    rng, seen, out = random.Random(f"mini-test-{cfg.test_seed}"), set(), []
    while len(out) < cfg.test_size:
        level = cfg.test_levels[len(out) % len(cfg.test_levels)]  # interleaved: any prefix covers every level
        task = make_task(rng, level, rng.random() < cfg.first_order, f"mini_test_{len(out) + 1:04d}", cfg.limits)
        if canonical(task.statement) not in seen:
            seen.add(canonical(task.statement))
            out.append(task)
    return out


# ---- task files: this project's JSONL, and the published miniF2F / LeanWorkbook layouts, read unchanged
SPACE = re.compile(r"\s*")
PROOF_TAIL = re.compile(r":=\s*(?:by\b\s*)?(?:sorry\s*)?$")   # `:= by`, `:= by sorry`, `:=  by sorry`, `:= by\n`


def read_jsonl(path, split=None):
    """Tasks from a file of records, one JSON object a line (JSONL) or one JSON array (LeanWorkbook's
    lean_workbook.json). A record: name, statement (ending with ':='), optional header, solution, level; or a
    published layout: `formal_statement` for statement, the name from `theorem NAME` when there is no `name`,
    the Mathlib header (fdlean.lean.DEFAULT_HEADER) when there is no `header`, the solution from `proof`
    (a text, or LeanWorkbook's list: its first non-empty one). A statement's `:= by` / `:= by sorry` tail is cut
    to `:=`. split: keep only records whose `split` field is that (miniF2F: valid | test; LeanWorkbook:
    lean_workbook | lean_workbook_plus). Errors name the file and the record's line."""
    tasks, names, splits = [], set(), set()
    for n, d in _records(path):
        where = f"{path}, line {n}"
        task, its_split = _task(d, where)
        splits.add(its_split)
        if split is not None and its_split != split:
            continue
        if task.name in names:
            raise ValueError(f"{where}: duplicate name {task.name!r}")
        names.add(task.name)
        tasks.append(task)
    if not tasks:  # nothing to train or evaluate on (and a stream over it would never yield)
        if split is not None:
            raise ValueError(f"no tasks with split {split!r} in {path} (its splits: "
                             f"{', '.join(sorted(map(str, splits))) or 'none'})")
        raise ValueError(f"no tasks in that file ({path})")
    return tasks


def _records(path):
    """(line, record) for each JSON value of a JSONL file, or of a file holding one JSON array."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if not text.lstrip().startswith("["):
        for n, line in enumerate(text.split("\n"), 1):   # JSON text holds no raw newline: a record is one line
            if line.strip():
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}, line {n}: bad JSON ({e})") from None
        return
    decoder, i, line, counted = json.JSONDecoder(), text.index("[") + 1, 1, 0
    while True:      # the array one element at a time, so each record knows its line
        i = SPACE.match(text, i).end()
        line, counted = line + text.count("\n", counted, i), i
        if text.startswith("]", i) and not text[i + 1:].strip():
            return
        try:
            record, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {e.lineno}: bad JSON ({e.msg})") from None
        yield line, record
        i = SPACE.match(text, i).end()
        if text.startswith(",", i):
            i += 1
        elif not text.startswith("]", i):
            line += text.count("\n", counted, i)
            raise ValueError(f"{path}, line {line}: bad JSON (expected ',' or ']' after a record)")


def _task(d, where):
    """(Task, its split or None) from one record; ValueError naming `where` for bad input."""
    if not isinstance(d, dict):
        raise ValueError(f"{where}: a record must be a JSON object")
    published = "statement" not in d and "formal_statement" in d
    statement = d.get("formal_statement") if published else d.get("statement")
    if not isinstance(statement, str):
        raise ValueError(f"{where}: needs a text field 'statement' (or 'formal_statement')")
    statement = PROOF_TAIL.sub(":=", statement.rstrip())
    if not statement.endswith(":="):
        raise ValueError(f"{where}: statement must end with ':=' (it ends ...{statement[-30:]!r})")
    name = d.get("name")
    if name is None:
        m = re.match(rf"\s*(?:theorem|lemma)\s+({WORD}(?:\.{WORD})*)", statement)
        if not m:
            raise ValueError(f"{where}: no 'name', and the statement does not start with `theorem NAME`")
        name = m.group(1)
    header = d.get("header", DEFAULT_HEADER if published else "")
    solution = d.get("solution", _published_proof(d["proof"], where) if "proof" in d else None)
    if not isinstance(name, str) or not isinstance(header, str) or not isinstance(solution, (str, type(None))) \
            or type(d.get("level", 0)) is not int or not isinstance(d.get("split"), (str, type(None))):
        raise ValueError(f"{where}: 'name', 'header', 'solution' and 'split' must be text and 'level' an integer")
    informal = d.get("informal", d.get("informal_prefix", ""))   # miniF2F's is a docstring: its words
    if not isinstance(informal, str):
        raise ValueError(f"{where}: 'informal_prefix' must be text")
    informal = re.sub(r"^\s*/-+-?\s*|\s*-/\s*$", "", informal)
    task = Task(name=name, statement=statement, header=header, solution=solution, level=d.get("level", 0),
                informal=informal)
    problem = statement_problem(task)  # one theorem, no comment, no command: it cannot carry its own proof
    if problem:
        raise ValueError(f"{where}: statement of {task.name!r}: {problem}")
    return task, d.get("split")


def _published_proof(proof, where):
    """The text after ':=' from a published `proof`: LeanWorkbook's are tactic lists' text, e.g. "nlinarith [...]"."""
    if isinstance(proof, list) and all(isinstance(p, str) for p in proof):
        proof = next((p for p in proof if p.strip()), None)
    if proof is None:
        return None
    if not isinstance(proof, str):
        raise ValueError(f"{where}: 'proof' must be text or a list of texts")
    proof = proof.strip()
    if re.match(r"by\b", proof) or not proof:
        return proof or None
    return "by " + proof if "\n" not in proof else "by\n" + "\n".join("  " + x for x in proof.split("\n"))


def load(spec="mini", split="test", n=1000, seed=0, cfg=None, limit=0):
    """A task set, the first `limit` tasks (0: all): "mini:test" (the committed split), "mini:train" (fresh
    generated tasks, seed 0, `limit` of them or 1,000), "jsonl:PATH" or "jsonl:PATH@SPLIT" (a JSONL file or a JSON
    array; @SPLIT keeps the records whose `split` is SPLIT); or "mini" with split train | test (n tasks from
    `seed` for train). A missing file raises OSError, anything else wrong ValueError (naming file and line)."""
    if spec in ("mini:test", "mini:train"):
        spec, split, n, seed = "mini", spec[len("mini:"):], limit or 1000, 0
    if spec.startswith("jsonl:"):
        path, file_split = spec[len("jsonl:"):], None
        if "@" in path and not os.path.exists(path):
            path, _, file_split = path.rpartition("@")
        found = read_jsonl(path, file_split)
    elif spec == "mini" and split in ("train", "test"):
        found = read_jsonl(TEST_PATH) if split == "test" else list(itertools.islice(train_stream(seed, cfg), n))
    else:
        raise ValueError(f"unknown task set {spec!r}: use mini:test, mini:train or jsonl:PATH (or jsonl:PATH@SPLIT)")
    return list(found[:limit] if limit else found)


def sha256(tasks) -> str:
    """Content hash of a task set: sha256 of the JSON list of [statement, solution] pairs, in order."""
    blob = json.dumps([[t.statement, t.solution] for t in tasks], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def stream(spec="mini", seed=0, skip=0):
    """Training statements forever, for fd.py and grpo.py: fresh mini-world tasks ("mini": every
    level, weighted by Generation.mix; "mini:1" or "mini:1,2": only those levels, same weights), or a
    JSONL set reshuffled every epoch. Deterministic in (spec, seed): a resumed run skips the `skip`
    it used."""
    if spec.startswith("mini"):  # the spec is read here, so a bad one fails before any training starts
        source = train_stream(seed, Generation(mix=mini_levels(spec)))
    else:
        source = _jsonl_stream(spec, seed)
    return itertools.islice(source, skip, None)


def mini_levels(spec):
    """The training mix of a "mini" or "mini:LEVELS" spec, e.g. "mini:1,2" -> (0.45, 0.35, 0)."""
    mix = Generation().mix
    if spec == "mini":
        return mix
    try:
        levels = {int(x) for x in spec[len("mini:"):].split(",")}
    except ValueError:
        levels = set()
    if not levels or not levels <= {1, 2, 3}:
        raise ValueError(f"task set {spec!r}: use mini, mini:LEVELS with levels 1-3 (e.g. mini:1,2), or jsonl:PATH")
    return tuple(w if lv in levels else 0.0 for lv, w in zip((1, 2, 3), mix))


def _jsonl_stream(spec, seed):
    pool = load(spec)
    for epoch in itertools.count():
        order = list(pool)
        random.Random(f"{seed}-{epoch}").shuffle(order)
        yield from order


def write_jsonl(items, path):
    """One task a line, in the format read_jsonl reads (name, statement, solution, level)."""
    with open(path, "w") as f:
        for t in items:
            f.write(json.dumps(dict(name=t.name, statement=t.statement, solution=t.solution, level=t.level),
                               ensure_ascii=False) + "\n")


# ---- the command line
@dataclass
class Config:
    write_test: bool = False                  # regenerate data/mini_test.jsonl (its seed is fixed)
    show: int = 0                             # print this many training tasks
    seed: int = 0                             # seed of the training tasks shown
    mix: tuple = Generation.mix               # weights of levels 1 2 3 in training: three numbers
    first_order: float = Generation.first_order  # fraction of tasks over predicates on a type α
                                              # (in the test split too, with --write-test)


def main(argv=None):
    s = cli.parse(Config, argv, prog="tasks.py",
                  description="The mini world's test split and training tasks: regenerate the split, show tasks.")
    try:
        mix = tuple(float(w) for w in s.mix)
    except ValueError:
        mix = ()
    if not (len(mix) == 3 and all(w >= 0 for w in mix) and sum(mix) > 0):  # a NaN fails too
        cli.fail(f"tasks.py: --mix {' '.join(map(str, s.mix))}: must be three weights, not negative, "
                 f"not all 0 (e.g. --mix 0.45 0.35 0.2)")
    cli.check(s, [("show", lambda v: v >= 0, "0 or more"),
                  ("first_order", lambda v: 0 <= v <= 1, "between 0 and 1")], "tasks.py")
    cfg = Generation(mix=mix, first_order=s.first_order)
    if s.write_test:
        write_jsonl(make_test(cfg), TEST_PATH)
        print(f"wrote {TEST_PATH}")
    for t in itertools.islice(train_stream(s.seed, cfg), s.show):
        print(f"-- level {t.level}\n{t.statement}\n  {t.solution}")


if __name__ == "__main__":
    cli.main(main, "tasks.py")
