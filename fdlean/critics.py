"""LLM critics over HTTP: the paper's critic is an API model (Appendix A.3); this is how one is asked.

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Appendix A.3 (the critique
prompt; its ablation: Appendix C.3). feedback.py builds the critique prompt and frames the answer; here one
prompt becomes one answer: `requests` with a timeout per read, bounded retries of 429 / 5xx / network
faults with jittered backoff and Retry-After,
and one wall-clock deadline per call (Config.deadline_s: connect, headers, body, every try and wait),
enforced by fdlean/exchange.py (a watchdog shuts the call's sockets), so a server that trickles a byte a
second cannot hold a call past it. The reply is read streamed and at most Config.max_reply_bytes of it (a bigger one is an
error, not retried: a server ignoring max_tokens). No retry on a client error or an exhausted quota
(OpenAI's insufficient_quota, Anthropic's spend limit); no redirect is followed (the key header would go
along). The key is never printed: every message is scrubbed of it in any form (raw, repr- or
JSON-escaped, URL-quoted), and it never travels over plain http to another machine (key_transport).
OpenAI's own endpoint gets `max_completion_tokens` with room for a reasoning model's hidden reasoning
(feedback.Config.reasoning_tokens); other servers (vLLM, a proxy) get `max_tokens` unless they refuse it
the way OpenAI does.

    ask = critics.http_critic("openai", "gpt-5", feedback.Config(), key, "https://api.openai.com/v1")
    ask(prompt, feedback.Stats())   # -> the critique text; CriticError when it cannot be had
Limits: DNS resolution is bounded by the system resolver, not by the deadline.
Test: python -m pytest -q tests/test_feedback.py
"""
import email.utils
import ipaddress
import json
import random
import re
import time
import urllib.parse

from fdlean import exchange


class CriticError(RuntimeError):
    """The critic could not be asked (HTTP failure, bad response); feedback.py raises it on as FeedbackError."""


class HTTPError(CriticError):
    """A refused request: the HTTP status and the API's own error code and param, when it gave them."""

    def __init__(self, message, status, code=None, param=None):
        super().__init__(message)
        self.status, self.code, self.param = status, code, param


# ---- the key: scrubbed from every message, never sent in cleartext off this machine ----------------
def scrubber(*secrets):
    """text -> text with each secret replaced by ***, in every form a message may quote it: raw or stripped,
    escaped by repr (a pasted key's "\\n", as requests quotes a bad header) or JSON, URL-quoted. Case is
    ignored (a quoted form's hex may come back in lower case); scrubbing a little too much costs nothing."""
    forms = set()
    for secret in secrets:
        for x in {secret or "", (secret or "").strip()} - {""}:
            forms |= {x, repr(x)[1:-1], repr(x.encode("utf-8", "replace"))[2:-1], json.dumps(x)[1:-1],
                      json.dumps(x, ensure_ascii=False)[1:-1], urllib.parse.quote(x, safe=""),
                      urllib.parse.quote(x), urllib.parse.quote_plus(x)}
    forms.discard("")
    if not forms:
        return str
    pattern = re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)), re.IGNORECASE)
    return lambda text: pattern.sub("***", str(text))


