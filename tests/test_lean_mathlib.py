"""lean_mathlib's Mathlib-world backends against FAKES (Lean + Mathlib cannot be installed here): the REPL pool
against tests/fake_repl.py, the Kimina client against a local http.server, the lake backend against a fake
`lake` script; and verifier.load, which chooses among them and the mini world from a spec.
    Run: python -m pytest -q tests/test_lean_mathlib.py"""
import collections
import http.server
import json
import os
import socket
import sys
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
import fake_repl  # noqa: E402

import lean_env  # noqa: E402
import lean_mathlib  # noqa: E402
import verifier  # noqa: E402
from lean_env import Task  # noqa: E402

FAKE = [sys.executable, os.path.join(ROOT, "tests", "fake_repl.py")]
SQ = Task("sq_nonneg_test", "theorem sq_nonneg_test (x : ℝ) :\n    x ^ 2 ≥ 0 :=")
OPEN = Task("opened", "theorem opened (x : ℝ) : x ≥ x :=", header="import Mathlib\nopen Real")
STD = "by positivity"


def pool(tmp_path, **kw):
    opts = dict(project=str(tmp_path), repl=FAKE + ["--log", str(tmp_path / "log")], lake=None, workers=1,
                timeout=1.5, import_timeout=30)
    return verifier.load("repl", **{**opts, **kw})


def fake_lake(tmp_path):
    """A `lake` script that runs tests/fake_repl.py as `lake env lean --json FILE`."""
    (tmp_path / "bin").mkdir(exist_ok=True)
    lake = tmp_path / "bin" / "lake"
    lake.write_text(f'#!/bin/sh\nexec "{FAKE[0]}" "{FAKE[1]}" --lake "$@"\n')
    lake.chmod(0o755)
    return str(lake)


def log(tmp_path):
    """[(pid, request)] in the order the fake REPLs got them."""
    with open(tmp_path / "log") as f:
        return [(int(p), json.loads(r)) for p, r in (line.split("\t", 1) for line in f)]


def imports(tmp_path):
    """{pid: [headers imported]}"""
    out = collections.defaultdict(list)
    for pid, req in log(tmp_path):
        if "env" not in req:
            out[pid].append(req["cmd"])
    return out


# ----------------------------------------------------------------------------- screening and judging
def test_screen_mathlib_variant(tmp_path):
    assert lean_mathlib.screen(SQ, "by\n  have h := Nat.mod_two_eq_zero_or_one (n%2)\n  positivity") is None
    assert lean_mathlib.screen(SQ, "by nlinarith [sq_nonneg (x - 1), sq_abs x]") is None
    for bad in ["by sorry", "by admit", "by\n  #exit", "by run_tac pure ()", "by native_decide",
                "by exact sq_nonneg_test x",
                "by simp\n\ntheorem extra : True := trivial", "by\n  set_option maxHeartbeats 0 in simp", "", 3]:
        assert lean_mathlib.screen(SQ, bad), bad
    # the same keyword tokenizer and statement validation as the mini world
    for bad in ["by simp endλ", "by exact h\u2028sectionλ", "by simp\nmeta def x := 1"]:
        assert lean_mathlib.screen(SQ, bad), bad
    smuggled = lean_env.Task("sm", "theorem sm : True := trivial -- : False :=")
    with verifier.load("lake", project=str(tmp_path), lake=sys.executable) as env:
        r = env.check(smuggled, "by simp")
    assert r.status == "rejected" and "statement" in r.messages[0]


