"""cli.py: the one way every script declares its settings: the dataclass's comments are the whole
--help, switches, repeatable tuples, --paper under explicit flags, --resume reading the run back."""
from dataclasses import dataclass

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
    saved = dict(alpha=0.3, name="run", steps=10, paper=False, bf16=True, no_std=False, model=["m"], resume="")
    cfg = cli.parse(Settings, ["--resume", "R", "--steps", "20", "--alpha", "0.9"], prog="t.py",
                    read_run=lambda out: dict(saved))
    assert (cfg.alpha, cfg.steps, cfg.resume, cfg.out, cfg.model) == (0.3, 20, "R", "R", ("m",))


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