def is_loopback(host):
    """This machine: localhost, 127.0.0.0/8, ::1. Only here may a key travel over plain http."""
    host = (host or "").strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def key_transport(url, key):
    """None when `key` may be sent to `url`, else why not. Plain http to another machine shows the key to
    every hop on the way, so a key goes over http only to this machine (a local vLLM); keyless is fine."""
    parts = urllib.parse.urlparse(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is no http(s) URL (e.g. https://host/v1, http://localhost:8000/v1)"
    if key and parts.scheme == "http" and not is_loopback(parts.hostname):
        return (f"refusing to send an API key over plain http to {parts.hostname} (anyone on the way could read "
                f"it): use https://{parts.netloc}{parts.path}, a server on this machine (localhost), or no key")
    return None


# ---- HTTP: one POST with timeouts, bounded retries, backoff with jitter, Retry-After --------------
QUOTA_CODES = {"insufficient_quota", "enforced_spend_limit_reached"}   # a 429 that waiting does not cure
# what a fault in the exchange can raise: requests wraps most, the rest come from urllib3 / http.client / the socket
_NETWORK = exchange.NETWORK + (ValueError,)


def _retry_after(headers):
    value = headers.get("Retry-After") if headers else None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        try:   # the HTTP-date form
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _api_error(data):
    """(code, param) of an error reply's body: OpenAI {"error": {"code", "param", "type"}}, Anthropic
    {"error": {"type", "details": {"error_code"}}}; (None, None) for anything else."""
    try:
        err = json.loads(data)["error"]
        code = (err.get("details") or {}).get("error_code") or err.get("code") or err.get("type")
        param = err.get("param")
        return (code if isinstance(code, str) else None), (param if isinstance(param, str) else None)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError):
        return None, None


def _reason(e):
    """A network fault in a few words: "ConnectTimeout: ... timed out", "ConnectionError: ... refused"."""
    inner = e.args[0] if e.args else e
    text = str(getattr(inner, "reason", inner))
    return f"{type(e).__name__}: " + re.sub(r"^\w+\(.*?\): ", "", text)


def post_json(url, headers, body, s, stats, secret=""):
    """POST JSON and decode the reply. Retries 429, 5xx, timeouts and connection errors, at most
    s.max_attempts tries, all within s.deadline_s of wall-clock time; then CriticError naming url and the
    last status. A client error (4xx), a redirect, an exhausted quota or a reply over s.max_reply_bytes
    fails at once (HTTPError with the API's error code for a refusal). Every message is scrubbed of
    `secret`, and raised outside any `except`, so no chained exception (whose request holds the key
    header) travels with it."""
    scrub = scrubber(secret)   # never echo the key
    headers = {"Accept-Encoding": "identity", **headers}   # nothing to decompress: the byte cap is the reply's size
    start, last, i = time.monotonic(), "no response", 0
    host = urllib.parse.urlparse(url)
    with exchange.Deadline(s.deadline_s) as deadline, exchange.session() as session:   # the whole call, every try
        # no proxy between this machine and a local server over http: the proxy would read the key in the clear
        session.trust_env = not (host.scheme == "http" and is_loopback(host.hostname))
        for i in range(s.max_attempts):
            left = s.deadline_s - (time.monotonic() - start)
            if deadline.expired or left <= 0:
                last += f" (the {s.deadline_s} s deadline passed)"
                break
            stats.add(requests=1)
            per_read = max(0.01, min(s.timeout_s, left))
            status = data = None
            try:
                r = session.post(url, json=body, headers=headers, timeout=(per_read, per_read), stream=True,
                                 allow_redirects=False)
                try:
                    status, reply_headers = r.status_code, r.headers
                    data, whole = exchange.read(r, s.max_reply_bytes, deadline)
                finally:
                    r.close()
            except _NETWORK as e:   # refused, reset, timed out, shut at the deadline
                last = scrub(_reason(e))
            if deadline.expired:   # whatever came back was cut short by the deadline's shutdown
                last = f"the {s.deadline_s} s deadline (feedback.Config.deadline_s) passed during try {i + 1}"
                break
            wait = None
            if data is not None:
                snippet = scrub(data.decode("utf-8", "replace"))   # scrubbed whole, then cut: no half key shows
                if 200 <= status < 300:
                    if not whole:
                        raise CriticError(f"{url}: the reply is over {s.max_reply_bytes} bytes (feedback.Config."
                                          f"max_reply_bytes; not retried): does the server ignore max_tokens? "
                                          f"It begins {snippet[:80]!r}")
                    try:
                        return json.loads(data)
                    except (ValueError, RecursionError):
                        pass
                    raise CriticError(f"{url}: unparseable response (HTTP {status}): {snippet[:80]!r}")
                if status < 400:   # a redirect: following it would send the key header to wherever it points
                    where = scrub(reply_headers.get("Location", "?"))
                    raise HTTPError(f"{url}: HTTP {status}: a redirect to {where[:200]!r}, not followed (the key "
                                    "would go along): name the final URL as base_url", status)
                last, (code, param) = f"HTTP {status}", _api_error(data)
                if status == 429 and code in QUOTA_CODES:
                    raise HTTPError(f"{url}: HTTP 429 {code}: the account's quota or credit is used up (not retried; "
                                    f"add credit or use another key): {snippet[:200]}", 429, code, param)
                if status != 429 and status < 500:   # a client error does not heal by retrying
                    raise HTTPError(f"{url}: {last}: {snippet[:300]}", status, code, param)
                wait = _retry_after(reply_headers)
            if i + 1 == s.max_attempts:
                break
            if wait is None:
                wait = min(s.backoff_max_s, s.backoff_base_s * 2 ** i) * random.uniform(0.5, 1.0)
            if time.monotonic() - start + wait > s.deadline_s:
                last += f" (waiting {wait:.1f} s more would pass the {s.deadline_s} s deadline)"
                break
            stats.add(retries=1)
            time.sleep(wait)
    raise CriticError(scrub(f"{url}: gave up after {i + 1} tries; last: {last}"))


# ---- replies: any JSON at all may come back; anything but the expected shape is "unparseable" -----
def _count(usage, name):
    n = usage.get(name) if isinstance(usage, dict) else None
    return n if type(n) is int and n >= 0 else 0   # junk (a string, a bool, -1) counts nothing


def _show(reply, scrub, n=80):
    try:
        text = str(reply)
    except RecursionError:   # parseable, yet too deeply nested to print
        text = f"({type(reply).__name__} nested too deep to show)"
    return scrub(text)[:n]   # scrubbed whole, then cut: no half key shows


def _clean(text):
    # a lone surrogate ("\ud800" is valid JSON) would break the UTF-8 cache file and the tokenizer
    return text.encode("utf-8", "replace").decode("utf-8")


def _openai_reply(r):  # -> (text, prompt tokens, completion tokens, cut off at the budget)
    choice = r["choices"][0]
    text = choice["message"].get("content")   # None for a refusal or a reply spent on reasoning
    return text or "", _count(r.get("usage"), "prompt_tokens"), _count(r.get("usage"), "completion_tokens"), \
        choice.get("finish_reason") == "length"


def _anthropic_reply(r):
    blocks = r["content"]
    if not isinstance(blocks, list):
        raise TypeError("content is no list of blocks")
    texts = [c.get("text") for c in blocks if isinstance(c, dict) and c.get("type") == "text"]
    return "".join(texts), _count(r.get("usage"), "input_tokens"), _count(r.get("usage"), "output_tokens"), \
        r.get("stop_reason") == "max_tokens"


APIS = {  # path, key header, fixed headers, key variable, public endpoint, reply -> (text, in, out, cut)
    "openai": ("/chat/completions", lambda k: {"Authorization": f"Bearer {k}"}, {}, "OPENAI_API_KEY",
               "https://api.openai.com/v1", _openai_reply),
    "anthropic": ("/messages", lambda k: {"x-api-key": k}, {"anthropic-version": "2023-06-01"},
                  "ANTHROPIC_API_KEY", "https://api.anthropic.com/v1", _anthropic_reply),
}


def budget(style, base_url, s):
    """The answer-budget field of a request. OpenAI's own endpoint refuses `max_tokens` for its
    reasoning models (o-series, GPT-5) and counts their hidden reasoning in `max_completion_tokens`:
    that, with room for the reasoning. Any other server (vLLM, a proxy) and Anthropic: `max_tokens`."""
    if style == "openai" and urllib.parse.urlparse(base_url).hostname == "api.openai.com":
        return {"max_completion_tokens": s.max_tokens + s.reasoning_tokens}
    return {"max_tokens": s.max_tokens}


def http_critic(style, model_name, s, key, base_url):
    path, key_header, fixed, _, _, parse = APIS[style]
    url = base_url.rstrip("/") + path
    key = (key or "").strip()   # a pasted key's newline would make requests quote (and leak) it in an error
    why = key_transport(url, key)
    if why:
        raise CriticError(why)
    headers = {"Content-Type": "application/json", **fixed, **(key_header(key) if key else {})}
    limit = budget(style, base_url, s)

    def post(prompt, stats):
        body = {"model": model_name, **limit, "messages": [{"role": "user", "content": prompt}]}
        if s.temperature is not None:
            body["temperature"] = s.temperature
        return post_json(url, headers, body, s, stats, key)

    def ask(prompt, stats):
        nonlocal limit
        try:
            reply = post(prompt, stats)
        except HTTPError as e:   # another host serving OpenAI's reasoning models (a proxy, Azure): it says
            if not (e.status == 400 and e.param == "max_tokens" and "max_tokens" in limit):  # so, once
                raise
            limit = {"max_completion_tokens": s.max_tokens + s.reasoning_tokens}   # from now on
            reply = None
        if reply is None:
            reply = post(prompt, stats)
        try:
            text, n_in, n_out, cut = parse(reply)
        except (KeyError, IndexError, TypeError, AttributeError):   # any JSON may come back: a list, a number...
            text = None
        if not isinstance(text, str):   # missing, or a number, a list, an object where the text should be
            raise CriticError(f"{url}: unparseable response: {_show(reply, scrubber(key))!r}")
        stats.add(prompt_tokens=n_in, completion_tokens=n_out)
        if cut and not text.strip():
            raise CriticError(f"{url}: {model_name} used its whole budget ({limit}) before writing any feedback "
                                "(a reasoning model reasons first): raise feedback.Config.reasoning_tokens")
        return _clean(text)
    return ask
