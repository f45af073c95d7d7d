"""Every command written in README.md and docs/*.md runs through its settings check, so a documented command
cannot rot: its flags are accepted, its settings are in range, and the files and specs it names are read
(task sets, verifier specs, feedback specs, model names) up to the point where the script would load a model,
build the small prover, or write a data file, which is stopped here.

What cannot exist on this machine is stood in for, the way a user's machine would have it: a model folder that
an earlier documented command writes (runs/..., eval/...) is a folder with an HF config.json; the published
task files (minif2f.jsonl, lean_workbook.json) are small files in their published layouts; a Mathlib checker
(repl:, lake:, kimina:) is built with the real spec parsing and its backend's constructor replaced; API keys are
set to dummies. A command that fails only because it reads the output of another documented command (an
evaluation folder, a run's metrics) is accepted when its one-line error names that output.
"""
import importlib.util
import json
import os
import re
import shlex
from dataclasses import asdict
from types import SimpleNamespace

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md"] + sorted(os.path.join("docs", f) for f in os.listdir(os.path.join(ROOT, "docs"))
                               if f.endswith(".md"))
PLACEHOLDERS = {"TINY": "runs/tiny", "FOLDER": "runs/tiny", "M": "runs/M", "SPEC": "ground-truth",
                "BEFORE": "runs/eval_a", "AFTER": "runs/eval_b", "FILE": "demo.lean", "FILE.lean": "demo.lean"}
ARTIFACTS = ("runs/", "eval/", "tmp/")   # what documented commands write, and others read


def documented() -> list[tuple[str, str]]:
    """(page, command) for every command line in a ```bash block (continuation lines joined) and every inline
    `python ...` / `torchrun ...` span of the README and docs/."""
    found = []
    for page in PAGES:
        text = open(os.path.join(ROOT, page), encoding="utf-8").read()
        for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
            for line in re.sub(r"\\\n\s*", " ", block).split("\n"):
                if line.strip() and not line.strip().startswith("#"):
                    found.append((page, line.strip()))
        outside = re.sub(r"```.*?```", "", text, flags=re.S)
        found += [(page, span) for span in re.findall(r"`((?:[A-Z_]+=\S+ )*(?:python|torchrun) [^`]+)`", outside)]
    return sorted(set(found))


def split(command: str) -> list[list[str]]:
    """The command's words, one list per command joined by && (comments and environment settings dropped)."""
    command = re.sub(r"\s#.*$", "", command)
    parts = []
    for piece in command.split("&&"):
        words = shlex.split(os.path.expandvars(piece))
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words = words[1:]
        words = [PLACEHOLDERS.get(w, w) for w in words]
        parts.append([w.replace("/tmp/", "tmp/") if w.startswith("/tmp/") else w for w in words])   # kept in the sandbox
    return parts


class Reached(Exception):
    """The command got to the slow part (a model, a build, a data file): everything before it was checked."""


def stop(*args, **kwargs):
    raise Reached


def fake_model(path):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump({"model_type": "llama"}, f)


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A working folder with what the documented commands read, and the slow parts replaced by `stop`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-dummy")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-dummy")
    monkeypatch.setenv("HOME", str(tmp_path))
    theorem = "theorem {n} (x : Nat) (h : x = 2) : x + x = 4 := by sorry"
    with open("minif2f.jsonl", "w") as f:   # DeepSeek-Prover-V1.5's layout
        for i, split_name in enumerate(["valid", "test"]):
            f.write(json.dumps({"name": f"mathd_{i}", "split": split_name, "formal_statement": theorem.format(n=f"mathd_{i}"),
                                "informal_prefix": "/-- Show that x + x = 4. -/\n", "goal": "", "header": ""}) + "\n")
    with open("lean_workbook.json", "w") as f:   # LeanWorkbook's JSON array
        json.dump([{"formal_statement": theorem.format(n="lean_workbook_0"), "split": "lean_workbook",
                    "proof": ["subst h; rfl"]}], f)
    with open("demo.lean", "w") as f:
        f.write("prelude\n")
    with open("my_prompt.txt", "w") as f:   # a critique prompt of one's own (docs/feedback.md)
        f.write("Theorem: {statement}\nAttempt: {attempt}\nLean: {lean_output}\nAdvise.\n")
    import shutil
    shutil.copy(os.path.join(ROOT, "exercises", "e1_pass_at_k.py"), "my.py")
    from mathlib import kimina, repl
    from mini import probes, tasks
    from small_prover import sft, sft_turns
    for module, name in [(repl, "ReplPool"), (repl, "LakeEnv"), (kimina, "KiminaClient")]:
        monkeypatch.setattr(module, name, lambda **options: SimpleNamespace(version="stand-in", **options))
    for module, name in [(sft, "resolve_model"), (sft, "train"), (sft, "build_small_prover"), (sft_turns, "train"),
                         (tasks, "write_jsonl"), (probes, "write")]:
        monkeypatch.setattr(module, name, stop)
    return tmp_path


