"""Ctrl-C, as a terminal sends it (SIGINT to the whole process group), stops a script within seconds with one
line that says how to continue, and exit status 130; paper.py starts no queued job and leaves no child running.
Real processes, a real signal (issue 30, rows 1 and 8)."""
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(args, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", FD_LEAN_CACHE=str(tmp_path / "cache"))
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)   # its own process group


def wait_for(condition, proc, seconds=240):
    deadline = time.time() + seconds
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the script never got there"
        time.sleep(0.2)


def interrupt(proc, seconds=30):
    os.killpg(proc.pid, signal.SIGINT)
    t0 = time.time()
    out, err = proc.communicate(timeout=seconds)
    return proc.returncode, err, time.time() - t0


def test_ctrl_c_stops_fd_and_says_how_to_resume(tiny_prover, tmp_path):
    run = tmp_path / "run"
    proc = start(["fd.py", "--model", tiny_prover, "--steps", "200", "--prompts", "4", "--eval-limit", "4",
                  "--eval-n", "1", "--save-every", "1", "--threads", "1", "--max-new-tokens", "16", "--out", str(run)],
                 tmp_path)
    metrics = run / "metrics.jsonl"
    wait_for(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 3, proc)   # saved a few steps
    code, err, took = interrupt(proc)
    assert code == 130 and took < 20, (code, err)
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"fd.py: interrupted. `python fd.py --resume {run}` continues it from its last save"


def test_ctrl_c_stops_paper_and_its_queue(tiny_prover, tmp_path):
    out = tmp_path / "paper"
    proc = start(["-m", "scripts.paper", "--model", tiny_prover, "--seeds", "2", "--steps", "200", "--methods", "fd",
                  "control", "--jobs", "1", "--eval-limit", "4", "--out", str(out)], tmp_path)
    runs = out / "runs"
    wait_for(lambda: (runs / "fd_s0" / "metrics.jsonl").exists(), proc)   # the first job is training
    code, err, took = interrupt(proc)
    assert code == 130 and took < 20, (code, err)
    assert "Traceback" not in err and "python -m scripts.paper" in err and "resumes" in err
    time.sleep(2)   # no queued job starts after the interrupt, and no child is left running
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == ["fd_s0"]
    left = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert not left, left