def test_judge_axioms_and_forgery():
    span = (1, 10, 1)
    ok = {"severity": "info", "data": "'sq_nonneg_test' depends on axioms: [propext,\n Classical.choice,\n Quot.sound]"}
    assert lean_mathlib.judge("sq_nonneg_test", {}, [ok], span).ok
    none = {"severity": "info", "data": "'sq_nonneg_test' does not depend on any axioms"}
    assert lean_mathlib.judge("sq_nonneg_test", {}, [none], span).ok
    assert not lean_mathlib.judge("sq_nonneg_test", {}, [], span).ok      # no positive confirmation
    for warning in ["declaration uses 'sorry'", "declaration uses `sorry`"]:    # older / newer Lean
        r = lean_mathlib.judge("sq_nonneg_test", {"messages": [{"severity": "warning", "data": warning}]}, [ok], span)
        assert r.status == "error" and "uses sorry" in r.messages[-1]
    # a proof that `trace`s a clean-looking line cannot hide what our own #print says
    real = {"severity": "info", "pos": {"line": 3, "column": 0},
            "data": "'sq_nonneg_test' depends on axioms: [sorryAx]"}
    forged = {"severity": "info", "pos": {"line": 1, "column": 20}, "data": none["data"]}
    r = lean_mathlib.judge_file("sq_nonneg_test", {"messages": [forged, real]}, span)
    assert not r.ok and "sorryAx" in r.messages[-1]
    unconfirmed = {"messages": [forged, real | {"data": "'other' ..."}]}     # only the forged one names us
    assert not lean_mathlib.judge_file("sq_nonneg_test", unconfirmed, span).ok


# ----------------------------------------------------------------------------- the REPL pool (fake REPL)
def test_repl_verdicts_and_header_once(tmp_path):
    with pool(tmp_path, workers=2) as env:
        assert isinstance(env, lean_mathlib.ReplPool)
        items = [(SQ, STD), (SQ, "by\n  nlinarith [wrong]"), (SQ, "by exact cheat_axiom"), (SQ, "by noaxioms"),
                 (SQ, "by sorry"), (SQ, STD), (SQ, STD), (SQ, "by nlinarith [wrong]")]
        res = env.check_many(items)
        assert [r.status for r in res] == ["ok", "error", "error", "ok", "rejected", "ok", "ok", "error"]
        assert res[7].messages[0].startswith("1:14: error: unsolved goals")      # column counted from the proof
        assert res[1].messages[0].startswith("2:13: error: unsolved goals")      # position inside the proof
        assert "non-standard axioms: sorryAx" in res[2].messages[-1]
        assert "sorry" in res[4].messages[0]
        bypass = env._check(SQ, "by sorry")           # even unscreened, the REPL's sorries reject it
        assert bypass.status == "error" and "uses sorry" in bypass.messages[-1]
    heads = imports(tmp_path)
    assert 1 <= len(heads) <= 2 and all(h == [lean_mathlib.DEFAULT_HEADER] for h in heads.values())
    checked = [req for _, req in log(tmp_path) if "env" in req]
    assert any(req["cmd"] == "#print axioms sq_nonneg_test" for req in checked)
    assert any(req["cmd"] == SQ.statement + " " + STD for req in checked)


def test_repl_timeout_and_crash_restart(tmp_path):
    with pool(tmp_path) as env:
        res = env.check_many([(SQ, STD), (SQ, "by hang"), (SQ, STD), (SQ, "by crash"), (SQ, STD)])
        with pytest.raises(ProcessLookupError):
            os.kill(log(tmp_path)[0][0], 0)       # the hung process was killed (and reaped) at once
    assert [r.status for r in res] == ["ok", "timeout", "ok", "crash", "ok"]
    assert "within 1.5 s" in res[1].messages[0] and "exit code 7" in res[3].messages[0]
    heads = imports(tmp_path)
    assert len(heads) == 3 and all(len(h) == 1 for h in heads.values())     # each restart re-imports, once


def test_repl_several_headers_and_bad_header(tmp_path):
    bad = Task("b", "theorem b : True :=", header="import BadImport")
    with pool(tmp_path) as env:
        res = env.check_many([(SQ, STD), (OPEN, STD), (SQ, STD), (OPEN, STD), (bad, "trivial"), (bad, "trivial")])
    assert [r.status for r in res] == ["ok"] * 4 + ["error"] * 2
    assert "unknown module prefix" in res[4].messages[0]
    (heads,) = imports(tmp_path).values()
    assert heads == [lean_mathlib.DEFAULT_HEADER, OPEN.header, bad.header]   # one env per header, bad one once
    envs = {req["cmd"].split(" :")[0]: req["env"] for _, req in log(tmp_path) if req["cmd"].startswith("theorem")}
    assert envs["theorem sq_nonneg_test (x"] != envs["theorem opened (x"]


