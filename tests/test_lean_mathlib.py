"""lean_mathlib's Mathlib-world backends against FAKES (Lean + Mathlib cannot be installed here): the REPL pool
against tests/fake_repl.py, the Kimina client against a local http.server, the lake backend against a fake
`lake` script; and lean_env.load, which chooses among them and the mini world from a spec.
    Run: python -m pytest -q tests/test_lean_mathlib.py"""
import collections
import copy
import gzip
import json
import os
import random
import socket
import sys
import time
import tracemalloc

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from fake_kimina import Kimina, start_kimina  # noqa: E402  (tests/fake_kimina.py: the fake Kimina server)

import lean_env  # noqa: E402
from lean_env import Task  # noqa: E402
from mathlib import kimina as lean_kimina  # noqa: E402
from mathlib import repl as lean_mathlib  # noqa: E402

FAKE = [sys.executable, os.path.join(ROOT, "tests", "fake_repl.py")]
SQ = Task("sq_nonneg_test", "theorem sq_nonneg_test (x : ℝ) :\n    x ^ 2 ≥ 0 :=")
OPEN = Task("opened", "theorem opened (x : ℝ) : x ≥ x :=", header="import Mathlib\nopen Real")
STD = "by positivity"


def pool(tmp_path, **kw):
    opts = dict(project=str(tmp_path), repl=FAKE + ["--log", str(tmp_path / "log")], lake=None, workers=1,
                timeout=1.5, import_timeout=30)
    return lean_env.load("repl", **{**opts, **kw})


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
    with lean_env.load("lake", project=str(tmp_path), lake=sys.executable) as env:
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
    assert f"RLIMIT_AS={(lean_mathlib.lean.LEAN_RESERVE_MB + 1024) << 20}" in res[0].messages[0]
    assert len(imports(tmp_path)) == 2


def test_repl_setup_errors(tmp_path):
    with pytest.raises(lean_env.LeanNotFound):
        lean_env.load("repl", project=str(tmp_path), repl=str(tmp_path / "no-repl"), lake=None)
    if not lean_mathlib.shutil.which("repl"):
        with pytest.raises(lean_env.LeanNotFound, match="REPL binary"):
            lean_env.load("repl", project=str(tmp_path), lake=None)
    dead = lean_env.load("repl", project=str(tmp_path), repl=[sys.executable, "-c", "import sys; sys.exit(3)"],
                         lake=None, import_timeout=30)
    with pytest.raises(lean_env.LeanNotFound, match="exit code 3"):
        dead.check(SQ, STD)


# ----------------------------------------------------------------------------- Kimina (local http.server: tests/fake_kimina.py)
@pytest.fixture
def server():
    srv, url = start_kimina()
    yield url
    srv.shutdown()
    srv.server_close()


def kimina(url, **kw):
    return lean_env.load("kimina", url=url, **{"backoff": 0.01, "busy_wait": 0.01, "max_repls": 8, **kw})


def test_kimina_verdicts_format_and_positions(server):
    env = kimina(server, api_key="k3y", batch_size=3, max_repls=6)
    many = Task("many", "theorem many (x : ℝ) : x ≥ x :=", header="import Mathlib\nimport Aesop\n\n\nopen Real\n")
    items = [(SQ, STD), (SQ, "by\n  nlinarith [wrong]"), (SQ, "by exact cheat_axiom"), (SQ, "by sorry"),
             (OPEN, "by\n  nlinarith [wrong]"), (many, "by\n  simp\n  nlinarith [wrong]"), (OPEN, STD)]
    res = env.check_many(items)
    assert [r.status for r in res] == ["ok", "error", "error", "rejected", "error", "error", "ok"]
    # the server adds its import lines back: our lines count from the file's first, not subtracted again
    assert res[1].messages[0].startswith("2:13: error: unsolved goals")
    assert res[4].messages[0].startswith("2:13: error: unsolved goals")
    assert res[5].messages[0].startswith("3:13: error: unsolved goals")       # 4 header lines run apart
    assert "sorryAx" in res[2].messages[-1]
    assert len(Kimina.posts) == 2 and env.verifier_errors == 0    # 6 screened-in items, batches of 3
    for path, headers, body in Kimina.posts:
        assert path == "/verify" and headers["Authorization"] == "Bearer k3y"
        assert set(body) == {"codes", "timeout", "infotree_type", "disable_cache"} and body["infotree_type"] is None
    # the batches go out concurrently, in either order: the one that starts with the first item
    code = next(b["codes"][0] for _, _, b in Kimina.posts if b["codes"][0]["proof"].startswith(lean_mathlib.DEFAULT_HEADER))
    assert set(code) == {"custom_id", "proof"} and code["proof"].startswith(lean_mathlib.DEFAULT_HEADER)
    assert code["proof"].rstrip().endswith("#print axioms sq_nonneg_test")
    assert any(c["proof"].startswith("import Mathlib\nopen Real\n") for _, _, b in Kimina.posts for c in b["codes"])


