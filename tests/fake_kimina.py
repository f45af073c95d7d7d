"""A fake Kimina Lean Server on 127.0.0.1 (http.server), answering /verify as the server's source of January 2026
does, with faults that tests can inject: tests/test_lean_mathlib.py tests mathlib/kimina.py against it, and the CPU
rehearsal of the paper's GPU path (tests/rehearsal_parts.py) verifies its proofs with it. Lean's verdicts come from
tests/fake_repl.py's canned rules (e.g. the word `wrong` in a proof is an error there).

    srv, url = start_kimina()          # a fresh server (class state reset), serving on a daemon thread
    lean_env.load("kimina", url=url)   # ... Kimina.posts: (path, headers, body) of every request
    srv.shutdown(); srv.server_close()
"""
import http.server
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # tests/: fake_repl, wherever this is imported from
import fake_repl  # noqa: E402


class Refusal(Exception):
    """args: (HTTP status, body): how the fake server fails a whole request."""


class Kimina(http.server.BaseHTTPRequestHandler):
    """A Kimina Lean Server answering /verify as its source of January 2026 does (server/routers/check.py,
    manager.py, split.py): each snippet holds one of `max_repls` REPLs while it runs and waits at most `max_wait` s
    for one, else the whole request is 429 "No available REPLs"; the leading import / blank lines run apart and
    their count is added back to every position; a timeout is a per-item error (a slow header import too); a
    REPL that dies ("crash") fails the whole request with 500; with `database` on, a custom_id already stored
    fails the request with 500 (unique Proof.id). script: per request, "ok" (default) | an HTTP status ("500",
    "400", "429", ...) | "garbage" forces the answer, or a fault: fn(handler, results) answers in its place, given
    the results the server would have sent (tests/test_lean_mathlib.py: `reply`, `trickle`, `flood`). posts:
    (path, headers, body) of every request; peak: most REPLs busy at once."""
    script, posts, max_repls, max_wait, work, database, sent = [], [], 64, 1.0, 0.0, False, 0
    stored, busy, peak, cond = set(), 0, 0, threading.Condition()

    def log_message(self, *a):
        pass

    def answer(self, status, data):
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if data is not raw else "text/plain")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Kimina.posts.append((self.path, dict(self.headers), body))
        action = Kimina.script.pop(0) if Kimina.script else "ok"
        if action == "garbage":
            return self.answer(200, b"<html>not json")
        if action not in ("ok",) and not callable(action):
            return self.answer(int(action), {"detail": "No available REPLs" if action == "429" else "boom"})
        results, failures = [None] * len(body["codes"]), []

        def run(i, code):
            try:
                results[i] = Kimina.run_one(code, body["timeout"])
            except Refusal as e:
                failures.append(e)
        threads = [threading.Thread(target=run, args=ic) for ic in enumerate(body["codes"])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:        # asyncio.gather: the first failure is the request's answer
            status, detail = failures[0].args
            return self.answer(status, detail)
        if callable(action):
            return action(self, results)
        self.answer(200, {"results": results})

    @staticmethod
    def run_one(code, timeout):
        with Kimina.cond:
            if not Kimina.cond.wait_for(lambda: Kimina.busy < Kimina.max_repls, timeout=Kimina.max_wait):
                raise Refusal(429, {"detail": "No available REPLs"})
            Kimina.busy += 1
            Kimina.peak = max(Kimina.peak, Kimina.busy)
        try:
            time.sleep(Kimina.work)
            lines = code["proof"].splitlines()
            k = next((i for i, x in enumerate(lines) if x.strip() and not x.strip().startswith("import ")), len(lines))
            header, text = "\n".join(lines[:k]), "\n".join(lines[k:])
            if "SlowImport" in header:
                out = {"custom_id": code["custom_id"], "error": f"Lean REPL header command timed out in {timeout:.1f} seconds"}
            elif "crash" in text:                          # the REPL's stdout closed: ReplError -> HTTPException(500)
                raise Refusal(500, {"detail": "JSON decode error"})
            elif "hang" in text:
                out = {"custom_id": code["custom_id"], "error": f"Lean REPL command timed out in {timeout:.1f} seconds"}
            else:
                messages, sorries = fake_repl.check_text(text)
                for m in messages + sorries:               # _apply_header_offset
                    for key in ("pos", "endPos"):
                        if m.get(key):
                            m[key]["line"] += k
                out = {"custom_id": code["custom_id"], "error": None,
                       "response": {"env": 0, "messages": messages, "sorries": sorries, "time": 0.1}}
            if Kimina.database:                            # prisma.proof.create(id=...) after the run
                with Kimina.cond:
                    if code["custom_id"] in Kimina.stored:
                        raise Refusal(500, b"Internal Server Error")
                    Kimina.stored.add(code["custom_id"])
            return out
        finally:
            with Kimina.cond:
                Kimina.busy -= 1
                Kimina.cond.notify_all()


def start_kimina():
    Kimina.script, Kimina.posts, Kimina.stored, Kimina.busy, Kimina.peak = [], [], set(), 0, 0
    Kimina.max_repls, Kimina.max_wait, Kimina.work, Kimina.database = 64, 1.0, 0.0, False
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Kimina)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"
