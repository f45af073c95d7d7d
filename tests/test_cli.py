"""cli.py: the one way every script declares its settings: the dataclass's comments are the whole
--help, switches, repeatable tuples, --paper under explicit flags, --resume reading the run back."""
import json
from dataclasses import asdict, dataclass

import pytest

from fdlean import cli


@dataclass
class Settings:
    # a section heading: not the help of any field
    alpha: float = 0.9            # EMA coefficient,
                                  # and this line continues it (100% of it)
    name: str = "x # not a comment"  # a '#' inside a string is no comment
    steps: int = 10
    paper: bool = False           # the paper's values
    bf16: bool = True             # bf16 autocast
    no_std: bool = False          # a switch whose name starts with no_
    model: tuple = ()             # one or more models
    out: str = ""
    resume: str = ""              # a run folder


def test_help_is_each_fields_whole_comment():
    helps = cli.field_help(Settings)
    assert helps["alpha"] == "EMA coefficient, and this line continues it (100% of it)"
    assert helps["name"] == "a '#' inside a string is no comment"
    assert "steps" not in helps and "section" not in " ".join(helps.values())
    text = cli.build_parser(Settings, "t.py").format_help()
    assert "and this line continues it (100% of it)" in " ".join(text.split())


def test_flags_switches_tuples_and_the_paper():
    assert cli.parse(Settings, [], prog="t.py") == Settings()
    cfg = cli.parse(Settings, ["--alpha", "0.5", "--no-bf16", "--no-std", "--model", "a", "b", "--model", "c"],
                    prog="t.py")
    assert (cfg.alpha, cfg.bf16, cfg.no_std, cfg.model) == (0.5, False, True, ("a", "b", "c"))
    paper = dict(alpha=0.99, steps=500)
    assert cli.parse(Settings, ["--paper"], prog="t.py", paper=paper).alpha == 0.99
    cfg = cli.parse(Settings, ["--paper", "--alpha", "0.1"], prog="t.py", paper=paper)  # explicit flags win
    assert (cfg.alpha, cfg.steps) == (0.1, 500)
    assert cli.parse(Settings, ["--alpha", "0.1"], prog="t.py", paper=paper).steps == 10  # no --paper: unused


def test_resume_reads_the_run_back_and_only_steps_change():
    """Issue 30, row 5: a setting given with --resume used to be dropped silently; now it is refused by name."""
    saved = dict(alpha=0.3, name="run", steps=10, paper=False, bf16=True, no_std=False, model=["m"], resume="")
    cfg = cli.parse(Settings, ["--resume", "R", "--steps", "20", "--alpha", "0.3"], prog="t.py",
                    read_run=lambda out: dict(saved))
    assert (cfg.alpha, cfg.steps, cfg.resume, cfg.out, cfg.model) == (0.3, 20, "R", "R", ("m",))
    with pytest.raises(SystemExit) as e:
        cli.parse(Settings, ["--resume", "R", "--steps", "20", "--alpha", "0.9"], prog="t.py",
                  read_run=lambda out: dict(saved))
    assert e.value.code == 2


def test_a_bad_flag_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        cli.parse(Settings, ["--alpha", "high"], prog="t.py")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("t.py: argument --alpha: invalid float value: 'high'")
    with pytest.raises(SystemExit):
        cli.check(Settings(alpha=2.0), [("alpha", lambda v: 0 <= v <= 1, "between 0 and 1")], "t.py")
    assert capsys.readouterr().err == "t.py: --alpha 2.0: must be between 0 and 1\n"


def test_every_scripts_settings_have_help():
    """--help explains every setting of every script: no field without its comment."""
    import dataclasses

    import evaluate
    import fd
    import grpo
    import lean_env
    from mini import probes, tasks
    from scripts import calibrate, paper
    from small_prover import sft
    for Config in (fd.Config, grpo.Config, evaluate.Config, sft.Config, calibrate.Config, tasks.Config,
                   lean_env.Config, paper.Config, probes.Config):
        helps = cli.field_help(Config)
        missing = [f.name for f in dataclasses.fields(Config) if not helps.get(f.name)]
        assert not missing, f"{Config.__module__}.{Config.__name__}: no help for {missing}"


def test_command_rebuilds_a_command_line():
    cfg = cli.parse(Settings, ["--alpha", "0.5", "--no-bf16", "--model", "a", "b"], prog="t.py")
    line = cli.command(cfg, "t.py", steps=20, resume="R")
    assert line == "python t.py --alpha 0.5 --steps 20 --no-bf16 --model a b"
    assert cli.parse(Settings, line.split()[2:], prog="t.py") == cli.parse(
        Settings, ["--alpha", "0.5", "--steps", "20", "--no-bf16", "--model", "a", "b"], prog="t.py")


def test_a_resume_runs_no_program_its_folder_names(tmp_path, capsys):
    """Issue 29, row 13: `"lean": "<run>/lean"` in a handed-over run folder ran that script on --resume. Now a
    program (--lean, a repl:/lake: project) or a server (--base-url) named by config.json is used only when given
    again on the command line."""
    import fd
    cfg = fd.Config(out=str(tmp_path), lean=str(tmp_path / "lean"), verifier="repl:/x", steps=2)
    read = lambda out: json.loads(json.dumps(asdict(cfg)))
    with pytest.raises(SystemExit) as e:
        cli.parse(fd.Config, ["--resume", str(tmp_path), "--steps", "3"], prog="fd.py", read_run=read)
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"--lean {tmp_path / 'lean'}" in err and "--verifier repl:/x" in err
    again = cli.parse(fd.Config, ["--resume", str(tmp_path), "--lean", "/usr/bin/lean", "--verifier", "repl:/y"],
                      prog="fd.py", read_run=read)
    assert (again.lean, again.verifier, again.steps) == ("/usr/bin/lean", "repl:/y", 2)
    with pytest.raises(SystemExit):   # anything else that differs is refused by name
        cli.parse(fd.Config, ["--resume", str(tmp_path), "--lean", "x", "--verifier", "mini", "--lr", "0.5"],
                  prog="fd.py", read_run=read)
    assert "--lr 0.5 (the run's: 0.0001)" in capsys.readouterr().err


def test_resume_with_the_other_trainer_says_so(tmp_path, capsys):
    """Issue 30, row 7: fd.py --resume of a grpo.py run (and the reverse) was a TypeError traceback."""
    import fd
    import grpo
    for script, other in ((fd, grpo), (grpo, fd)):
        saved = json.loads(json.dumps(asdict(other.Config(out=str(tmp_path)))))
        with pytest.raises(SystemExit) as e:
            cli.parse(script.Config, ["--resume", str(tmp_path)], prog=f"{script.__name__}.py", read_run=lambda out, saved=saved: saved)
        assert e.value.code == 2 and f"not a {script.__name__}.py run" in capsys.readouterr().err