def test_kimina_key_is_stripped_and_a_broken_one_is_never_quoted(server):
    env = kimina(server, api_key=" k3y\r\n")      # a pasted key's line end
    assert env.check(SQ, STD).ok and Kimina.posts[-1][1]["Authorization"] == "Bearer k3y"
    for bad in ("k3y\nX-Other: 1", "k3 y", "k3y\x00", "kéy"):
        with pytest.raises(ValueError, match="api_key holds") as e:
            kimina(server, api_key=bad)
        assert bad not in str(e.value)


def test_kimina_a_crashing_repl_fails_only_its_own_item(server):
    """The server answers 500 to a whole request when one REPL dies: the client re-posts the items one by one
    (new ids: the others may already be stored), and only the crashing one fails; the run goes on."""
    env = kimina(server, batch_size=4, max_repls=4)
    res = env.check_many([(SQ, STD), (SQ, "by crash"), (SQ, "by hang"), (SQ, "by\n  nlinarith [wrong]")])
    assert [r.status for r in res] == ["ok", "crash", "timeout", "error"]
    assert "failed on this proof alone" in res[1].messages[0] and "HTTP 500" in res[1].messages[0]
    assert "timed out" in res[2].messages[0] and res[3].messages[0].startswith("2:13: error")
    assert [len(b["codes"]) for _, _, b in Kimina.posts] == [4, 1, 1, 1, 1]
    ids = [c["custom_id"] for _, _, b in Kimina.posts for c in b["codes"]]
    assert len(set(ids)) == len(ids) == 8
    assert env.verifier_errors == 1
    assert env.check(SQ, STD).ok and env.verifier_errors == 1
    Kimina.script = ["500"]                                    # a lone item's 5xx: crash at once, not retried
    r = env.check(SQ, STD)
    assert r.status == "crash" and "HTTP 500: " in r.messages[0] and len(Kimina.posts) == 7
    assert env.verifier_errors == 2


def test_kimina_in_flight_snippets_never_exceed_max_repls(server):
    Kimina.max_repls, Kimina.max_wait, Kimina.work = 2, 0.05, 0.1
    env = kimina(server, batch_size=8, max_repls=2)
    assert (env.batch_size, env.workers) == (2, 1)
    res = env.check_many([(SQ, STD)] * 7)
    assert all(r.ok for r in res) and Kimina.peak <= 2 and len(Kimina.posts) == 4
    # the same server, asked for more snippets at once than it has REPLs, answers 429 after max_wait
    Kimina.posts = []
    greedy = kimina(server, batch_size=8, max_repls=8, retries=1)
    res = greedy.check_many([(SQ, STD)] * 8)
    assert all(r.status == "crash" and "no free REPL" in r.messages[0] and "HTTP 429" in r.messages[0] for r in res)
    assert len(Kimina.posts) == 2 and greedy.verifier_errors == 8


def test_kimina_busy_server_is_waited_for(server, monkeypatch):
    assert lean_kimina.KiminaClient(server).busy_wait >= 60     # the server itself already waited 60 s
    monkeypatch.setenv("LEAN_SERVER_MAX_REPLS", "5")
    assert lean_kimina.KiminaClient(server).max_repls == 5      # the server's own setting, when it runs here
    monkeypatch.delenv("LEAN_SERVER_MAX_REPLS")
    assert lean_kimina.KiminaClient(server).max_repls == max((os.cpu_count() or 1) - 1, 1)   # its default
    env = kimina(server, busy_wait=0.4)
    Kimina.script = ["429", "429"]
    t0 = time.monotonic()
    assert env.check(SQ, STD).ok
    assert time.monotonic() - t0 >= 0.8 and len(Kimina.posts) == 3


