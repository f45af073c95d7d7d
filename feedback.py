"""F(y): the feedback sources of Feedback Distillation.

Paper: Narozniak et al., "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861),
Section 3 (the teacher is the same model with F(y) in its prompt), Appendix B (the critique prompt)
and the feedback-source ablations (LLM critique, ground truth, Lean output, self, constant).

A source is a callable (task, attempt, result) -> str returning the FRAMED block (a short header
line plus the feedback) that model.render_prompt puts in the teacher prompt unchanged. `attempt` is
the proof text or a sampling.Sample (.text, .truncated); `result` needs only .ok, .status, .messages.

    import feedback
    fb = feedback.load("tutor")   # "openai:MODEL", "anthropic:MODEL", "lean", "ground-truth", "self",
    fb(task, "⟨h2.1, h1.1⟩", result)                    # "constant:Be concise.", "none" (control)
    # -> "Hint:\n1. Do build the pair ⟨_, _⟩.\n2. Do apply h2 in the first part.\n3. Don't use h2.1: ..."
    texts = fb.batch([(task, attempt, result), ...])    # concurrent; never raises (falls back to "lean")
    fb.stats   # calls, failures, cache_hits, requests, retries, prompt_tokens, completion_tokens

The framing templates are ours (the paper quotes only "Example of a correct solution" and "feedback
from your unsuccessful earlier attempt"): see TEMPLATES. They are short because the mini world's
tiny prover has about 200 tokens for prompt + feedback + proof. The offline tutor's rules are in
tutor.py.
Test: python -m pytest -q tests/test_feedback.py
"""
import concurrent.futures
import copy
import email.utils
import hashlib
import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import model
import sampling
import tutor


@dataclass
class Settings:
    prompt: int = 4                  # critique instructions for LLM/self sources: 1 bare .. 4 final
    timeout_s: float = 60.0          # one HTTP request (connect, and each read)
    max_attempts: int = 5            # HTTP tries per feedback call (1 + 4 retries)
    backoff_base_s: float = 1.0      # wait before retry i: base * 2**i * jitter in [0.5, 1] ...
    backoff_max_s: float = 30.0      # ... capped here (a server's Retry-After is honoured as given)
    deadline_s: float = 180.0        # one call, all tries and waits together
    pool_size: int = 8               # concurrent calls in batch() for HTTP sources
    max_tokens: int = 512            # the critic's answer budget
    temperature: float | None = None  # None: the API's default (some models reject the field)
    lean_chars: int = 300            # Lean output kept in the framed "lean" block (tiny-model budget)
    prompt_lean_chars: int = 4000    # Lean output kept in the critique prompt
    cache_dir: str | None = None     # one JSON file per (source, model, prompt) key; None: no cache


class FeedbackError(RuntimeError):
    """A source could not produce feedback (HTTP failure, bad response, missing solution)."""


# ---- framing: how feedback reads in the teacher prompt --------------------------------------------
TEMPLATES = {
    "solution": "Example of a correct solution: {text}",              # ground truth; "lean" on success
    "lean": "Feedback from an unsuccessful earlier attempt:\n{text}",  # raw Lean output on failure
    "hint": "Hint:\n{text}",                                         # tutor, LLM, self, constant
}


def frame(kind, text):
    """The block for the teacher prompt. Every critique-style source (tutor, LLM, self, constant)
    shares the "hint" header, so an ablation changes the content and never the frame."""
    return TEMPLATES[kind].format(text=text.strip())


def attempt_parts(attempt):
    """(text, truncated) from a str or a sampling.Sample-like object."""
    if isinstance(attempt, str):
        return attempt, False
    return attempt.text, bool(getattr(attempt, "truncated", False))


def real_messages(result) -> list[str]:
    # The mini world's Lean follows each real error with "internal exception #3": noise, drop it.
    return [m.strip() for m in result.messages if m.strip() and "internal exception #3" not in m]


def lean_output(result, limit):
    text = "\n".join(real_messages(result)) or f"(no messages; status: {result.status})"
    return text if len(text) <= limit else text[:limit].rstrip() + " ..."


def lean_feedback(task, attempt, result, settings=None):
    """The paper's "Lean FD": the compiler output on failure, the found proof on success."""
    if result.ok:
        return frame("solution", attempt_parts(attempt)[0])
    return frame("lean", lean_output(result, (settings or Settings()).lean_chars))