def test_repl_memory_limit_and_recycling(tmp_path):
    with pool(tmp_path, memory_mb=1024, recycle_after=2) as env:
        res = env.check_many([(SQ, "by rlimit"), (SQ, STD), (SQ, STD)])
    assert all(r.ok for r in res)
    assert f"RLIMIT_AS={(lean_env.LEAN_RESERVE_MB + 1024) << 20}" in res[0].messages[0]
    assert len(imports(tmp_path)) == 2


def test_repl_setup_errors(tmp_path):
    with pytest.raises(lean_env.LeanNotFound):
        verifier.load("repl", project=str(tmp_path), repl=str(tmp_path / "no-repl"), lake=None)
    if not lean_mathlib.shutil.which("repl"):
        with pytest.raises(lean_env.LeanNotFound, match="REPL binary"):
            verifier.load("repl", project=str(tmp_path), lake=None)
    dead = verifier.load("repl", project=str(tmp_path), repl=[sys.executable, "-c", "import sys; sys.exit(3)"],
                         lake=None, import_timeout=30)
    with pytest.raises(lean_env.LeanNotFound, match="exit code 3"):
        dead.check(SQ, STD)


# ----------------------------------------------------------------------------- Kimina (local http.server)
class Kimina(http.server.BaseHTTPRequestHandler):
    script, requests = [], []        # per request: "ok" | "500" | "garbage" | "400"

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Kimina.requests.append((self.path, dict(self.headers), body))
        action = Kimina.script.pop(0) if Kimina.script else "ok"
        if action in ("500", "400"):
            self.send_response(int(action))
            self.end_headers()
            self.wfile.write(b"boom")
            return
        out = {"results": [self.one(c) for c in body["codes"]]} if action == "ok" else None
        data = json.dumps(out).encode() if out else b"<html>not json"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data)

    @staticmethod
    def one(code):
        text = code["proof"]
        if "hang" in text:
            return {"custom_id": code["custom_id"], "error": "Lean REPL command timed out in 5 seconds"}
        if "crash" in text:
            return {"custom_id": code["custom_id"], "error": "Lean process broken pipe"}
        lines = text.split("\n")           # the server runs leading imports apart: positions count from the body
        k = next(i for i, x in enumerate(lines) if x.strip() and not x.startswith("import "))
        messages, sorries = fake_repl.check_text("\n".join(lines[k:]))
        return {"custom_id": code["custom_id"], "error": None,
                "response": {"env": 0, "messages": messages, "sorries": sorries, "time": 0.1}}


@pytest.fixture
def server():
    Kimina.script, Kimina.requests = [], []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Kimina)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_kimina_verdicts_and_format(server):
    env = verifier.load("kimina", url=server, api_key="k3y", batch_size=3, backoff=0.01)
    items = [(SQ, STD), (SQ, "by\n  nlinarith [wrong]"), (SQ, "by exact cheat_axiom"), (SQ, "by hang"),
             (SQ, "by crash"), (SQ, "by sorry"), (OPEN, STD)]
    res = env.check_many(items)
    assert [r.status for r in res] == ["ok", "error", "error", "timeout", "crash", "rejected", "ok"]
    assert res[1].messages[0].startswith("2:13: error: unsolved goals")
    assert "sorryAx" in res[2].messages[-1]
    assert len(Kimina.requests) == 2           # 6 screened-in items, batches of 3
    path, headers, body = Kimina.requests[0]
    assert path == "/verify" and headers["Authorization"] == "Bearer k3y"
    assert set(body) == {"codes", "timeout", "infotree_type", "disable_cache"} and body["infotree_type"] is None
    code = body["codes"][0]
    assert set(code) == {"custom_id", "proof"} and code["proof"].startswith(lean_mathlib.DEFAULT_HEADER)
    assert code["proof"].rstrip().endswith("#print axioms sq_nonneg_test")
    assert any(c["proof"].startswith("import Mathlib\nopen Real\n") for _, _, b in Kimina.requests for c in b["codes"])