def test_kimina_ids_are_unique_for_a_server_with_a_database(server):
    Kimina.database = True
    env = kimina(server, batch_size=2, max_repls=4)
    for _ in range(3):
        assert all(r.ok for r in env.check_many([(SQ, STD)] * 4))
    ids = [c["custom_id"] for _, _, b in Kimina.posts for c in b["codes"]]
    assert len(ids) == 12 and len(set(ids)) == 12
    # what repeated ids ("0", "1", ... in every batch) meet on such a server
    import requests
    body = {"codes": [{"custom_id": "0", "proof": "theorem t : True := trivial"}], "timeout": 5}
    assert requests.post(server + "/verify", json=body, timeout=5).status_code == 200
    again = requests.post(server + "/verify", json=body, timeout=5)
    assert again.status_code == 500 and again.text == "Internal Server Error"


def test_kimina_header_timeout_says_to_prewarm(server):
    slow = Task("slow", "theorem slow (x : ℝ) : x ≥ x :=", header="import Mathlib\nimport SlowImport")
    r = kimina(server).check(slow, STD)
    assert r.status == "timeout" and "header command timed out" in r.messages[0]
    assert "LEAN_SERVER_INIT_REPLS" in r.messages[0]


def test_kimina_unreadable_answers_and_rejections(server):
    env = kimina(server)
    Kimina.script = ["garbage"]
    r = env.check(SQ, STD)
    assert r.status == "crash" and "unreadable" in r.messages[0] and env.verifier_errors == 1
    Kimina.script = ["400"]
    with pytest.raises(lean_mathlib.KiminaError, match="rejected the request"):
        env.check(SQ, STD)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_kimina_connection_refused():
    env = lean_env.load("kimina", url=f"http://127.0.0.1:{free_port()}", retries=1, backoff=0.01)
    with pytest.raises(lean_mathlib.KiminaError, match="did not answer after 2 tries.*refused"):
        env.check_many([(SQ, STD)])


def test_kimina_server_lost_mid_run_does_not_end_it():
    srv, url = start_kimina()
    env = kimina(url, retries=1)
    assert env.check(SQ, STD).ok
    srv.shutdown()
    srv.server_close()
    res = env.check_many([(SQ, STD), (SQ, STD)])             # once it has answered, a failure is the items' own
    assert all(r.status == "crash" and "stopped answering" in r.messages[0] for r in res)
    assert env.verifier_errors == 2
    env.close()


# ----------------------------------------------------------------------------- Kimina: a hostile or broken server
def reply(fn):
    """A fault: answers 200 with fn(results) (a deep copy of what the server would have sent, to spoil), JSON-encoded
    unless bytes."""
    return lambda handler, results: handler.answer(200, fn(copy.deepcopy(results)))


def raw(handler, data: bytes) -> bool:
    """Writes bytes to the client as they are; False once it has hung up."""
    try:
        handler.wfile.write(data)
        handler.wfile.flush()
        Kimina.sent += len(data)
        return True
    except OSError:
        return False


def trickle(in_headers: bool, every: float = 0.2, most: float = 10.0):
    """A fault: a server that sends a byte every `every` s (for `most` s at most), in its headers or in its body,
    so that no single read waits long enough for a per-read timeout."""
    def fault(handler, results):
        raw(handler, b"HTTP/1.0 200 OK\r\n" + (b"X-Slow: " if in_headers else b"Content-Length: 1000\r\n\r\n{"))
        t0 = time.monotonic()
        while time.monotonic() - t0 < most and raw(handler, b"a"):
            time.sleep(every)
    return fault


def flood(status: int, megabytes: int, chunk=b"a" * (1 << 20)):
    """A fault: an endless-looking answer, `megabytes` MiB with no Content-Length, streamed as fast as taken."""
    def fault(handler, results):
        raw(handler, f"HTTP/1.0 {status} X\r\nContent-Type: application/json\r\n\r\n".encode())
        raw(handler, b'{"results": [{"custom_id": "x", "error": "')
        for _ in range(megabytes):
            if not raw(handler, chunk):
                return
    return fault