def run(words: list[str]):
    """Run one command in this process, from its parsing to the first slow part."""
    if words[0] == "torchrun":   # its own options, then the script and its arguments
        i = 1
        while i < len(words) and words[i].startswith("-"):
            i += 1 if "=" in words[i] or words[i] in ("--standalone",) else 2
        words = ["python"] + words[i:]
    if words[0] in ("pip", "wandb", "bash") or words[1:3] in (["-m", "pytest"], ["-m", "ruff"]):
        if words[1:3] == ["-m", "pytest"]:   # the tests it names exist
            assert all(os.path.exists(os.path.join(ROOT, w.split("::")[0])) for w in words[3:] if w.startswith("tests/"))
        return
    assert words[0] == "python", words
    if len(words) < 2 or words[1:] == ["-m", "FOLDER.NAME"]:   # a fragment in prose (`torchrun --nproc_per_node 2`)
        return
    if words[1] == "-c":
        exec(compile(words[2], "<documented>", "exec"), {})
        return
    script, argv = (words[2], words[3:]) if words[1] == "-m" else (words[1], words[2:])
    for flag in ("--model", "--init-from", "--resume"):   # what an earlier documented command wrote
        for i, w in enumerate(argv[:-1]):
            if w == flag and argv[i + 1].startswith(ARTIFACTS) and not os.path.exists(argv[i + 1]):
                fake_model(argv[i + 1])
                fake_model(os.path.join(argv[i + 1], "final"))
    if script in ("fd.py", "grpo.py"):
        module = importlib.import_module(script[:-3])
        if "--resume" in argv:   # a run folder with its settings and a saved state
            out = argv[argv.index("--resume") + 1]
            with open(os.path.join(out, "config.json"), "w") as f:
                json.dump(asdict(module.Config(out=out)), f)
            open(os.path.join(out, "state.pt"), "w").close()
        module.train(module.parse_args(argv))
    elif script.startswith(("bench/", "exercises/")):
        spec = importlib.util.spec_from_file_location("documented", os.path.join(ROOT, script))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if script.startswith("bench/"):   # a benchmark's flags are accepted (running it is the benchmark)
            from fdlean import cli
            cli.parse(module.Config, argv, prog=script)
        else:
            code = module.main(argv)
            assert code in (0, 1), (script, argv, code)   # 1: an exercise not yet written
    elif script == "fdlean.lm":
        assert len(argv) == 1   # `python -m fdlean.lm FOLDER`: prints two prompts and a greedy sample
    else:
        module = importlib.import_module(script.removesuffix(".py").replace("/", "."))
        module.main(argv)


@pytest.mark.parametrize("page,command", documented())
def test_a_documented_command_passes_its_settings_check(page, command, world, capsys):
    for words in split(command):
        try:
            run(words)
        except (Reached, SystemExit) as e:
            code = getattr(e, "code", 0)
            if code not in (0, None):   # a user error: only the output of another documented command may be missing
                err = capsys.readouterr().err.strip()
                assert code == 2 and any(a in err for a in ARTIFACTS) and "no" in err.lower(), \
                    f"{page}: `{command}` stopped with exit {code}: {err}"


def test_the_pages_hold_commands():
    commands = documented()
    assert len(commands) > 50
    assert ("README.md", "python fd.py --model small-prover          # builds the small prover once, then trains and "
            "measures FD (a few min)") in commands


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (not - or _), spaces as hyphens."""
    text = re.sub(r"`", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_every_link_between_the_pages_resolves():
    """Relative links in README.md and docs/ name a file that exists and, with #anchor on a page, a heading of it."""
    pages = ["README.md"] + [os.path.join("docs", p) for p in sorted(os.listdir(os.path.join(ROOT, "docs")))
                             if p.endswith(".md")]
    broken = []
    for page in pages:
        text = open(os.path.join(ROOT, page), encoding="utf-8").read()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):   # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            where = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path)) if path else \
                os.path.join(ROOT, page)
            if not os.path.exists(where):
                broken.append(f"{page}: {target} (no such file)")
            elif anchor and where.endswith(".md"):
                headings = re.findall(r"^#+\s+(.*)$", open(where, encoding="utf-8").read(), flags=re.M)
                if anchor not in {slug(h) for h in headings}:
                    broken.append(f"{page}: {target} (no such heading)")
    assert not broken, broken
