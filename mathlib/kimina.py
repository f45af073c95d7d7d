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

import json
import math
import os
import queue
import re
import reprlib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from fdlean import exchange
from fdlean import screen as lean_screen
from fdlean.lean import Result
from mathlib.repl import DEFAULT_HEADER, KiminaError, _Backend, build, judge_file

REPLY_BYTES_PER_ITEM = 4 << 20    # default cap on an answer: 4 MiB per item of its batch (Lean's messages, goals)
ERROR_BODY_BYTES = 64 << 10       # of a refusal's body (4xx, 5xx) we read this much: its first 300 characters show

_brief = reprlib.Repr()           # a bounded repr of whatever the server sent: never huge, never deep
_brief.maxstring, _brief.maxother, _brief.maxlevel = 200, 200, 3


def kimina_verify(post, codes: dict[str, str], timeout: float) -> dict[str, tuple]:
    """Kimina's wire format, the only code that knows it (project-numina/kimina-lean-server, server/routers/
    backward.py, January 2026: /verify is its batch endpoint). post(path, body) -> the parsed JSON answer.
    Returns {custom_id: (error or None, REPL-format response or None)} for the ids we asked about; an entry that is
    not an object with one of our ids is skipped (its item then has no result), an id answered twice gets an error.
    Raises ValueError on an answer with no "results" list."""
    body = {"codes": [{"custom_id": k, "proof": v} for k, v in codes.items()],
            "timeout": math.ceil(timeout), "infotree_type": None, "disable_cache": False}
    answer = post("/verify", body)
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list):
        raise ValueError(f"no list of results in {_brief.repr(answer)}")
    got = {}
    for r in results:
        k = r.get("custom_id") if isinstance(r, dict) else None
        if not isinstance(k, str) or k not in codes:
            continue
        # two answers for one proof: neither can be trusted
        got[k] = ("the server answered this item twice", None) if k in got else (r.get("error"), r.get("response"))
    return got


def kimina_max_repls() -> int:
    """The server's REPL count as the server itself sets it (server/settings.py): LEAN_SERVER_MAX_REPLS, else the CPU
    count - 1 (at least 1). Read here, so right when the server runs on this machine; else pass max_repls."""
    n = os.environ.get("LEAN_SERVER_MAX_REPLS", "").strip()
    return int(n) if n.isdigit() and int(n) > 0 else max((os.cpu_count() or 1) - 1, 1)


def _malformed(resp: dict) -> str | None:
    """Why a REPL-format answer cannot be judged, or None. judge_file trusts the types the server's models give
    (messages: [{severity: str, pos / endPos: {line: int, column: int} | null, data: str}], sorries: [...]), so an
    answer of other types is the server's fault, never a verdict on the proof."""
    msgs, sorries = resp.get("messages"), resp.get("sorries")
    if msgs is not None and not isinstance(msgs, list):
        return f"messages is {_brief.repr(msgs)}"
    if sorries is not None and not isinstance(sorries, list):
        return f"sorries is {_brief.repr(sorries)}"
    for m in msgs or []:
        if not isinstance(m, dict) or not isinstance(m.get("severity"), str) or not isinstance(m.get("data"), str):
            return f"a message is {_brief.repr(m)}"
        for key in ("pos", "endPos"):
            p = m.get(key)
            if p is not None and not (isinstance(p, dict) and all(
                    type(p.get(c, 0)) is int for c in ("line", "column"))):     # type(): True is not a line
                return f"a message's {key} is {_brief.repr(p)}"
    return None


def _verdict(name: str, span, error, resp) -> Result:
    """One item's Result from the server's (error, response) for it."""
    if error is not None and not isinstance(error, str):
        return Result(False, "crash", [f"crash: the Kimina server's error for this proof is {_brief.repr(error)}"])
    if error:
        kind = "timeout" if re.search(r"timed out|timeout", error, re.I) else "crash"
        hint = (" (the header's import counts against the timeout: pre-warm REPLs with LEAN_SERVER_INIT_REPLS)"
                if "header" in error and kind == "timeout" else "")
        return Result(False, kind, [f"{kind}: {error[:2000]}{hint}"])      # a server's error text can be any size
    if not isinstance(resp, dict):
        return Result(False, "crash", [f"crash: no response from the server ({_brief.repr(resp)})"])
    if "message" in resp and "messages" not in resp:       # the REPL's own error answer
        if not isinstance(resp["message"], str):
            return Result(False, "crash", [f"crash: the Kimina server's answer is malformed (message is "
                                           f"{_brief.repr(resp['message'])})"])
        return Result(False, "error", [f"statement: error: {resp['message']}"])
    bad = _malformed(resp)
    if bad:
        return Result(False, "crash", [f"crash: the Kimina server's answer is malformed ({bad})"])
    return judge_file(name, resp, span)


