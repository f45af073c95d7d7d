"""F(y): the feedback sources of Feedback Distillation.

Paper: Narozniak et al., "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861),
Section 3 (the teacher is the same model with F(y) in its prompt), Appendix A.3 (the critique prompt),
Appendix C.3 (its ablation) and the feedback-source ablations (LLM critique, ground truth, Lean output,
self, constant).

A source is a callable (task, attempt, result) -> str returning the FRAMED block (a short header
line plus the feedback) that prompting.render puts in the teacher prompt unchanged. `attempt` is
the proof text, a sampling.Sample or a turns.Attempt (.text, .truncated, .transcript); `result` needs
only .ok, .status, .messages.

    import feedback
    fb = feedback.load("tutor")   # "openai:MODEL", "anthropic:MODEL", "lean", "ground-truth", "self",
    fb(task, "⟨h2.1, h1.1⟩", result)                    # "constant:Be concise.", "none" (control)
    # -> "Hint:\n1. Do build the pair ⟨_, _⟩.\n2. Do apply h2 in the first part.\n3. Don't use h2.1: ..."
    texts = fb.batch([(task, attempt, result), ...])    # one step's feedback, concurrent
    fb.stats   # calls, failures, cache_hits, requests, retries, prompt_tokens, completion_tokens

Frames (TEMPLATES): Lean FD gives, on failure, Lean's output: in the mini world under a short header
and cut at Config.lean_chars (its small prover has about 200 tokens for prompt + feedback + proof,
and its vocabulary is built from these templates), on real Mathlib tasks under the paper's sentence
"The following is feedback from your unsuccessful earlier attempt:" and kept whole up to
Config.full_lean_chars (is_mini tells them apart); on success exactly the proof Lean accepted (checked_proof:
a turns.Attempt's .answer as checked; a raw generation read by prompting.proof_text, never a chat model's
reasoning or prose) under "Example of a correct solution:".
Every critique-style source (tutor, LLM, self, constant) shares the "Hint:" frame.

Critique prompts (PROMPTS: our wording of the final prompt, Appendix A.3, and of its ablation, Appendix
C.3), each step adding to the one before: 1 an expert Lean tutor asked for feedback on the attempt; 2 + 1-3
numbered items of 10-50 words, starting with "1.", on the errors and on what was useful or useless, nothing
else; 3 + each item self-contained, an order ("Do X." / "Don't do X."), impersonal, no judgement; 4 (the
default) + encourage the tools (the Lean compiler; off the mini world, Mathlib search) and, in every call,
order more concision if the attempt seems truncated. Config.prompt_file replaces the whole prompt with a
file's text ({statement}, {attempt}, {lean_output} filled in), for LLM and self critics. The offline
tutor's rules are in mini/tutor.py (it asks for a shorter proof when the attempt was cut off).

Budget: the teacher's prompt is the student's plus the framed block, and a critique (tutor, LLM, self,
constant) in it is at most Config.max_feedback_chars characters (default 4,000: the prompt asks for 1-3
items of 10-50 words, about 1,000 characters, so 4x room): a longer one is cut, its first
max_feedback_chars - 4 characters kept, then " ...". Lean's output has its own budgets (lean_chars,
full_lean_chars); a proof (ground truth, the proof Lean accepted) is never cut: half a proof is no
correct solution, and a proof is bounded by the task file or the generation budget.

LLM critics talk HTTP in fdlean/critics.py: one wall-clock deadline per call (Config.deadline_s: connect,
headers, body, all tries), replies read streamed up to Config.max_reply_bytes. batch() falls back to Lean
feedback for a failed call, and raises FeedbackError when every call failed in Config.max_failed_batches
batches in a row: a broken critic stops the run instead of quietly turning it into Lean FD.

API keys: OPENAI_API_KEY / ANTHROPIC_API_KEY go only to api.openai.com / api.anthropic.com. Another
base_url (a local vLLM, a proxy) gets a key only when one is named for it: api_key=, or api_key_env=NAME
(the environment variable holding it, e.g. VLLM_KEY). A key never goes over plain http to
another machine (FeedbackError at load: use https or localhost), is stripped of surrounding whitespace,
and is scrubbed from every error message in any form.
Test: python -m pytest -q tests/test_feedback.py
"""
import concurrent.futures
import copy
import hashlib
import json
import os
import re
import threading
import urllib.parse
from dataclasses import dataclass

