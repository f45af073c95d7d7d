"""The paper's verifier: a Kimina Lean Server (a pool of Lean REPLs behind HTTP), as a lean_mathlib backend.

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), its setting: proofs are verified with the
Kimina Lean Server. KiminaClient posts whole files (header, statement + proof, `#print axioms`) and judges the
answers exactly as lean_mathlib's other backends judge theirs (lean_mathlib.judge_file), so a proof gets the same
verdict whichever backend checks it.

    env = lean_env.load("kimina:http://localhost:8000")     # or KiminaClient(url=..., api_key=...)
    env.check_many([(task, proof), ...])                     # -> [lean_env.Result], in order

Tested only against a local HTTP server that answers as the server's source of January 2026 does, with faults
injected (tests/test_lean_mathlib.py): no Lean + Mathlib on this project's machines.
"""
from __future__ import annotations

import math
import os
import queue
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from fdlean import screen as lean_screen
from fdlean.lean import Result
from mathlib.repl import DEFAULT_HEADER, KiminaError, _Backend, build, judge_file


def kimina_verify(post, codes: dict[str, str], timeout: float) -> dict[str, tuple]:
    """Kimina's wire format, the only code that knows it (project-numina/kimina-lean-server, server/routers/
    backward.py, January 2026: /verify is its batch endpoint). post(path, body) -> the parsed JSON answer.
    Returns {custom_id: (error or None, REPL-format response or None)}; raises on an answer of another shape."""
    body = {"codes": [{"custom_id": k, "proof": v} for k, v in codes.items()],
            "timeout": math.ceil(timeout), "infotree_type": None, "disable_cache": False}
    return {str(r["custom_id"]): (r.get("error"), r.get("response")) for r in post("/verify", body)["results"]}


def kimina_max_repls() -> int:
    """The server's REPL count as the server itself sets it (server/settings.py): LEAN_SERVER_MAX_REPLS, else the CPU
    count - 1 (at least 1). Read here, so right when the server runs on this machine; else pass max_repls."""
    n = os.environ.get("LEAN_SERVER_MAX_REPLS", "").strip()
    return int(n) if n.isdigit() and int(n) > 0 else max((os.cpu_count() or 1) - 1, 1)


class _Fault(Exception):
    """args: (kind: "server" (an HTTP 5xx) | "busy" (429 past our retries) | "connection", what happened)."""