# ---- critique instructions (Appendix B, our wording); four variants for the ablation -------------
_ASK = ("A model tried to prove the Lean 4 theorem below. Write feedback on its attempt.\n\n"
        "Theorem statement (Lean 4):\n{statement}\n\nFull attempt:\n{attempt}\n\n"
        "Final Lean output:\n{lean}\n\n")
_STRUCTURE = "Answer with 1 to 3 numbered items. Each item is an imperative that starts with \"Do\" or \"Don't\".\n"
_CONSTRAINTS = ("Each item must be self-contained and 10 to 50 words long. Do not use the second person. "
                "Write nothing besides the numbered items.\n")
_FINAL = ("Point at the first real mistake and the idea that fixes it, without writing the whole proof. "
          "Encourage checking each step with the Lean compiler.\n")
_CUT = "The attempt was cut off at the length limit: one item must ask for a shorter, more concise proof.\n"
PROMPTS = {1: [], 2: [_STRUCTURE], 3: [_STRUCTURE, _CONSTRAINTS], 4: [_STRUCTURE, _CONSTRAINTS, _FINAL]}


def critique_prompt(task, attempt, result, version=4, lean_chars=4000):
    text, truncated = attempt_parts(attempt)
    header = task.header.strip() + "\n" if getattr(task, "header", "") else ""
    lean = "Success: no errors." if result.ok else lean_output(result, lean_chars)
    rules = PROMPTS[version] + ([_CUT] if truncated and version == 4 else [])
    # a multi-turn attempt (turns.Attempt): the critic reads all of it, every candidate and Lean's answers
    attempt = getattr(attempt, "transcript", "") or text
    return _ASK.format(statement=header + task.statement, attempt=attempt, lean=lean) + "".join(rules)


# ---- HTTP: one POST with timeouts, bounded retries, backoff with jitter, Retry-After --------------
def _retry_after(headers):
    value = headers.get("Retry-After") if headers else None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        try:   # the HTTP-date form
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def post_json(url, headers, body, s, stats, secret=""):
    """POST JSON and decode the reply. Retries 429, 5xx, timeouts and connection errors, at most
    s.max_attempts tries within s.deadline_s; then FeedbackError naming url and the last status."""
    scrub = (lambda t: t.replace(secret, "***")) if secret else str   # never echo the key
    data, start, last = json.dumps(body).encode(), time.monotonic(), "no response"
    for i in range(s.max_attempts):
        wait = None
        try:
            stats.add(requests=1)
            left = s.deadline_s - (time.monotonic() - start)
            req = urllib.request.Request(url, data=data, headers=headers, method="POST")
            with urllib.request.urlopen(req, timeout=max(0.01, min(s.timeout_s, left))) as r:
                raw = r.read()
            try:
                return json.loads(raw)
            except ValueError:
                raise FeedbackError(f"{url}: unparseable response (HTTP 200): "
                                    f"{scrub(raw[:80].decode(errors='replace'))!r}") from None
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
            if e.code != 429 and e.code < 500:   # a client error does not heal by retrying
                raise FeedbackError(f"{url}: {last}: {scrub(e.read()[:200].decode(errors='replace'))}") from None
            wait = _retry_after(e.headers)
        except (OSError, http.client.HTTPException) as e:   # refused, reset, timed out
            last = scrub(f"{type(e).__name__}: {getattr(e, 'reason', e)}")
        if i + 1 == s.max_attempts:
            break
        if wait is None:
            wait = min(s.backoff_max_s, s.backoff_base_s * 2 ** i) * random.uniform(0.5, 1.0)
        if time.monotonic() - start + wait > s.deadline_s:
            last += f" (waiting {wait:.1f} s more would pass the {s.deadline_s} s deadline)"
            break
        stats.add(retries=1)
        time.sleep(wait)
    raise FeedbackError(f"{url}: gave up after {i + 1} tries; last: {last}")


def _openai_reply(r):
    u = r.get("usage") or {}
    return r["choices"][0]["message"]["content"], u.get("prompt_tokens", 0), u.get("completion_tokens", 0)