from fdlean import lm, prompting, sampling
from fdlean.lean import lean_output

API_KEYS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}   # the LLM critics (fdlean/critics.py)


class FeedbackError(RuntimeError):
    """A source could not produce feedback (a critic's HTTP failure or bad answer, a missing solution)."""


@dataclass
class Config:
    prompt: int = 4                  # critique instructions for LLM/self sources: 1 bare .. 4 final
    prompt_file: str = ""            # LLM/self sources: a text file that replaces the whole critique prompt, with
                                     # {statement}, {attempt} (both required) and {lean_output} filled in
    timeout_s: float = 60.0          # one HTTP try: connect, and each read (deadline_s bounds the whole exchange)
    max_attempts: int = 5            # HTTP tries per feedback call (1 + 4 retries)
    backoff_base_s: float = 1.0      # wait before retry i: base * 2**i * jitter in [0.5, 1] ...
    backoff_max_s: float = 30.0      # ... capped here (a server's Retry-After is honoured as given)
    deadline_s: float = 180.0        # one call, wall clock: connect, headers, body, all tries and waits together
    max_reply_bytes: int = 1 << 20   # an HTTP reply is read up to this (1 MiB); a bigger one fails, not retried
    pool_size: int = 8               # concurrent calls in batch() for HTTP sources
    max_tokens: int = 512            # the critic's answer budget (a server may ignore it: hence the caps)
    max_feedback_chars: int = 4000   # a critique in the teacher's prompt (every hint source); longer: cut, " ..."
    reasoning_tokens: int = 8192     # + max_tokens = max_completion_tokens on OpenAI's endpoint, where
                                     # reasoning models (o-series, GPT-5) spend them on hidden reasoning first
    temperature: float | None = None  # None: the API's default (reasoning models reject the field)
    max_failed_batches: int = 3      # batch() raises after this many batches in a row with every call failed (0: never)
    lean_chars: int = 300            # mini world: Lean output kept in the framed "lean" block (tiny-model budget)
    full_lean_chars: int = 10_000    # Lean output kept in every critique prompt and in real tasks' "lean" block
    cache_dir: str | None = None     # one JSON file per (source, model, prompt) key; None: no cache


# ---- which world a task is from ------------------------------------------------------------------
_MINI_WORDS = {"Prop", "Type", "And", "Or", "Not", "Iff", "Exists", "True", "False", "fun"}
_MINI_SYNTAX = re.compile(r"(?:\s+|:=|=>|[():,→∀]|[^\W\d][\w']*)*")
_BINDERS = re.compile(r"(?:\(|∀|fun)\s*((?:[^\W\d][\w']*\s*)+?)(?::|,|=>)")


def is_mini(task) -> bool:
    """A mini-world task (mini/world.py, data/*.jsonl): no header, and a statement in the mini prelude's
    language only, i.e. And / Or / Not / Iff / Exists / → / ∀ over the names its binders introduce. A
    header alone cannot tell: a Mathlib JSONL file may leave it out (the verifier then adds its own);
    and a real statement names something else (ℝ, Nat, ∧, =, a digit)."""
    if (task.header or "").strip():
        return False
    body = re.sub(r"^\s*(?:theorem|lemma)\s+\S+", "", task.statement)
    if not _MINI_SYNTAX.fullmatch(body):
        return False
    bound = {w for group in _BINDERS.findall(body) for w in group.split()}
    return set(re.findall(r"[^\W\d][\w']*", body)) <= _MINI_WORDS | bound


# ---- framing: how feedback reads in the teacher prompt --------------------------------------------
TEMPLATES = {
    "solution": "Example of a correct solution: {text}",              # ground truth; "lean" on success
    "lean": "Feedback from an unsuccessful earlier attempt:\n{text}",  # raw Lean output on failure (mini world)
    "hint": "Hint:\n{text}",                                         # tutor, LLM, self, constant
}
# A real prover reads Lean's output under the paper's own sentence. The mini world keeps the shorter header
# above: the small prover's word-level vocabulary is built from these templates, and it reads the same thing.
PAPER_LEAN = "The following is feedback from your unsuccessful earlier attempt:\n{text}"


