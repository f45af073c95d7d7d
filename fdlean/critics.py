"""LLM critics over HTTP: the paper's critic is an API model (Appendix B); this is how one is asked.

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Appendix B. feedback.py
builds the critique prompt and frames the answer; here one prompt becomes one answer: `requests` with a
timeout per request, bounded retries of 429 / 5xx / network faults with jittered backoff and Retry-After,
one deadline per call; no retry on a client error or an exhausted quota (OpenAI's insufficient_quota,
Anthropic's spend limit); the key is never printed. OpenAI's own endpoint gets `max_completion_tokens`
with room for a reasoning model's hidden reasoning (feedback.Config.reasoning_tokens); other servers (vLLM, a
proxy) get `max_tokens` unless they refuse it the way OpenAI does.

    ask = critics.http_critic("openai", "gpt-5", feedback.Config(), key, "https://api.openai.com/v1")
    ask(prompt, feedback.Stats())   # -> the critique text; CriticError when it cannot be had
Test: python -m pytest -q tests/test_feedback.py
"""
import email.utils
import random
import re
import time
import urllib.parse

import requests


class CriticError(RuntimeError):
    """The critic could not be asked (HTTP failure, bad response); feedback.py raises it on as FeedbackError."""


class HTTPError(CriticError):
    """A refused request: the HTTP status and the API's own error code and param, when it gave them."""

    def __init__(self, message, status, code=None, param=None):
        super().__init__(message)
        self.status, self.code, self.param = status, code, param



# ---- HTTP: one POST with timeouts, bounded retries, backoff with jitter, Retry-After --------------
QUOTA_CODES = {"insufficient_quota", "enforced_spend_limit_reached"}   # a 429 that waiting does not cure


def scrubber(secret):
    return (lambda text: text.replace(secret, "***")) if secret else str


def _retry_after(headers):
    value = headers.get("Retry-After") if headers else None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        try:   # the HTTP-date form
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _api_error(response):
    """(code, param) of an error reply: OpenAI {"error": {"code", "param", "type"}}, Anthropic
    {"error": {"type", "details": {"error_code"}}}; (None, None) for anything else."""
    try:
        err = response.json()["error"]
        code = (err.get("details") or {}).get("error_code") or err.get("code") or err.get("type")
        return (code if isinstance(code, str) else None), err.get("param")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, None


def _reason(e):
    """A network fault in a few words: "ConnectTimeout: ... timed out", "ConnectionError: ... refused"."""
    inner = e.args[0] if e.args else e
    text = str(getattr(inner, "reason", inner))
    return f"{type(e).__name__}: " + re.sub(r"^\w+\(.*?\): ", "", text)


def post_json(url, headers, body, s, stats, secret=""):
    """POST JSON and decode the reply. Retries 429, 5xx, timeouts and connection errors, at most
    s.max_attempts tries within s.deadline_s; then CriticError naming url and the last status. A
    client error (4xx) or an exhausted quota fails at once: HTTPError with the API's error code.
    Every message is scrubbed of `secret`, and raised outside any `except`, so no chained exception
    (whose request holds the key header) travels with it."""
    scrub = scrubber(secret)   # never echo the key
    start, last = time.monotonic(), "no response"
    for i in range(s.max_attempts):
        stats.add(requests=1)
        left = s.deadline_s - (time.monotonic() - start)
        try:
            r = requests.post(url, json=body, headers=headers, timeout=max(0.01, min(s.timeout_s, left)))
        except requests.RequestException as e:   # refused, reset, timed out
            r, last = None, scrub(_reason(e))
        wait = None
        if r is not None and r.ok:
            try:
                return r.json()
            except ValueError:
                pass
            raise CriticError(scrub(f"{url}: unparseable response (HTTP {r.status_code}): {r.text[:80]!r}"))
        if r is not None:
            last, (code, param) = f"HTTP {r.status_code}", _api_error(r)
            if r.status_code == 429 and code in QUOTA_CODES:
                raise HTTPError(scrub(f"{url}: HTTP 429 {code}: the account's quota or credit is used up "
                                      f"(not retried; add credit or use another key): {r.text[:200]}"), 429, code, param)
            if r.status_code != 429 and r.status_code < 500:   # a client error does not heal by retrying
                raise HTTPError(scrub(f"{url}: {last}: {r.text[:300]}"), r.status_code, code, param)
            wait = _retry_after(r.headers)
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


def _openai_reply(r):  # -> (text, prompt tokens, completion tokens, cut off at the budget)
    u, choice = r.get("usage") or {}, r["choices"][0]
    text = choice["message"].get("content") or ""   # None for a refusal or a reply spent on reasoning
    return text, u.get("prompt_tokens", 0), u.get("completion_tokens", 0), choice.get("finish_reason") == "length"


def _anthropic_reply(r):
    u = r.get("usage") or {}
    text = "".join(c["text"] for c in r["content"] if c.get("type") == "text")
    return text, u.get("input_tokens", 0), u.get("output_tokens", 0), r.get("stop_reason") == "max_tokens"


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
        except (KeyError, IndexError, TypeError, AttributeError):
            text = None
        if text is None:
            raise CriticError(scrubber(key)(f"{url}: unparseable response: {str(reply)[:80]!r}"))
        stats.add(prompt_tokens=n_in, completion_tokens=n_out)
        if cut and not text.strip():
            raise CriticError(f"{url}: {model_name} used its whole budget ({limit}) before writing any feedback "
                                "(a reasoning model reasons first): raise feedback.Config.reasoning_tokens")
        return text
    return ask