def _anthropic_reply(r):
    u = r.get("usage") or {}
    text = "".join(c["text"] for c in r["content"] if c.get("type") == "text")
    return text, u.get("input_tokens", 0), u.get("output_tokens", 0)


APIS = {  # path, key header, fixed headers, key variable, public endpoint, reply -> (text, in, out)
    "openai": ("/chat/completions", lambda k: {"Authorization": f"Bearer {k}"}, {}, "OPENAI_API_KEY",
               "https://api.openai.com/v1", _openai_reply),
    "anthropic": ("/messages", lambda k: {"x-api-key": k}, {"anthropic-version": "2023-06-01"},
                  "ANTHROPIC_API_KEY", "https://api.anthropic.com/v1", _anthropic_reply),
}


def _http_critic(style, model_name, s, key, base_url):
    path, key_header, fixed, _, _, parse = APIS[style]
    url = base_url.rstrip("/") + path
    headers = {"Content-Type": "application/json", **fixed, **(key_header(key) if key else {})}

    def ask(prompt, stats):
        body = {"model": model_name, "max_tokens": s.max_tokens, "messages": [{"role": "user", "content": prompt}]}
        if s.temperature is not None:
            body["temperature"] = s.temperature
        reply = post_json(url, headers, body, s, stats, key)
        try:
            text, n_in, n_out = parse(reply)
        except (KeyError, IndexError, TypeError, AttributeError):
            raise FeedbackError(f"{url}: unparseable response: {str(reply)[:80]!r}") from None
        stats.add(prompt_tokens=n_in, completion_tokens=n_out)
        return text
    return ask


def _self_critic(policy, s):
    def encode(prompt):  # the critique prompt as the policy's own user turn (or plain text)
        tok = policy.tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                           add_generation_prompt=True)
        else:
            text = (tok.bos_token or "") + prompt
        return tok(text, add_special_tokens=False)["input_ids"]

    def ask_many(prompts, stats):  # one batched sampling call for a whole step's critiques
        ids = [encode(p) for p in prompts]
        outs = sampling.sample(policy, ids, max_new_tokens=s.max_tokens,
                               temperature=1.0 if s.temperature is None else s.temperature)
        stats.add(prompt_tokens=sum(map(len, ids)), completion_tokens=sum(len(o.ids) for o in outs))
        return [o.text for o in outs]

    def ask(prompt, stats):
        return ask_many([prompt], stats)[0]
    ask.many = ask_many
    return ask


# ---- a source: cache, stats, concurrent batches with a fallback ------------------------------------
class Stats(dict):
    def __init__(self):
        super().__init__(calls=0, failures=0, cache_hits=0, requests=0, retries=0, prompt_tokens=0,
                         completion_tokens=0)
        self._lock = threading.Lock()

    def add(self, **counts):
        with self._lock:
            for k, v in counts.items():
                self[k] += v