def frame(kind, text):
    """The block for the teacher prompt. Every critique-style source (tutor, LLM, self, constant)
    shares the "hint" header, so an ablation changes the content and never the frame."""
    return TEMPLATES[kind].format(text=text.strip())


def cut(text, limit):
    """text in at most `limit` characters: a longer one keeps its first limit - 4 and ends in " ..."."""
    text = text.strip()
    if len(text) <= limit:
        return text
    if limit <= 4:
        return text[:limit]
    return text[:limit - 4].rstrip() + " ..."


def hint(text, settings):
    """A critique framed for the teacher, within settings.max_feedback_chars: however long a critic's
    answer (a server ignoring max_tokens, a long constant), the teacher's prompt grows by at most that."""
    return frame("hint", cut(text, settings.max_feedback_chars))


def attempt_parts(attempt):
    """(text, truncated) from a str or a sampling.Sample / turns.Attempt-like object."""
    if isinstance(attempt, str):
        return attempt, False
    return attempt.text, bool(getattr(attempt, "truncated", False))


def checked_proof(task, attempt):
    """The proof Lean was given. An attempt that carries it (turns.Attempt.answer: the exact text checked)
    gives it as is: reading it again would take a fenced block or a `<think>` in a comment of an accepted
    proof for the proof. Only a raw generation (a str, a sampling.Sample) is read the verifier's way
    (prompting.proof_text: never a chat model's reasoning or prose)."""
    try:
        answer = attempt.answer
    except (AttributeError, IndexError):   # a str or a Sample; an Attempt with no candidate yet
        answer = None
    if isinstance(answer, str):
        return answer
    return prompting.proof_text(attempt_parts(attempt)[0], task)


def lean_feedback(task, attempt, result, settings=None):
    """The paper's "Lean FD": the compiler output on failure (the mini world's cut to its small
    prover's budget; a real task's whole, up to a generous limit), the found proof on success."""
    s = settings or Config()
    if result.ok:   # the proof Lean accepted, not the whole generation (a chat model's reasoning, prose)
        return frame("solution", checked_proof(task, attempt))
    if is_mini(task):
        return frame("lean", lean_output(result, s.lean_chars))
    return PAPER_LEAN.format(text=lean_output(result, s.full_lean_chars).strip())


# ---- critique instructions (the final prompt, Appendix A.3, and its ablation, Appendix C.3; our wording) -
# Each version adds one step to the one before, in the paper's order: 1 the role and a bare request; 2 the
# answer's form; 3 self-contained, impersonal orders; 4 the tools and concision (the final prompt).
_TUTOR = "You are an expert tutor of Lean 4 theorem proving.\n\n"                 # the role, in every version
_TASK = ("A model tried to prove the Lean 4 theorem below.\n\n"
         "Theorem statement (Lean 4):\n{statement}\n\nFull attempt:\n{attempt}\n\n"
         "Final Lean output:\n{lean}\n\n")
_WRITE = "Give feedback on this attempt.\n"                                         # 1: the bare request
_ITEMS = ("Answer with 1 to 3 numbered items of 10 to 50 words each; the answer starts with \"1.\". "
          "The items name the errors in the attempt and what in it was useful or useless. Write nothing "
          "else: no introduction, no summary.\n")                                 # 2: the answer's form
_ORDERS = ("Make every item self-contained, useful to a reader who has never seen this attempt, and an "
           "order of the form \"Do X.\" or \"Don't do X.\". Keep the items impersonal: never in the second "
           "person, never about the student, never a verdict on how well the attempt went.\n")   # 3
_TOOLS = ("Let the items encourage using the tools: checking each step with the Lean compiler{mathlib}. "
          "If the attempt seems truncated, order more concision: a shorter proof.\n")   # 4: in every call
_MATHLIB = " and searching Mathlib for the lemmas a step needs"   # not in the mini world: it has no Mathlib
_CUT = "(This attempt was cut off at the length limit.)\n"   # version 4, a truncated attempt: a fact, no order
PROMPTS = {  # version: (role, instructions after the task)
    1: (_TUTOR, [_WRITE]),
    2: (_TUTOR, [_WRITE, _ITEMS]),
    3: (_TUTOR, [_WRITE, _ITEMS, _ORDERS]),
    4: (_TUTOR, [_WRITE, _ITEMS, _ORDERS, _TOOLS]),
}
PLACEHOLDERS = ("{statement}", "{attempt}", "{lean_output}")   # a prompt file's; {statement}, {attempt} required