def test_kimina_oddly_typed_answers_cost_only_their_items(server):
    """Guards: a reply that is JSON but not of Kimina's types (a field of the wrong type, a missing or null one, too
    few / too many / unknown / repeated results, a top-level array or string, nesting too deep to parse) never
    raises out of check_many; it makes "crash" (with why) of exactly the items it spoils, counted in
    verifier_errors, and the other items keep their verdicts."""
    env = kimina(server, batch_size=3, max_repls=3)
    items = [(SQ, STD), (SQ, "by\n  nlinarith [wrong]"), (SQ, STD)]
    assert [r.status for r in env.check_many(items)] == ["ok", "error", "ok"]

    def first(fn):            # spoils the first item's result only
        return reply(lambda rs: (fn(rs[0]), {"results": rs})[1])

    def msg0(fn):             # spoils the first message of the first item's result
        return first(lambda r: fn(r["response"]["messages"][0]))

    one = [  # (fault, what the first item's crash says)
        (first(lambda r: r["response"].update(messages=5)), "messages is 5"),
        (first(lambda r: r["response"].update(messages=[7])), "a message is 7"),
        (first(lambda r: r["response"].update(sorries="none")), "sorries is 'none'"),
        (msg0(lambda m: m.update(pos=[3, 1])), "pos is [3, 1]"),
        (msg0(lambda m: m["pos"].update(line="9")), "pos is {"),
        (msg0(lambda m: m["pos"].update(line=True)), "pos is {"),
        (msg0(lambda m: m.update(endPos="end")), "endPos is 'end'"),
        (msg0(lambda m: m.update(severity=None)), "a message is {"),
        (msg0(lambda m: m.update(data={"text": "x"})), "a message is {"),
        (first(lambda r: r.pop("response")), "no response from the server (None)"),
        (first(lambda r: r.update(response=None)), "no response from the server (None)"),
        (first(lambda r: r.update(response=[1, 2])), "no response from the server ([1, 2])"),
        (first(lambda r: r.update(response={"message": ["x"]})), "message is ['x']"),
        (first(lambda r: r.update(error=5)), "error for this proof is 5"),
        (first(lambda r: r.update(error={"why": "timeout"})), "error for this proof is {"),
        (first(lambda r: r.update(custom_id="not-ours")), "no result for this item"),
        (first(lambda r: r.update(custom_id=12)), "no result for this item"),
        (reply(lambda rs: {"results": rs[1:]}), "no result for this item"),                 # fewer results
        (reply(lambda rs: {"results": rs + [rs[0]]}), "answered this item twice"),
    ]
    for fault, why in one:
        before = env.verifier_errors
        Kimina.script = [fault]
        res = env.check_many(items)
        assert [r.status for r in res] == ["crash", "error", "ok"], why
        assert why in res[0].messages[0] and res[1].messages[0].startswith("2:13: error"), (why, res[0].messages)
        assert env.verifier_errors == before + 1
    # more results than asked, and entries that are not results at all: ignored
    Kimina.script = [reply(lambda rs: {"results": [5, None, "x", [], {"custom_id": "other"}] + rs[::-1] + [{}]})]
    assert [r.status for r in env.check_many(items)] == ["ok", "error", "ok"]
    every = [  # (fault, what every item's crash says)
        (reply(lambda rs: {"results": {"a": rs}}), "no list of results"),
        (reply(lambda rs: {"results": None}), "no list of results"),
        (reply(lambda rs: rs), "no list of results"),                  # a top-level array
        (reply(lambda rs: "results"), "no list of results"),           # a top-level string
        (reply(lambda rs: 3.5), "no list of results"),
        (reply(lambda rs: b"[" * 200_000 + b"]" * 200_000), "RecursionError"),
        (reply(lambda rs: b'{"results": [\xff]}'), "unreadable"),
    ]
    for fault, why in every:
        before = env.verifier_errors
        Kimina.script = [fault]
        res = env.check_many(items)
        assert all(r.status == "crash" and why in r.messages[0] for r in res), (why, res[0].messages)
        assert env.verifier_errors == before + 3
    assert [r.status for r in env.check_many(items)] == ["ok", "error", "ok"]    # and the run goes on