def test_kimina_retries_and_failures(server):
    env = verifier.load("kimina", url=server, backoff=0.01, retries=2)
    Kimina.script = ["500", "500"]
    assert env.check(SQ, STD).ok and len(Kimina.requests) == 3
    Kimina.script = ["garbage"]
    r = env.check(SQ, STD)
    assert r.status == "crash" and "unreadable" in r.messages[0]
    Kimina.script = ["500"] * 3
    with pytest.raises(lean_mathlib.KiminaError, match="HTTP 500"):
        env.check(SQ, STD)
    Kimina.script = ["400"]
    with pytest.raises(lean_mathlib.KiminaError, match="rejected the request"):
        env.check(SQ, STD)


def test_kimina_connection_refused():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = verifier.load("kimina", url=f"http://127.0.0.1:{port}", retries=1, backoff=0.01)
    with pytest.raises(lean_mathlib.KiminaError, match="did not answer after 2 tries.*refused"):
        env.check_many([(SQ, STD)])


# ----------------------------------------------------------------------------- lake env lean (fake lake)
def test_lake_backend(tmp_path):
    env = verifier.load("lake", project=str(tmp_path), lake=fake_lake(tmp_path), timeout=1.5, workers=2)
    res = env.check_many([(SQ, STD), (SQ, "by\n  nlinarith [wrong]"), (SQ, "by exact cheat_axiom"),
                          (SQ, "by hang"), (SQ, "by crash"), (OPEN, "by noaxioms")])
    assert [r.status for r in res] == ["ok", "error", "error", "timeout", "crash", "ok"]
    assert res[1].messages[0].startswith("2:13: error: unsolved goals")
    assert "exit code 7" in res[4].messages[0] or "Lean stopped" in res[4].messages[0]
    assert os.listdir(env.tmp) == []
    env.close()
    assert not os.path.exists(env.tmp)


# ----------------------------------------------------------------------------- verifier.load: a spec -> a checker
def test_verifier_load_chooses_the_checker_from_a_spec(tmp_path, server):
    mini = verifier.load("mini", workers=1)
    assert isinstance(mini, lean_env.LeanEnv)
    assert mini.check(Task("t_id", "theorem t_id (p : Prop) (hp : p) : p :="), "hp").ok     # the real Lean
    with verifier.load(f"repl:{tmp_path}", repl=FAKE, lake=None, workers=1) as env:
        assert isinstance(env, lean_mathlib.ReplPool) and env.project == str(tmp_path)
        assert env.check(SQ, STD).ok and not env.check(SQ, "by nlinarith [wrong]").ok
    with verifier.load(f"lake:{tmp_path}", lake=fake_lake(tmp_path)) as env:
        assert isinstance(env, lean_mathlib.LakeEnv) and env.project == str(tmp_path)
        assert env.check(SQ, STD).ok and not env.check(SQ, "by nlinarith [wrong]").ok
    env = verifier.load(f"kimina:{server}", backoff=0.01, lean="")  # the scripts pass --lean "" when none is named
    assert isinstance(env, lean_mathlib.KiminaClient) and env.url == server
    with pytest.raises(ValueError, match="a `lean` executable is for the mini world"):
        verifier.load(f"kimina:{server}", lean="/usr/bin/lean")
    assert env.check(SQ, STD).ok and [path for path, _, _ in Kimina.requests] == ["/verify"]
    for bad in ("nonsense", "mini:extra", "repl2:/x", "Mini"):
        with pytest.raises(ValueError, match="unknown verifier .*use mini, repl:PROJECT, lake:PROJECT or kimina:URL"):
            verifier.load(bad)
    assert (verifier.Task, verifier.Result, verifier.LeanNotFound) == (Task, lean_env.Result, lean_env.LeanNotFound)


def test_lean_env_load_serves_only_the_mini_world():
    for spec in ("repl:/x", "kimina:http://127.0.0.1:9", "lake"):
        with pytest.raises(ValueError, match="mini world only: use verifier.load"):
            lean_env.load(spec)