class Feedback:
    """F as a callable. Offline sources call `write` (it returns the framed block); critics call
    `ask(prompt, stats) -> text`, cached on disk, and the text is framed as a hint."""

    def __init__(self, spec, settings, write=None, ask=None, model_name="", remote=False):
        self.spec, self.settings, self.stats = spec, settings, Stats()
        self._write, self._ask, self._model, self._remote = write, ask, model_name, remote
        self._asked = {}  # prompt -> critique, answered ahead by one batched call (batch())

    def __repr__(self):
        return f"Feedback({self.spec!r})"

    def __call__(self, task, attempt, result):
        self.stats.add(calls=1)
        try:
            if self._write:
                return self._write(task, attempt, result)
            return frame("hint", self._critique(task, attempt, result))
        except Exception:
            self.stats.add(failures=1)
            raise

    def _prompt(self, task, attempt, result):  # the statement, the attempt and the Lean output
        return critique_prompt(task, attempt, result, self.settings.prompt, self.settings.prompt_lean_chars)

    def _critique(self, task, attempt, result):
        s = self.settings
        prompt = self._prompt(task, attempt, result)
        key = json.dumps([self.spec, self._model, s.prompt, prompt], ensure_ascii=False)
        path = s.cache_dir and os.path.join(s.cache_dir, hashlib.sha256(key.encode()).hexdigest() + ".json")
        try:
            with open(path, encoding="utf-8") as f:
                text = json.load(f)["text"]
            self.stats.add(cache_hits=1)
            return text
        except (TypeError, OSError, ValueError, KeyError):   # no cache, no file, or a damaged one
            pass
        text = (self._asked.pop(prompt) if prompt in self._asked else self._ask(prompt, self.stats)).strip()
        if not text:
            raise FeedbackError(f"{self.spec}: empty feedback")
        if path:
            os.makedirs(s.cache_dir, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"key": json.loads(key), "text": text}, f, ensure_ascii=False)
            os.replace(tmp, path)   # atomic: a concurrent reader never sees half a file
        return text

    def batch(self, items):
        """Feedback for many (task, attempt, result). Never raises: a failed item gets "lean"
        feedback instead (and counts in stats["failures"]), so a bad critic cannot stop training."""
        def one(item):
            try:
                return self(*item)
            except Exception:
                return lean_feedback(*item, self.settings)
        many = getattr(self._ask, "many", None)
        if many and len(items) > 1:  # a local critic answers every prompt in one batched call
            try:
                prompts = [self._prompt(*item) for item in items]
                self._asked = dict(zip(prompts, many(prompts, self.stats)))
            except Exception:  # each item then asks on its own, and falls back on its own
                self._asked = {}
            try:
                return [one(x) for x in items]
            finally:
                self._asked = {}
        if not self._remote or len(items) < 2:
            return [one(x) for x in items]
        with concurrent.futures.ThreadPoolExecutor(min(self.settings.pool_size, len(items))) as pool:
            return list(pool.map(one, items))


def _tutor_items(task, attempt, result):
    try:
        return tutor.items(task, *attempt_parts(attempt), result)
    except ValueError as e:   # a task without a reference proof
        raise FeedbackError(str(e)) from None


def _solution(task):
    if not (task.solution or "").strip():
        raise FeedbackError(f"ground-truth: task {task.name} has no reference solution")
    return task.solution


def load(spec, api_key=None, base_url=None, policy=None, copy_policy=True, **options):
    """A feedback source from its spec. options: Settings fields. api_key/base_url: HTTP critics.
    policy (or "self:NAME"): the Self-FD critic, deep-copied so that training never changes it."""
    s = Settings(**options)
    if s.prompt not in PROMPTS:
        raise ValueError(f"prompt must be one of {sorted(PROMPTS)}")
    kind, _, arg = spec.partition(":")
    offline = {
        "tutor": lambda t, a, r: frame("hint", "\n".join(f"{i}. {x}" for i, x in enumerate(_tutor_items(t, a, r), 1))),
        "lean": lambda t, a, r: lean_feedback(t, a, r, s),
        "ground-truth": lambda t, a, r: frame("solution", _solution(t)),
        "constant": lambda t, a, r: frame("hint", arg),
        "none": lambda t, a, r: "",   # the control: the teacher's prompt IS the student's
    }
    if kind in offline and (kind == "constant") == bool(arg):
        return Feedback(spec, s, write=offline[kind])
    if kind == "self":
        if policy is None and not arg:
            raise ValueError("self: the critic is the policy itself: pass policy= (fd.py does), or name a "
                             "model folder, self:FOLDER")
        if policy is None:
            policy = model.load(arg)
        elif copy_policy:   # the paper's self-feedback comes from the INITIAL model, frozen
            policy = copy.deepcopy(policy)
        return Feedback(spec, s, ask=_self_critic(policy, s), model_name=getattr(policy, "name", arg))
    if kind not in APIS:
        raise ValueError(f"unknown feedback spec {spec!r}: use tutor, ground-truth, lean, self, constant:TEXT, "
                         "none, openai:MODEL or anthropic:MODEL")
    if not arg:
        raise ValueError(f"{spec!r}: name the model, e.g. {kind}:MODEL")
    key = api_key if api_key is not None else os.environ.get(APIS[kind][3], "")
    if not key and base_url is None:
        raise FeedbackError(f"{kind}: no API key: set {APIS[kind][3]} (or pass api_key=), or name a local "
                            "OpenAI-compatible server with base_url (fd.py: --base-url URL)")
    ask = _http_critic(kind, arg, s, key, base_url or APIS[kind][4])
    return Feedback(spec, s, ask=ask, model_name=arg, remote=True)