# ----------------------------------------------------------------------------- one HTTP exchange, with a deadline
class _Fault(Exception):
    """args: (kind, what happened). kind: "server" (an HTTP 5xx) | "busy" (429 past our retries) | "connection" |
    "refused" (another status, once the server has worked) | "late" (past http_timeout) | "big" (past the cap)."""


class _Late(Exception):
    """The exchange's deadline passed: its socket was shut (fdlean/exchange.py)."""


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
    Connection errors are retried with a doubling backoff. Set-up problems raise KiminaError: a server that never
    answered, or one that refused (a status other than 2xx, 429, 5xx) before it ever gave a readable answer (the URL
    or key is wrong). Once it has answered, no failure stops the run: the items are "crash", with the reason, and
    counted in verifier_errors. A hostile or broken server costs results, never the run:
    - every exchange (connect, headers, body) ends by http_timeout (default timeout x batch_size + 60 s), wall
      clock, not per read; one past it is not retried (the server had the batch's whole time);
    - an answer is read streamed and dropped past max_reply_bytes (default REPLY_BYTES_PER_ITEM = 4 MiB x
      batch_size), a refusal's body past ERROR_BODY_BYTES; we ask for it uncompressed and refuse a compressed one;
    - an answer of another shape or of other types (JSON, but not Kimina's) is "crash" for the items it spoils:
      unreadable or no results list, all of them; an item with no result, two results, or fields of the wrong
      types, that item alone."""

    def __init__(self, url: str = "http://127.0.0.1:8000", timeout: float = 60.0, api_key: str | None = None,
                 batch_size: int = 8, max_repls: int | None = None, retries: int = 3, backoff: float = 1.0,
                 busy_wait: float = 60.0, http_timeout: float | None = None, header: str = DEFAULT_HEADER,
                 max_chars: int = lean_screen.MAX_CHARS, max_reply_bytes: int | None = None):
        key = (api_key or "").strip()   # a pasted key's "\n": requests would refuse the header and quote the key
        if key and not (key.isascii() and key.isprintable() and not any(c.isspace() for c in key)):
            raise ValueError("KiminaClient: api_key holds whitespace, control or non-ASCII characters inside (a bad "
                             "paste?): not sent")
        self.url, self.timeout, self.api_key, self.header = url.rstrip("/"), timeout, key or None, header
        self.max_repls = max(1, max_repls or kimina_max_repls())
        self.batch_size = max(1, min(batch_size, self.max_repls))
        self.workers = max(1, self.max_repls // self.batch_size)      # batches in flight: snippets <= max_repls
        self.retries, self.backoff, self.busy_wait, self.max_chars = retries, backoff, busy_wait, max_chars
        self.http_timeout = http_timeout or timeout * self.batch_size + 60
        self.max_reply_bytes = max_reply_bytes or REPLY_BYTES_PER_ITEM * self.batch_size
        self.started = False          # has the server ever answered (any status)? if not, no answer is a set-up problem
        self.worked = False           # has it ever given a readable answer? if not, a refusal is a set-up problem
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
        except KiminaError:
            raise                                    # set-up problems: the run cannot go on
        except _Fault as e:
            if e.args[0] == "server" and len(items) > 1:   # one dead REPL fails them all: find it, one item a post
                with ThreadPoolExecutor(len(items)) as pool:
                    return [r for rs in pool.map(lambda item: self._batch([item]), items) for r in rs]
            why = {"server": "the Kimina server failed on this proof alone (its Lean REPL died: out of memory?)",
                   "busy": "the Kimina server had no free REPL", "connection": "the Kimina server stopped answering",
                   "refused": "the Kimina server refused the request",
                   "late": f"the Kimina server gave no complete answer within http_timeout = {self.http_timeout:g} s",
                   "big": "the Kimina server's answer was too large"}
            return [Result(False, "crash", [f"crash: {why[e.args[0]]} ({e.args[1]})"]) for _ in items]
        except Exception as e:                       # ValueError, RecursionError (deep JSON), ...: its batch's problem
            why = f"crash: the Kimina server's answer is unreadable ({type(e).__name__}: {str(e)[:200]})"
            return [Result(False, "crash", [why]) for _ in items]
        self.worked = True
        out = []
        for k, (task, _), span in zip(codes, items, spans):
            error, resp = got.get(k, ("the server returned no result for this item", None))
            try:
                out.append(_verdict(task.name, span, error, resp))
            except Exception as e:                   # a shape _malformed did not foresee: this item's problem alone
                out.append(Result(False, "crash", [f"crash: the Kimina server's answer for this proof is unreadable "
                                                   f"({type(e).__name__}: {str(e)[:200]})"]))
        return out

    def _post(self, path: str, body: dict):
        try:
            session = self.sessions.get_nowait()
        except queue.Empty:
            session = exchange.session()
        try:
            return self._send(session, self.url + path, body)
        finally:
            self.sessions.put(session)

    def _send(self, session, url: str, body: dict):
        last = ""
        for attempt in range(self.retries + 1):
            try:
                status, data = self._exchange(session, url, body)
            except _Late as e:
                if not self.started:
                    raise KiminaError(f"Kimina server at {self.url} did not answer within http_timeout = "
                                      f"{self.http_timeout:g} s ({e})") from None
                raise _Fault("late", str(e)) from None
            except exchange.NETWORK as e:                               # refused, reset, timed out
                last = f"{type(e).__name__}: {str(e)[:300]}"
                if attempt < self.retries:
                    time.sleep(min(30.0, self.backoff * 2 ** attempt))
                continue
            last = f"HTTP {status}: {data[:300].decode('utf-8', 'replace')}"
            if status == 429:                                   # it already waited max_wait (60 s) for a REPL
                if attempt < self.retries:
                    time.sleep(self.busy_wait)
                continue
            if status >= 500:
                raise _Fault("server", last)
            if not 200 <= status < 300:                        # 408, 404, a redirect, ...
                if not self.worked:
                    raise KiminaError(f"Kimina server at {self.url} rejected the request ({last})")
                raise _Fault("refused", last)
            return json.loads(data)                            # ValueError, RecursionError -> the batch is "crash"
        if last.startswith("HTTP 429"):
            raise _Fault("busy", f"{last}, {self.retries + 1} tries")
        if not self.started:
            raise KiminaError(f"Kimina server at {self.url} did not answer after {self.retries + 1} tries ({last})")
        raise _Fault("connection", f"no answer after {self.retries + 1} tries ({last})")

    def _exchange(self, session, url: str, body: dict) -> tuple[int, bytes]:
        """One POST: (HTTP status, body), the body cut at ERROR_BODY_BYTES unless a 2xx. Raises _Late past
        http_timeout, _Fault("big") for a 2xx past max_reply_bytes, an exchange.NETWORK error for a failed connection."""
        headers = {"Accept-Encoding": "identity"}     # a compressed answer's size says nothing of what it unpacks to
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"                  # as its require_key reads it
        answer = None
        with exchange.Deadline(self.http_timeout) as deadline:
            try:
                answer = session.post(url, json=body, headers=headers, stream=True, allow_redirects=False,
                                      timeout=(deadline.left(), deadline.left()))
                if deadline.expired:                     # cut mid-headers, http.client may take what came for all
                    raise _Late("no answer: its headers were cut")
                self.started = True
                ok = 200 <= answer.status_code < 300
                cap = self.max_reply_bytes if ok else ERROR_BODY_BYTES
                size, coding = answer.headers.get("Content-Length", ""), answer.headers.get("Content-Encoding", "")
                if ok and size.strip().isdigit() and int(size) > cap:
                    raise _Fault("big", f"{int(size)} bytes announced, max_reply_bytes = {cap}")
                if ok and coding.strip().lower() not in ("", "identity"):
                    raise _Fault("big", f"compressed ({coding[:50]}) though asked not to be: its size is unknown")
                data, whole = exchange.read(answer, cap, deadline)
                if not whole and ok:                     # (a refusal's start says enough)
                    raise _Fault("big", f"over max_reply_bytes = {cap} bytes, reading stopped")
                if deadline.expired:
                    raise _Late(f"{len(data)} bytes of the answer came")
                return answer.status_code, bytes(data)
            except exchange.NETWORK as e:
                if deadline.expired:                     # the watchdog shut the socket: that is why it failed
                    raise _Late(f"{'no answer' if answer is None else 'the answer was cut'}: "
                                f"{type(e).__name__}") from None
                raise
            finally:
                if answer is not None:
                    answer.close()                       # a part-read answer: its connection is dropped, not reused