def test_kimina_refusal_after_good_answers_costs_its_batch(server):
    """Guards: a status the server has no business sending (408, 404, a redirect) once it has given readable
    answers costs that batch's items ("crash", counted), not the run; before any readable answer the URL or key is
    wrong, and KiminaError stops the run at once, as before."""
    env = kimina(server, batch_size=2, max_repls=2)
    assert env.check(SQ, STD).ok
    for status in ("408", "404", "302", "418"):
        Kimina.script = [status]
        res = env.check_many([(SQ, STD), (SQ, "by\n  nlinarith [wrong]")])
        assert all(r.status == "crash" and f"refused the request (HTTP {status}: " in r.messages[0] for r in res)
    assert env.verifier_errors == 8
    Kimina.script = ["ok", "408"]                               # a later batch of the same call
    res = env.check_many([(SQ, STD)] * 4)
    assert sorted(r.status for r in res) == ["crash", "crash", "ok", "ok"] and env.verifier_errors == 10
    assert env.check(SQ, STD).ok
    for status in ("404", "408", "401"):                        # first contact: a set-up problem
        Kimina.script = [status]
        with pytest.raises(lean_mathlib.KiminaError, match=f"rejected the request \\(HTTP {status}"):
            kimina(server).check(SQ, STD)


def test_kimina_trickling_server_is_cut_at_http_timeout(server):
    """Guards: every exchange ends by http_timeout, wall clock: a server that trickles a byte every 0.2 s (which
    no per-read timeout ever trips), in its headers or in its body, costs the batch's items ("crash", counted)
    about http_timeout after the post, is not retried, and the next post works; one that never got as far as a
    whole answer's headers on first contact stops the run (KiminaError) just as fast."""
    env = kimina(server, http_timeout=1.5, retries=3)
    assert env.check(SQ, STD).ok
    for in_headers in (True, False):
        Kimina.script = [trickle(in_headers)]
        t0 = time.monotonic()
        res = env.check_many([(SQ, STD), (SQ, STD)])
        took = time.monotonic() - t0
        assert took < 4.0, (in_headers, took)
        assert all(r.status == "crash" and "no complete answer within http_timeout = 1.5 s" in r.messages[0]
                   for r in res), res[0].messages
        assert env.check(SQ, STD).ok                            # a new connection: the cut one is not reused
    assert env.verifier_errors == 4 and len(Kimina.posts) == 5  # not retried
    Kimina.script = [trickle(True)]
    t0 = time.monotonic()
    with pytest.raises(lean_mathlib.KiminaError, match="did not answer within http_timeout = 1.5 s"):
        kimina(server, http_timeout=1.5).check(SQ, STD)
    assert time.monotonic() - t0 < 4.0


def test_kimina_reply_size_is_capped_while_read(server):
    """Guards: an answer is dropped once past max_reply_bytes (default 4 MiB per item of the batch) WHILE it is
    read, so a 64 MiB body (no Content-Length) costs its items ("crash", counted) and little memory, a 5xx's body
    is read only to ERROR_BODY_BYTES, an answer announced too large is not read at all, and a compressed one
    (asked for uncompressed: its unpacked size is unknown) is refused."""
    env = kimina(server, batch_size=1, max_repls=1)
    assert env.check(SQ, STD).ok
    Kimina.sent = 0
    Kimina.script = [flood(200, 64), flood(503, 64)]
    tracemalloc.start()
    try:
        t0 = time.monotonic()
        over, failed = env.check(SQ, STD), env.check(SQ, STD)
        took, (_, peak) = time.monotonic() - t0, tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 24 << 20, peak                # reading it all: the whole 64 MiB, several times over
    assert env.max_reply_bytes == lean_kimina.REPLY_BYTES_PER_ITEM == 4 << 20
    assert over.status == "crash" and f"too large (over max_reply_bytes = {4 << 20} bytes" in over.messages[0]
    assert failed.status == "crash" and "HTTP 503: {\"results\"" in failed.messages[0]
    assert Kimina.sent < 64 << 20 and took < 20 and env.verifier_errors == 2
    assert Kimina.posts[-1][2]["codes"] and Kimina.posts[-1][1]["Accept-Encoding"] == "identity"

    small = kimina(server, max_reply_bytes=50_000)
    assert small.check(SQ, STD).ok                              # a real answer: well under
    Kimina.script = [reply(lambda rs: {"results": rs, "padding": "x" * 100_000})]
    r = small.check(SQ, STD)
    assert r.status == "crash" and "bytes announced, max_reply_bytes = 50000" in r.messages[0]

    def gzipped(handler, results):
        data = gzip.compress(json.dumps({"results": results}).encode())
        raw(handler, b"HTTP/1.0 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
    Kimina.script = [gzipped]
    r = small.check(SQ, STD)
    assert r.status == "crash" and "compressed (gzip) though asked not to be" in r.messages[0]
    assert small.verifier_errors == 2 and small.check(SQ, STD).ok


def fuzz_value(rng, depth=0):
    """A random JSON value: any type, nested, now and then a huge string or number."""
    kind = rng.choice("nbifsSlLdD" if depth < 3 else "nbifs")
    if kind == "n":
        return None
    if kind == "b":
        return rng.random() < 0.5
    if kind == "i":
        return rng.choice([0, -1, 7, 2 ** 70, 10 ** 4000])
    if kind == "f":
        return rng.choice([0.5, -1e300, 1e-9])
    if kind == "s":
        return rng.choice(["", "error", "timeout", "9", "\u2028\x00\ud7ff", "'x' does not depend on any axioms"])
    if kind == "S":
        return rng.choice("ab") * rng.randint(10_000, 2_000_000)
    if kind in "lL":
        return [fuzz_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["line", "pos", "data", "messages", "x"]): fuzz_value(rng, depth + 1) for _ in range(3)}