def critique_prompt(task, attempt, result, version=4, lean_chars=10_000, template=None):
    """The critic's prompt: the built-in PROMPTS[version] around the task, or `template` (a prompt file's
    text) with its placeholders filled: {statement} the header and statement, {attempt} the attempt (a
    multi-turn attempt's whole transcript), {lean_output} Lean's final output. One pass, no str.format: Lean
    code and prompts hold braces, and a placeholder inside a filled-in value stays as it is."""
    text, truncated = attempt_parts(attempt)
    header = task.header.strip() + "\n" if getattr(task, "header", "") else ""
    lean = "Success: no errors." if result.ok else lean_output(result, lean_chars)
    # a multi-turn attempt (turns.Attempt): the critic reads all of it, every candidate and Lean's answers
    attempt = getattr(attempt, "transcript", "") or text
    if template is not None:
        values = dict(zip(PLACEHOLDERS, (header + task.statement, attempt, lean)))
        return re.sub("|".join(map(re.escape, PLACEHOLDERS)), lambda m: values[m.group()], template)
    role, rules = PROMPTS[version]
    rules = rules + ([_CUT] if truncated and version == 4 else [])
    task_text = _TASK.format(statement=header + task.statement, attempt=attempt, lean=lean)
    return role + task_text + "".join(rules).replace("{mathlib}", "" if is_mini(task) else _MATHLIB)


