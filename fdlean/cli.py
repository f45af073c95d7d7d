"""The command line of every script, from its settings dataclass; and user errors as one line.

Every script (fd.py, grpo.py, evaluate.py, sft.py, ...) declares its settings ONCE, as a dataclass at
the top of the file, each field with its comment:

    @dataclass
    class Config:
        alpha: float = 0.9            # EMA coefficient of the teacher
        tasks: str = "mini:1"         # training statements: mini, mini:LEVELS
                                      # or jsonl:PATH  (a comment line under a field continues its help)

and `cli.parse(Config, argv, prog="fd.py")` turns it into `--alpha`, `--tasks`, ... whose --help is the
whole comment and the default. A bool field is a switch (`--paper`; `--no-bf16` for one that is on
by default), a tuple field takes one or more values and may repeat (`--model A --model B`). A user's
mistake (a setting out of range, a missing file, no API key, no Lean) is one line on stderr and exit
status 2, found before any model loads (`fail`, `check`, `user_errors`); anything unexpected keeps
its traceback.
"""
import argparse
import ast
import contextlib
import inspect
import io
import math
import os
import sys
import textwrap
import tokenize
from dataclasses import MISSING, asdict, fields


def fail(message: str):
    """A user error: one line on stderr (what is wrong, what to do), exit status 2, no traceback."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not a usage block of 40 flags (--help shows those)
        fail(f"{self.prog}: {message} (see --help)")


@contextlib.contextmanager
def user_errors(what: str, *errors):
    """Set-up steps that read what the user named (a task file, a verifier, a feedback spec, a
    model): the listed exception types become one line "WHAT: why"; any other keeps its traceback."""
    try:
        yield
    except errors as e:
        why = f"{e.strerror}: {e.filename}" if isinstance(e, OSError) and e.strerror and e.filename else str(e)
        fail(f"{what}: {why}")


def main(run, script: str, then=lambda: ""):
    """A script's entry point: run() to its end; Ctrl-C stops it with one line that says how to continue (then())
    and exit status 130 (the shell's code for an interrupt), not a traceback."""
    try:
        return run()
    except KeyboardInterrupt:
        print(f"\n{script}: interrupted. {then()}".rstrip(), file=sys.stderr, flush=True)
        raise SystemExit(130) from None


def new_folder(out: str, script: str, option: str = "--out", own: tuple = ()):
    """The one rule for what a script writes: a folder that does not exist yet, or is empty (or, `own`, holds only
    what this script itself writes there and resumes: paper.py's runs). Never a file, never another script's
    output or a finished result: one line, exit status 2, before any slow work."""
    if os.path.exists(out) and not os.path.isdir(out):
        fail(f"{script}: {option} {out} is a file: give a folder (new or empty)")
    found = sorted(os.listdir(out)) if os.path.isdir(out) else []
    if found and not (own and set(found) <= set(own)):
        shown = ", ".join(found[:5]) + (" ..." if len(found) > 5 else "")
        fail(f"{script}: {option} {out} already holds files ({shown}): choose a new {option}, or delete it "
             f"(rm -r {out}) to write there again")


def check(cfg, rules, script: str):
    """Every setting in range before anything slow starts: "fd.py: --alpha 1.5: must be between 0 and 1".
    rules: (field, test, what the value must be). A NaN fails every test, as it should; an infinite number fails
    here for every setting (`--lr inf` passes "above 0")."""
    for name, value in vars(cfg).items():
        if isinstance(value, float) and math.isinf(value):
            fail(f"{script}: --{flag(name)} {value}: must be a finite number")
    for name, ok, must in rules:
        value = getattr(cfg, name)
        if not ok(value):
            fail(f"{script}: --{flag(name)} {value}: must be {must}")


def flag(name: str) -> str:
    return name.replace("_", "-")


def field_help(Config) -> dict:
    """{field: its whole comment}: the comment after the field and every comment-only line right under
    it that is indented deeper than the field (a comment line at the field's own indent is a section
    heading, not help). Read with Python's own tokenizer, so a `#` inside a string is no comment."""
    try:
        source = textwrap.dedent(inspect.getsource(Config))
    except (OSError, TypeError):  # defined where there is no source (python -c): no help texts
        return {}
    names = {n.lineno: (n.target.id, n.col_offset) for n in ast.walk(ast.parse(source))
             if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    code = {t.start[0] for t in tokens if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE,
                                                          tokenize.INDENT, tokenize.DEDENT)}
    helps, last, indent, row_before = {}, None, 0, 0
    for tok in tokens:
        if tok.type != tokenize.COMMENT:
            continue
        row, col = tok.start
        text = tok.string.lstrip("#").strip()
        if row in names:  # the comment after a field
            (last, indent), row_before = names[row], row
            helps[last] = text
        elif last and row not in code and row == row_before + 1 and col > indent:  # its next line
            helps[last] += " " + text
            row_before = row
        else:
            last = None
    return helps


def build_parser(Config, prog: str, description: str = "", positional=(), paper: dict | None = None) -> Parser:
    helps = field_help(Config)
    p = Parser(prog=prog, description=description)
    for f in fields(Config):
        default = f.default_factory() if f.default is MISSING else f.default
        text = helps.get(f.name, "").replace("%", "%%")
        name = "--" + flag(f.name)
        if f.name in positional:  # e.g. `python lean_env.py FILE`
            p.add_argument(f.name, nargs="?", default=None, help=text)
        elif isinstance(default, bool) and not default and (paper or {}).get(f.name):  # --paper turns it on: --no-tools
            p.add_argument(name, action=argparse.BooleanOptionalAction, default=None,
                           help=f"{text} (default: off; --paper: on)")
        elif isinstance(default, bool) and not default:  # a switch: --paper
            p.add_argument(name, action="store_const", const=True, default=None, help=f"{text} (default: off)")
        elif isinstance(default, bool):  # on by default: --no-bf16 turns it off
            p.add_argument(name, action=argparse.BooleanOptionalAction, default=None, help=f"{text} (default: on)")
        elif isinstance(default, tuple):
            shown = " ".join(map(str, default)) or "none"
            p.add_argument(name, nargs="+", action="extend", default=None, metavar=f.name.upper().rstrip("S"),
                           type=type(default[0]) if default else str, help=f"{text} (default: {shown})")
        else:  # a one-letter setting also has its short form: `-n 16` passes through torchrun, whose parser claims --n
            names = [name, "-" + f.name] if len(f.name) == 1 else [name]
            p.add_argument(*names, type=type(default), default=None, help=f"{text} (default: {default})")
    return p


def command(cfg, prog: str, **changes) -> str:
    """The command line that gives cfg with these changes: `python fd.py --steps 200 --feedback none`
    (settings at their default are left out)."""
    args = []
    for f in fields(cfg):
        value = changes.get(f.name, getattr(cfg, f.name))
        default = f.default_factory() if f.default is MISSING else f.default
        if value == default or f.name == "resume":
            continue
        if isinstance(value, bool):
            args.append(f"--{flag(f.name)}" if value else f"--no-{flag(f.name)}")
        elif isinstance(value, tuple):
            args.append(f"--{flag(f.name)} " + " ".join(map(str, value)))
        else:
            args.append(f"--{flag(f.name)} {value}")
    return " ".join([f"python {prog}"] + args)


def parse(Config, argv=None, prog: str = "", description: str = "", paper: dict | None = None, read_run=None,
          positional=()):
    """Config from the command line. Only the flags given are set; the rest keep their defaults.
    paper: the paper's values, applied by `--paper` under the flags given explicitly.
    read_run(folder) -> dict: with `--resume FOLDER`, the run's own settings are read back from it (`resumed`).
    positional: fields given without a flag (`FILE`)."""
    p = build_parser(Config, prog, description, positional, paper)
    given = {k: v for k, v in vars(p.parse_args(argv)).items() if v is not None}
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    if read_run is not None and given.get("resume"):
        return resumed(Config, given, read_run(given["resume"]), prog)
    cfg = Config(**given)
    if paper and getattr(cfg, "paper", False):
        cfg = Config(**{**asdict(cfg), **paper, **{k: v for k, v in given.items() if k in paper}})
    return cfg


# On --resume: what may differ from the run's own settings, and what the run folder may not choose for itself.
MACHINE = ("steps", "threads", "device")   # --steps extends the run; threads and device are this machine's
LOCATIONS = ("lean", "verifier", "base_url")   # programs that run, and servers that get proofs or a key


def resumed(Config, given: dict, saved: dict, prog: str):
    """The run's settings as its folder's config.json holds them, for --resume. Only MACHINE settings may change.
    A folder is data someone may have handed over: a program or server it names (--lean, a repl:/lake: project
    whose binaries run, a --base-url that receives the API key) is used only when given again on the command
    line; any other setting given with a different value is refused, not silently dropped."""
    out = given["resume"]
    foreign = sorted(set(saved) - {f.name for f in fields(Config)})
    if foreign:   # e.g. fd.py --resume on a grpo.py run
        fail(f"{prog}: --resume {out}: not a {prog} run (its config.json has settings {prog} does not have: "
             f"{', '.join(foreign[:4])}); resume it with the script that started it")
    saved = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}  # JSON has no tuple
    defaults = asdict(Config())
    changed = [k for k, v in given.items() if k not in MACHINE + LOCATIONS + ("resume", "out")
               and v != saved.get(k, defaults.get(k))]
    if changed:
        shown = ", ".join(f"--{flag(k)} {given[k]} (the run's: {saved.get(k, defaults.get(k))})" for k in changed)
        fail(f"{prog}: --resume {out} continues the run with its own settings; these differ: {shown}. Only "
             f"--{', --'.join(flag(k) for k in MACHINE)} may change: start a new run with a new --out instead")
    named = [k for k in LOCATIONS if k not in given and saved.get(k, defaults.get(k)) != defaults.get(k)]
    if named:
        shown = " ".join(f"--{flag(k)} {saved[k]}" for k in named)
        fail(f"{prog}: --resume {out}: its config.json names {shown}; a resumed run does not run programs or call "
             f"servers a run folder names: give {shown} again (or other ones) to use them")
    saved.update({k: given[k] for k in MACHINE + LOCATIONS if k in given}, resume=out, out=out)
    return Config(**saved)