def fuzz_reply(rng, results, spoiled):
    """Spoils Kimina's answer at random: returns (the body to send, JSON or bytes), adding to `spoiled` the index of
    every item whose result it touched ("all" if the whole answer)."""
    n = len(results)
    origin = {id(e): k for k, e in enumerate(results)}          # entry -> its item, whatever its custom_id becomes
    ids = {e["custom_id"]: k for k, e in enumerate(results)}

    def touch(entry):
        now = entry.get("custom_id") if isinstance(entry, dict) else None
        spoiled.update({origin.get(id(entry)), ids.get(now) if isinstance(now, str) else None} - {None})
    for _ in range(rng.randint(1, 3)):
        op = rng.choice(["top", "results", "deep", "drop", "dup", "extra", "shuffle", "entry", "field", "resp",
                         "msg", "msgfield", "pos", "huge"] + ["msgfield", "pos", "field", "resp"])
        if op in ("top", "results", "deep"):
            spoiled.add("all")
            if op == "deep":
                return b"[" * 100_000 + b"]" * 100_000
            if op == "top":
                return fuzz_value(rng)
            results = fuzz_value(rng)
            continue
        if not isinstance(results, list) or not results:
            continue
        entry = rng.choice(results)
        resp = entry.get("response") if isinstance(entry, dict) else None
        msgs = resp.get("messages") if isinstance(resp, dict) else None
        msg = msgs[0] if isinstance(msgs, list) and msgs else None
        if op == "extra":
            results.insert(rng.randrange(n + 1), fuzz_value(rng))
            continue
        if op == "shuffle":
            rng.shuffle(results)
            continue
        touch(entry)
        if op == "drop":
            results.remove(entry)
        elif op == "dup":
            results.append(copy.deepcopy(entry))
        elif op == "entry":
            results[results.index(entry)] = fuzz_value(rng)
        elif op == "field" and isinstance(entry, dict):
            key = rng.choice(["custom_id", "error", "response"])
            if rng.random() < 0.3:
                entry.pop(key, None)
            else:
                entry[key] = fuzz_value(rng)
        elif op == "resp" and isinstance(resp, dict):
            key = rng.choice(["messages", "sorries", "message", "env"])
            if rng.random() < 0.3:
                resp.pop(key, None)
            else:
                resp[key] = fuzz_value(rng)
        elif op == "msg" and msg is not None:
            msgs[rng.randrange(len(msgs))] = fuzz_value(rng)
        elif op == "msgfield" and isinstance(msg, dict):
            key = rng.choice(["severity", "data", "pos", "endPos"])
            if rng.random() < 0.3:
                msg.pop(key, None)
            else:
                msg[key] = fuzz_value(rng)
        elif op == "pos" and isinstance(msg, dict) and isinstance(msg.get("pos"), dict):
            msg["pos"][rng.choice(["line", "column"])] = fuzz_value(rng)
        elif op == "huge" and isinstance(msg, dict):
            msg["data"] = "x" * rng.randint(100_000, 3_000_000)      # within the cap (4 MiB x 4 items)
    return {"results": results} if rng.random() < 0.95 else {"results": results, "extra": fuzz_value(rng)}