class KiminaClient(_Backend):
    """POSTs batches of whole files (header, statement + proof, `#print axioms`) to a Kimina Lean Server's /verify,
    as the server of January 2026 answers (every behaviour below is in its source, server/):
    - positions: it runs the leading import lines apart and adds their count back (routers/check.py,
      _apply_header_offset, since October 2025), so message lines count from the file's first line, as ours do;
    - a timeout comes back per item; a REPL that dies (out of memory, ...) fails the WHOLE request with HTTP 500: we
      re-post that batch's items one by one, and an item alone that still gets a 5xx is "crash" (it alone);
    - every snippet holds a REPL while it runs; past its max_repls it waits max_wait = 60 s for one, then answers
      429 "No available REPLs". So at most max_repls snippets are in flight (batch_size x concurrent batches), and a
      429 waits busy_wait (>= 60 s, as long as the server waited) before each of `retries` retries;
    - with a database, a custom_id already stored fails the request (the Proof table's id is unique): ours are
      uuid4s, new for every post.
    Connection errors are retried with a doubling backoff. A server that never answered, or a 4xx other than 429,
    raises KiminaError (set-up problems); once it has answered, no failure stops the run: the items are "crash"
    and counted in verifier_errors. An unreadable answer makes its batch "crash"."""

    def __init__(self, url: str = "http://127.0.0.1:8000", timeout: float = 60.0, api_key: str | None = None,
                 batch_size: int = 8, max_repls: int | None = None, retries: int = 3, backoff: float = 1.0,
                 busy_wait: float = 60.0, http_timeout: float | None = None, header: str = DEFAULT_HEADER,
                 max_chars: int = lean_screen.MAX_CHARS):
        self.url, self.timeout, self.api_key, self.header = url.rstrip("/"), timeout, api_key, header
        self.max_repls = max(1, max_repls or kimina_max_repls())
        self.batch_size = max(1, min(batch_size, self.max_repls))
        self.workers = max(1, self.max_repls // self.batch_size)      # batches in flight: snippets <= max_repls
        self.retries, self.backoff, self.busy_wait, self.max_chars = retries, backoff, busy_wait, max_chars
        self.http_timeout = http_timeout or timeout * self.batch_size + 60
        self.started = False          # has the server ever answered? (if not, a failure is a set-up problem)
        self.sessions = queue.Queue()  # idle requests.Sessions (kept-alive connections), one per post in flight
        self.version = f"Kimina Lean Server at {self.url}"

    def close(self):
        while not self.sessions.empty():
            self.sessions.get_nowait().close()

    def _check_all(self, items) -> list[Result]:
        batches = [items[k:k + self.batch_size] for k in range(0, len(items), self.batch_size)]
        with ThreadPoolExecutor(max(1, min(self.workers, len(batches)))) as pool:
            return [r for rs in pool.map(self._batch, batches) for r in rs]

    def _batch(self, items) -> list[Result]:
        codes, spans = {}, []
        for task, proof in items:
            code, span = build(task.header or self.header, task, proof, print_axioms=True)
            codes[uuid.uuid4().hex] = code           # never repeated: a server with a database refuses a known id
            spans.append(span)                       # lines from the file's first: the server adds back its header's
        try:
            got = kimina_verify(self._post, codes, self.timeout)
        except _Fault as e:
            if e.args[0] == "server" and len(items) > 1:   # one dead REPL fails them all: find it, one item a post
                with ThreadPoolExecutor(len(items)) as pool:
                    return [r for rs in pool.map(lambda item: self._batch([item]), items) for r in rs]
            why = {"server": "the Kimina server failed on this proof alone (its Lean REPL died: out of memory?)",
                   "busy": "the Kimina server had no free REPL", "connection": "the Kimina server stopped answering"}
            return [Result(False, "crash", [f"crash: {why[e.args[0]]} ({e.args[1]})"]) for _ in items]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            why = f"crash: the Kimina server's answer is unreadable ({type(e).__name__}: {str(e)[:200]})"
            return [Result(False, "crash", [why]) for _ in items]
        out = []
        for k, (task, _), span in zip(codes, items, spans):
            error, resp = got.get(k, ("the server returned no result for this item", None))
            if error:
                kind = "timeout" if re.search(r"timed out|timeout", str(error), re.I) else "crash"
                hint = (" (the header's import counts against the timeout: pre-warm REPLs with LEAN_SERVER_INIT_REPLS)"
                        if "header" in str(error) and kind == "timeout" else "")
                out.append(Result(False, kind, [f"{kind}: {error}{hint}"]))
            elif not isinstance(resp, dict):
                out.append(Result(False, "crash", [f"crash: no response from the server ({resp!r:.200})"]))
            elif "message" in resp and "messages" not in resp:       # the REPL's own error answer
                out.append(Result(False, "error", [f"statement: error: {resp['message']}"]))
            else:
                out.append(judge_file(task.name, resp, span))
        return out

    def _post(self, path: str, body: dict):
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}   # as its require_key reads it
        try:
            session = self.sessions.get_nowait()
        except queue.Empty:
            session = requests.Session()
        try:
            return self._send(session, self.url + path, body, headers)
        finally:
            self.sessions.put(session)

    def _send(self, session, url: str, body: dict, headers: dict):
        last = ""
        for attempt in range(self.retries + 1):
            try:
                answer = session.post(url, json=body, headers=headers, timeout=self.http_timeout)
            except requests.RequestException as e:             # refused, reset, timed out
                last = f"{type(e).__name__}: {e}"
                if attempt < self.retries:
                    time.sleep(min(30.0, self.backoff * 2 ** attempt))
                continue
            self.started, last = True, f"HTTP {answer.status_code}: {answer.text[:300]}"
            if answer.status_code == 429:                      # it already waited max_wait (60 s) for a REPL
                if attempt < self.retries:
                    time.sleep(self.busy_wait)
                continue
            if answer.status_code >= 500:
                raise _Fault("server", last)
            if answer.status_code >= 400:
                raise KiminaError(f"Kimina server at {self.url} rejected the request ({last})")
            return answer.json()                               # ValueError -> the batch is "crash"
        if last.startswith("HTTP 429"):
            raise _Fault("busy", f"{last}, {self.retries + 1} tries")
        if not self.started:
            raise KiminaError(f"Kimina server at {self.url} did not answer after {self.retries + 1} tries ({last})")
        raise _Fault("connection", f"no answer after {self.retries + 1} tries ({last})")
