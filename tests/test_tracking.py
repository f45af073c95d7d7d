"""tracking.py with the real wandb in offline mode: what it writes under the run folder is read back
from the run's .wandb file. wandb has no public reader for that file, so `records` below reads its
layout (a LevelDB-style log of wandb.proto Records) directly."""
import glob
import json
import math
import os
import subprocess
import sys
import time

import pytest

from training import tracking

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

wandb = pytest.importorskip("wandb")
from wandb.proto.wandb_internal_pb2 import Record  # noqa: E402


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """wandb offline, quiet, and with its settings and caches under tmp_path (not ~/.config)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    wandb.teardown()  # wandb reads its settings from the environment once per process: this test's, as a trainer would
    yield tmp_path
    wandb.teardown()


def records(path):
    """The Records of a .wandb file: a 7-byte header (":W&B", 0xBEE1, version), then 32 KiB blocks of
    chunks (4-byte checksum, 2-byte length, 1-byte type: 1 whole, 2 first, 3 middle, 4 last part);
    a block with under 7 bytes left is padded."""
    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        room = 32768 - pos % 32768
        if room < 7:
            pos += room
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            yield Record.FromString(pending)
            pending = b""


def read_runs(out, wait=20.0):
    """[(run folder, run record, config, history rows)] of each offline run under out, in order. W&B's service writes
    a run's file after finish() returns (issue 30, row 10: read at once, a file was at times still empty): wait,
    up to `wait` seconds, until every file ends with its exit record."""
    deadline = time.time() + wait
    while time.time() < deadline:
        paths = glob.glob(os.path.join(out, "wandb", "offline-run-*", "run-*.wandb"))
        if paths and all((list(records(p)) or [None])[-1] is not None
                         and list(records(p))[-1].WhichOneof("record_type") == "exit" for p in paths):
            break
        time.sleep(0.1)
    runs = []
    for folder in sorted(glob.glob(os.path.join(out, "wandb", "offline-run-*"))):
        [path] = glob.glob(os.path.join(folder, "run-*.wandb"))
        run, config, history = None, {}, []
        for r in records(path):
            kind = r.WhichOneof("record_type")
            if kind == "run":
                run = r.run
                config.update({u.key: json.loads(u.value_json) for u in r.run.config.update})
            elif kind == "config":
                config.update({u.key: json.loads(u.value_json) for u in r.config.update})
            elif kind == "history":
                row = {i.key or ".".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
                history.append({"step": r.history.step.num, **row})
        runs.append((folder, run, config, history))
    return runs


def plot(path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1, 2], [1.0, 0.5, 0.25])
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def test_no_project_never_imports_wandb(tmp_path):
    # a fresh interpreter: this test process imports wandb for the other tests
    code = ("import sys; from training import tracking; assert tracking.start('', sys.argv[1], {'lr': 1.0}) is None; "
            "print('wandb' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "False"
    assert not (tmp_path / "run").exists()


def test_offline_run_holds_config_rows_and_plots(offline):
    out = str(offline / "fd_small")
    tracker = tracking.start("fd-test", out, {"lr": 1e-5, "feedback": "mini", "steps": 3})
    rows = [{"step": s, "loss": 1.0 / s, "train_acc": s / 4, "heldout_pass1": None} for s in (1, 2, 3)]
    for row in rows:
        tracker.log(row, row["step"])
    tracker.images({"curve": plot(offline / "curve.png"), "not_drawn": str(offline / "absent.png")}, step=3)
    tracker.finish()

    [(folder, run, config, history)] = read_runs(out)
    run_id = open(os.path.join(out, "wandb_id.txt")).read().strip()
    assert run.run_id == run_id and folder.endswith(run_id)
    assert run.project == "fd-test" and run.display_name == "fd_small"  # named after the run folder
    assert {k: config[k] for k in ("lr", "feedback", "steps")} == {"lr": 1e-5, "feedback": "mini", "steps": 3}
    metrics = [h for h in history if "loss" in h]
    assert [h["step"] for h in metrics] == [1, 2, 3]
    assert [h["loss"] for h in metrics] == [r["loss"] for r in rows]
    assert [h["train_acc"] for h in metrics] == [0.25, 0.5, 0.75]
    assert not any("heldout_pass1" in h for h in history)  # None: not measured that step
    [image] = [h for h in history if "curve._type" in h]
    assert image["step"] == 3 and image["curve._type"] == "image-file"
    assert os.path.isfile(os.path.join(folder, "files", image["curve.path"]))
    assert not any(k.startswith("not_drawn") for h in history for k in h)


def test_resume_continues_the_same_run(offline):
    out = str(offline / "run")
    first = tracking.start("fd-test", out, {"steps": 2})
    for step in (1, 2):
        first.log({"loss": 2.0 - step}, step)
    first.finish()
    run_id = open(os.path.join(out, "wandb_id.txt")).read().strip()

    again = tracking.start("fd-test", out, {"steps": 4}, resume=True)  # --resume OUT --steps 4
    for step in (3, 4):
        again.log({"loss": 2.0 - step}, step)
    again.finish()
    assert open(os.path.join(out, "wandb_id.txt")).read().strip() == run_id
    runs = read_runs(out)
    assert [run.run_id for _, run, _, _ in runs] == [run_id, run_id]
    assert [[h["step"] for h in history if "loss" in h] for *_, history in runs] == [[1, 2], [3, 4]]
    assert runs[1][2]["steps"] == 4

    # a new run in a folder (not a resume) is a new W&B run
    tracking.start("fd-test", out, {"steps": 1}).finish()
    assert open(os.path.join(out, "wandb_id.txt")).read().strip() != run_id


def test_values_that_are_not_numbers_are_left_out(offline, capsys):
    out = str(offline / "run")
    tracker = tracking.start("fd-test", out, {})
    tracker.log({"step": 1, "loss": math.nan, "kl": math.inf, "heldout_pass1": None, "feedback": "text",
                 "train_acc": 0.5, "skipped_nonfinite": 1}, 1)
    tracker.finish()
    assert "warning" not in capsys.readouterr().err
    [(_, _, _, history)] = read_runs(out)
    [row] = [h for h in history if "train_acc" in h]
    assert {k: v for k, v in row.items() if not k.startswith("_")} == {"step": 1, "train_acc": 0.5,
                                                                       "skipped_nonfinite": 1}


def test_a_failure_mid_run_warns_once_and_goes_on(offline, capsys):
    out = str(offline / "run")
    tracker = tracking.start("fd-test", out, {})
    broken = offline / "broken.png"
    broken.write_bytes(b"not a png")  # a plot file cut short: the image cannot be read
    tracker.images({"curve": str(broken)}, step=1)
    tracker.images({"curve": str(broken)}, step=1)
    tracker.log({"loss": 0.5}, 2)
    tracker.finish()
    tracker.log({"loss": 0.25}, 3)  # after finish wandb refuses: still no exception, no second warning
    err = capsys.readouterr().err
    assert err.count("warning: W&B tracking failed") == 1 and "training goes on" in err
    [(_, _, _, history)] = read_runs(out)
    assert [h["loss"] for h in history if "loss" in h] == [0.5]


def test_start_failures_say_what_to_do(offline, monkeypatch):
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "wandb", None)  # as if not installed: `import wandb` fails
        with pytest.raises(tracking.TrackingError, match="pip install wandb"):
            tracking.start("fd-test", str(offline / "a"), {})

    # online with no login anywhere (no key, no ~/.netrc): wandb refuses before any network call
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("HOME", str(offline / "home"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(offline / "config"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("NETRC", raising=False)
    with pytest.raises(tracking.TrackingError) as error:
        tracking.start("fd-test", str(offline / "b"), {})
    message = str(error.value)
    assert "\n" not in message and "wandb login" in message and "WANDB_MODE=offline" in message