def test_kimina_fuzzed_answers_never_raise(server):
    """Guards, on seeded random spoilings of real answers (types swapped, fields missing or nested, entries
    dropped / repeated / added, huge strings within the cap, nesting too deep to parse): check_many never raises,
    returns one Result per item in order, each round ends within seconds, every "crash" is counted in
    verifier_errors, and an item whose result was not touched keeps its verdict."""
    rng = random.Random(20260131)
    env = kimina(server, batch_size=4, max_repls=4, http_timeout=20)
    items = [(SQ, STD), (SQ, "by\n  nlinarith [wrong]"), (SQ, STD), (SQ, "by exact cheat_axiom")]
    expected = ["ok", "error", "ok", "error"]
    assert [r.status for r in env.check_many(items)] == expected
    kept, crashed, t_all = 0, 0, time.monotonic()
    for round_ in range(200):
        spoiled = set()
        Kimina.script = [lambda handler, results, spoiled=spoiled:
                         handler.answer(200, fuzz_reply(rng, copy.deepcopy(results), spoiled))]
        before, t0 = env.verifier_errors, time.monotonic()
        res = env.check_many(items)
        assert time.monotonic() - t0 < 10, round_
        assert len(res) == 4 and all(isinstance(r, lean_env.Result) for r in res)
        assert all(r.status == "ok" or r.status in ("error", "timeout", "crash") and r.messages for r in res), res
        assert env.verifier_errors - before == sum(r.status == "crash" for r in res)
        assert not any("stopped answering" in m for r in res for m in r.messages)   # the fake itself never failed
        for i, (r, want) in enumerate(zip(res, expected)):
            if "all" not in spoiled and i not in spoiled:
                assert r.status == want, (round_, i, spoiled, r)
                kept += 1
            crashed += r.status == "crash"
    assert time.monotonic() - t_all < 120
    assert kept > 100 and crashed > 100           # the fuzzer both spared and spoiled a good share
    assert [r.status for r in env.check_many(items)] == expected


# ----------------------------------------------------------------------------- lake env lean (fake lake)
def test_lake_backend(tmp_path):
    env = lean_env.load("lake", project=str(tmp_path), lake=fake_lake(tmp_path), timeout=1.5, workers=2)
    res = env.check_many([(SQ, STD), (SQ, "by\n  nlinarith [wrong]"), (SQ, "by exact cheat_axiom"),
                          (SQ, "by hang"), (SQ, "by crash"), (OPEN, "by noaxioms")])
    assert [r.status for r in res] == ["ok", "error", "error", "timeout", "crash", "ok"]
    assert res[1].messages[0].startswith("2:13: error: unsolved goals")
    assert "exit code 7" in res[4].messages[0] or "Lean stopped" in res[4].messages[0]
    assert os.listdir(env.tmp) == []
    env.close()
    assert not os.path.exists(env.tmp)


# ----------------------------------------------------------------------------- lean_env.load: a spec -> a checker
def test_verifier_load_chooses_the_checker_from_a_spec(tmp_path, server):
    mini = lean_env.load("mini", workers=1)
    assert isinstance(mini, lean_env.LeanEnv)
    assert mini.check(Task("t_id", "theorem t_id (p : Prop) (hp : p) : p :="), "hp").ok     # the real Lean
    with lean_env.load(f"repl:{tmp_path}", repl=FAKE, lake=None, workers=1) as env:
        assert isinstance(env, lean_mathlib.ReplPool) and env.project == str(tmp_path)
        assert env.check(SQ, STD).ok and not env.check(SQ, "by nlinarith [wrong]").ok
    with lean_env.load(f"lake:{tmp_path}", lake=fake_lake(tmp_path)) as env:
        assert isinstance(env, lean_mathlib.LakeEnv) and env.project == str(tmp_path)
        assert env.check(SQ, STD).ok and not env.check(SQ, "by nlinarith [wrong]").ok
    env = lean_env.load(f"kimina:{server}", backoff=0.01, lean="")  # the scripts pass --lean "" when none is named
    assert isinstance(env, lean_kimina.KiminaClient) and env.url == server
    with pytest.raises(ValueError, match="a `lean` executable is for the mini world"):
        lean_env.load(f"kimina:{server}", lean="/usr/bin/lean")
    assert env.check(SQ, STD).ok and [path for path, _, _ in Kimina.posts] == ["/verify"]
    for bad in ("nonsense", "mini:extra", "repl2:/x", "Mini"):
        with pytest.raises(ValueError, match="unknown verifier .*use mini, repl:PROJECT, lake:PROJECT or kimina:URL"):
            lean_env.load(bad)