def read_prompt_file(path):
    """A prompt file's text, read once at load. ValueError, naming the file and the problem, for a file that
    is missing, unreadable, not UTF-8, empty, or without {statement} or {attempt}."""
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ValueError(f"prompt file {path}: cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise ValueError(f"prompt file {path}: is not UTF-8 text") from None
    if not text.strip():
        raise ValueError(f"prompt file {path}: is empty")
    missing = [p for p in PLACEHOLDERS[:2] if p not in text]
    if missing:
        raise ValueError(f"prompt file {path}: has no {' and no '.join(missing)} placeholder (the file replaces "
                         "the whole critique prompt: {statement}, {attempt} and {lean_output} mark where the "
                         "statement, the attempt and Lean's output go)")
    return text


def _self_critic(policy, s):
    def encode(prompt):  # the critique prompt as the policy's own user turn (or plain text)
        tok = policy.tokenizer
        if getattr(tok, "chat_template", None):
            text = prompting.chat_template(tok, [{"role": "user", "content": prompt}])   # the run's thinking switch
        else:
            text = (tok.bos_token or "") + prompt
        return tok(text, add_special_tokens=False)["input_ids"]

    def ask_many(prompts, stats):  # one batched sampling call for a whole step's critiques
        ids = [encode(p) for p in prompts]
        outs = sampling.sample(policy, ids, max_new_tokens=s.max_tokens,
                               temperature=1.0 if s.temperature is None else s.temperature)
        stats.add(prompt_tokens=sum(map(len, ids)), completion_tokens=sum(len(o.ids) for o in outs))
        return [o.text.rsplit("</think>", 1)[-1] for o in outs]   # its critique, not its reasoning

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

    def __init__(self, spec, settings, write=None, ask=None, model_name="", remote=False, scrub=str, template=None):
        self.spec, self.settings, self.stats = spec, settings, Stats()
        self.template = template   # a prompt file's text (Config.prompt_file), read at load; None: PROMPTS
        self._write, self._ask, self._model, self._remote, self._scrub = write, ask, model_name, remote, scrub
        self._asked = {}  # prompt -> critique, answered ahead by one batched call (batch())
        self.failed_batches = 0   # batches in a row in which every call failed

    def __repr__(self):
        return f"Feedback({self.spec!r})"

    def __call__(self, task, attempt, result):
        self.stats.add(calls=1)
        try:
            if self._write:
                return self._write(task, attempt, result)
            return hint(self._critique(task, attempt, result), self.settings)   # cached whole, shown within budget
        except Exception:
            self.stats.add(failures=1)
            raise

    def _prompt(self, task, attempt, result):  # the statement, the attempt and the Lean output
        return critique_prompt(task, attempt, result, self.settings.prompt, self.settings.full_lean_chars,
                               self.template)

    def _critique(self, task, attempt, result):
        s = self.settings
        prompt = self._prompt(task, attempt, result)
        # the filled prompt is the request. With a prompt file its whole text goes in too, and the built-in
        # version (unused then) does not; without one the key is as it always was
        key = json.dumps([self.spec, self._model, s.prompt, prompt] if self.template is None else
                         [self.spec, self._model, "prompt_file", prompt, self.template], ensure_ascii=False)
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
        """Feedback for many (task, attempt, result), in order. A failed item gets "lean" feedback
        instead (and counts in stats["failures"]), so a passing fault cannot stop training. But when
        every call failed in settings.max_failed_batches batches in a row, the source is broken (no
        credit, a refused request, a server down) and the run would quietly be Lean FD: FeedbackError,
        naming the source, the count and the last error."""
        errors = []

        def one(item):
            try:
                return self(*item)
            except Exception as e:
                errors.append(e)
                return lean_feedback(*item, self.settings)
        many = getattr(self._ask, "many", None)
        if many and len(items) > 1:  # a local critic answers every prompt in one batched call
            try:
                prompts = [self._prompt(*item) for item in items]
                self._asked = dict(zip(prompts, many(prompts, self.stats)))
            except Exception:  # each item then asks on its own, and falls back on its own
                self._asked = {}
        try:
            if self._remote and len(items) > 1:
                with concurrent.futures.ThreadPoolExecutor(min(self.settings.pool_size, len(items))) as pool:
                    texts = list(pool.map(one, items))
            else:
                texts = [one(x) for x in items]
        finally:
            self._asked = {}
        if items:
            self.failed_batches = self.failed_batches + 1 if len(errors) == len(items) else 0
        limit = self.settings.max_failed_batches
        if limit and self.failed_batches >= limit:
            last = errors[-1]
            raise FeedbackError(self._scrub(
                f"feedback {self.spec}: every call failed in {self.failed_batches} batches in a row (each fell "
                f"back to Lean's output, so the run was Lean FD); last error: {type(last).__name__}: {last}"))
        return texts


TUTOR_LEVELS = (1, 2, 3, 4)   # tutor:N, the paper's prompt steps written offline (mini/tutor.py); tutor = tutor:4


def tutor_level(spec):
    """The N of "tutor:N" (4 for "tutor"); ValueError naming the spec otherwise."""
    if spec == "tutor":
        return 4
    arg = spec.partition(":")[2]
    if arg not in {str(n) for n in TUTOR_LEVELS}:
        raise ValueError(f"feedback tutor:{arg}: the tutor's level is 1, 2, 3 or 4 (the paper's prompt steps)")
    return int(arg)


def _tutor(task, attempt, result, level, settings):
    from mini import tutor  # the mini world's offline critic loads only when named
    try:
        found = tutor.advice(task, *attempt_parts(attempt), result, level=level,
                             candidates=getattr(attempt, "candidates", ()))
    except ValueError as e:   # a task without a reference proof
        raise FeedbackError(str(e)) from None
    return hint(found[0] if level == 1 else "\n".join(f"{i}. {x}" for i, x in enumerate(found, 1)), settings)


def _reference_proof(task):
    if not (task.solution or "").strip():
        raise FeedbackError(f"ground-truth: task {task.name} has no reference solution")
    return task.solution


def load(spec, api_key=None, base_url=None, policy=None, copy_policy=True, api_key_env=None, **options):
    """A feedback source from its spec. options: Config fields. api_key/base_url: HTTP critics; api_key_env:
    the name of the environment variable that holds the key for base_url's server (e.g. "VLLM_KEY").
    policy (or "self:NAME"): the Self-FD critic, deep-copied so that training never changes it.
    prompt_file (LLM and self critics only): read here, once; ValueError naming the file if it is unusable."""
    s = Config(**options)
    if s.prompt not in PROMPTS:
        raise ValueError(f"prompt must be one of {sorted(PROMPTS)}")
    if s.max_feedback_chars < 1 or s.max_reply_bytes < 1:
        raise ValueError("max_feedback_chars and max_reply_bytes must be positive")
    kind, _, arg = spec.partition(":")
    level = tutor_level(spec) if kind == "tutor" else None
    offline = {
        "tutor": lambda t, a, r: _tutor(t, a, r, level, s),
        "lean": lambda t, a, r: lean_feedback(t, a, r, s),
        "ground-truth": lambda t, a, r: frame("solution", _reference_proof(t)),
        "constant": lambda t, a, r: hint(arg, s),
        "none": lambda t, a, r: "",   # the control: the teacher's prompt IS the student's
    }
    if kind in offline and s.prompt_file:
        raise ValueError(f"prompt file {s.prompt_file}: the {kind} source writes no critique prompt, so the file "
                         "would not be used (a prompt file is for the LLM critics and self)")
    if kind in offline and ((kind == "constant") == bool(arg) or kind == "tutor"):
        return Feedback(spec, s, write=offline[kind])
    template = read_prompt_file(s.prompt_file) if s.prompt_file and (kind == "self" or kind in API_KEYS) else None
    if kind == "self":
        if policy is None and not arg:
            raise ValueError("self: the critic is the policy itself: pass policy= (fd.py does), or name a "
                             "model folder, self:FOLDER")
        if policy is None:
            policy = lm.load(arg)
        elif copy_policy:   # the paper's self-feedback comes from the INITIAL model, frozen
            policy = copy.deepcopy(policy)
        return Feedback(spec, s, ask=_self_critic(policy, s), model_name=getattr(policy, "name", arg),
                        template=template)
    if kind not in API_KEYS:
        raise ValueError(f"unknown feedback spec {spec!r}: use tutor, ground-truth, lean, self, constant:TEXT, "
                         "none, openai:MODEL or anthropic:MODEL")
    if not arg:
        raise ValueError(f"{spec!r}: name the model, e.g. {kind}:MODEL")
    from fdlean import critics  # the HTTP client loads only when an LLM critic is named
    url = base_url or critics.APIS[kind][4]
    raw = _critic_key(kind, url, api_key, api_key_env)
    key = raw.strip()   # a pasted key's "\n" or "\r": requests would refuse the header and quote the key
    scrub = critics.scrubber(raw, key)
    if key and not (key.isascii() and key.isprintable() and not any(c.isspace() for c in key)):
        raise FeedbackError(f"{kind}: the API key holds whitespace, control or non-ASCII characters inside (a bad "
                            "paste?): not sent")
    home = _host(critics.APIS[kind][4])
    official = _host(url) == home
    withheld = not key and not official and bool(os.environ.get(API_KEYS[kind], "").strip())
    if not key and official:
        raise FeedbackError(f"{kind}: no API key: set {API_KEYS[kind]} (or pass api_key=), or name a local "
                            "OpenAI-compatible server with base_url (fd.py: --base-url URL)")
    why = critics.key_transport(url, key)
    if why:
        raise FeedbackError(scrub(f"{kind}: {why}"))
    ask = critics.http_critic(kind, arg, s, key, url)

    def asked(prompt, stats):
        try:
            return ask(prompt, stats)
        except critics.CriticError as e:
            why = scrub(str(e))
            if withheld and getattr(e, "status", None) in (401, 403):   # say why no key went
                why += (f" ({API_KEYS[kind]} goes only to {home}: name this server's key with api_key_env=NAME, "
                        "the environment variable holding it)")
        raise FeedbackError(why)   # outside the except: no chained exception (its request holds the key) comes along
    return Feedback(spec, s, ask=asked, model_name=arg, remote=True, scrub=scrub, template=template)


def _host(url):
    return (urllib.parse.urlparse(url).hostname or "").lower()


def _critic_key(kind, url, api_key, api_key_env):
    """The key for url's server, unstripped ("" for none). A provider's key from its environment variable
    goes only to that provider's own host: sent to another base_url (a proxy, a vLLM server of someone else)
    it would hand the account over. Another server gets the key named for it (api_key=, api_key_env=) or none."""
    if api_key is not None and api_key_env:
        raise ValueError("pass api_key or api_key_env, not both")
    if api_key is not None:
        return api_key
    if api_key_env:
        key = os.environ.get(api_key_env, "")
        if not key.strip():
            raise FeedbackError(f"{kind}: api_key_env names {api_key_env}, but that environment variable is not set "
                                "(or empty)")
        return key
    from fdlean import critics
    return os.environ.get(API_KEYS[kind], "") if _host(url) == _host(critics.APIS[kind][4]) else ""
