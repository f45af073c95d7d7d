"""Supervised warm-up: builds the mini world's `small-prover`, or fine-tunes any HF model on a JSONL.

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861). The paper starts FD
from a pretrained Qwen (Section 4); on 2 CPU cores this project starts from a few-million-parameter
Llama trained here. FD (Section 3) needs the SAME network to be a better prover when privileged
feedback F(y) is in its prompt (that is the teacher pi_mu(. | x, F(y))), so besides plain
(statement -> proof) examples the warm-up trains on feedback-conditioned ones, framed by
feedback.py's own sources so the text matches what FD's teacher will read: the reference proof
("ground-truth"), the first half of it, the offline tutor's hints on a corrupted attempt, and
(sparingly: a larger share hurt the small prover) the Lean error of a wrong attempt.

    python -m small_prover.sft                                  # build the preset into the cache (minutes on 2 cores)
    python -m small_prover.sft --out runs/small-prover          # build it into a folder instead
    python -m small_prover.sft --jsonl DATA.jsonl --model HF_ID_OR_DIR --out DIR   # (statement, proof) fine-tuning
    python -m scripts.calibrate                            # is the preset's teacher better than its student?
    model.load(sft.resolve_model("small-prover"))  # builds once into ~/.cache/fd-lean/small-prover-<recipe hash>
                                                   # ($FD_LEAN_CACHE or $XDG_CACHE_HOME/fd-lean); --rebuild to redo
Two processes asking for the preset at once: one builds, the other waits for it (a lock file).
"""
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import random
import re
import shutil
import time
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

import feedback
import lean_env
from fdlean import cli, lm, prompting
from lean_env import Task
from mini import tasks

PRESET = "small-prover"  # the model name that means "this file's recipe, built on first use"
RECIPE_VERSION = 7  # bump when the training code or the use of Lean's messages changes the build (wording is hashed)


@dataclass
class Config:
    out: str = ""                 # where to save (empty: the user cache, see cache_dir)
    jsonl: str = ""               # fine-tune on this JSONL of {statement, proof|solution[, header]}
    model: str = ""               # with --jsonl: the HF id / folder to fine-tune ("" = a fresh small prover)
    seed: int = 0                 # data, initial weights and batch order
    steps: int = 1500             # optimizer steps
    batch_size: int = 32          # examples per step
    lr: float = 2e-3              # peak learning rate (AdamW), cosine to 10% of it
    warmup: int = 50              # linear warmup steps
    weight_decay: float = 0.01    # on matrices only
    n_tasks: int = 32000          # generated training tasks (1.5 epochs at 1,500 x 32)
    d_model: int = 256            # Llama width; with 4 layers, 4 heads, FFN 688 and tied embeddings
                                  # about 3.2M parameters for the word-level vocabulary
    n_layers: int = 4             # Llama layers
    n_heads: int = 4              # attention heads (must divide --d-model)
    d_ff: int = 688               # feed-forward width
    max_len: int = 320            # examples longer than this (prompt + feedback + proof) are dropped
    # the training mix: share of examples per prompt kind (normalised)
    plain: float = 0.35           # statement -> proof (the student's prompt)
    solution: float = 0.3         # ground-truth feedback: the full reference proof
    prefix: float = 0.05          # a hint naming the first half of the reference proof
    tutor: float = 0.24           # the tutor's advice on a corrupted attempt, at a level drawn from tutor_levels
    tutor_levels: str = "0.1,0.3,0.3,0.3"  # weights of the tutor's levels 1-4 (feedback.py: tutor:N): the teacher
                                  # reads every level, rules over shapes (3, 4) as well as instance hints (2)
    keep: float = 0.03            # the tutor's verdict on a correct attempt ("Do keep the same proof.")
    lean: float = 0.03            # the Lean output of a corrupted attempt (sparingly: a larger share hurt)
    level_mix: str = "0.6,0.3,0.1"  # training weights of levels 1, 2, 3 (tasks.Generation.mix)
    copy_warmup: int = 250        # first steps on feedback examples only (copying the hint is learnt first)
    lean_checks: int = 10000      # corrupted attempts checked by real Lean (all "lean" ones, then tutor ones)
    bf16: bool = True             # bf16 autocast where the CPU computes bf16 natively (AVX512-BF16, AMX):
                                  # 1.3-1.5x faster there; elsewhere it is emulated, 10-20x slower, so fp32
    threads: int = 2              # torch CPU threads
    rebuild: bool = False         # build the cached preset again even if it is there


# ----------------------------------------------------------------------------- the tokenizer

# One token per name (h1, hpq, Or, x1), per field (.1 .mp .elim: `h1.mp` is h1 + .mp, so every
# hypothesis name combines with every field), per bracket and punctuation mark. Field tokens decode
# glued to what precedes them; everything else is joined by spaces, which Lean accepts.
WORD = r":=|=>|[()⟨⟩,:]|\.?[^\s()⟨⟩,:.]+|\S"
SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]


def train_tokenizer(texts) -> PreTrainedTokenizerFast:
    """A word-level tokenizer: far fewer tokens than a byte-level BPE for mini-world proofs, and
    decoding (words joined by spaces) gives text Lean accepts. Unknown words become <unk>."""
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Split(Regex(WORD), behavior="isolated")])
    tok.decoder = decoders.Sequence([decoders.Replace(Regex(r"^(?!\.[^.])"), " "), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=SPECIALS, min_frequency=2))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>", clean_up_tokenization_spaces=False)


# ----------------------------------------------------------------------------- the training examples

def corrupt(task, rng: random.Random) -> str:
    """A plausible wrong attempt: one name of the reference proof swapped for a sibling (a field
    h1.1 -> h1.2, .mp -> .mpr, Or.inl -> Or.inr, or another hypothesis), as near misses look."""
    proof = task.solution
    hyps = re.findall(r"\(([^\s():]+) : (?!Prop\)|Type\)|α\)|α → Prop\))", task.statement)
    spots = [m for m in re.finditer(r"(?<![\w.'])([^\s()⟨⟩,:.]+)((?:\.\w+)*)", proof)
             if m.group(1) not in ("fun", "=>", "absurd", "Exists", "Iff")]
    if not spots:
        return proof + " " + rng.choice(hyps or ["h1"])
    m = rng.choice(spots)
    base, fields = m.group(1), m.group(2)
    swaps = {".1": ".2", ".2": ".1", ".mp": ".mpr", ".mpr": ".mp", ".inl": ".inr", ".inr": ".inl"}
    last = re.search(r"\.\w+$", fields)
    others = [h for h in hyps if h != base]
    if last and last.group(0) in swaps and (rng.random() < 0.6 or not others):
        new = base + fields[: last.start()] + swaps[last.group(0)]
    elif others:
        new = rng.choice(others) + fields
    else:
        new = base + ".1"
    return proof[: m.start()] + new + proof[m.end():]


def mini_examples(s: Config):
    """(task, feedback or None, proof) triples for the mini world, drawn with the mix's shares."""
    rng = random.Random(s.seed)
    mix = tuple(float(w) for w in s.level_mix.split(","))
    train = tasks.load("mini", split="train", n=s.n_tasks, seed=s.seed, cfg=tasks.Generation(mix=mix))
    kinds = ["plain", "solution", "prefix", "tutor", "keep", "lean"]
    picks = rng.choices(kinds, [getattr(s, k) for k in kinds], k=len(train))
    wrong = {i: corrupt(t, rng) for i, (t, k) in enumerate(zip(train, picks)) if k in ("tutor", "lean")}
    # Lean checks the corrupted attempts of every "lean" example and of the first tutor examples
    # up to the cap (the tutor quotes Lean's messages); other tutor hints go without messages.
    checked = sorted(wrong, key=lambda i: picks[i] != "lean")[: max(s.lean_checks, picks.count("lean"))]
    pairs = [(train[i], wrong[i]) for i in checked]
    results = dict(zip(checked, lean_env.load("mini").check_many(pairs) if pairs else []))  # no Lean if none
    no_messages = SimpleNamespace(ok=False, status="error", messages=[])
    sources = {k: feedback.load(k) for k in ("ground-truth", "lean")}
    tutors = [feedback.load(f"tutor:{n}") for n in feedback.TUTOR_LEVELS]
    levels = rng.choices(tutors, [float(w) for w in s.tutor_levels.split(",")], k=len(train))
    examples = []
    for i, (task, kind) in enumerate(zip(train, picks)):
        fb = None
        if kind == "solution":
            fb = sources["ground-truth"](task, "", None)
        elif kind == "prefix":
            words = re.findall(WORD, task.solution)
            fb = feedback.frame("hint", "1. Do start with " + " ".join(words[: max(1, len(words) // 2)]) + ".")
        elif kind == "tutor":
            fb = levels[i](task, wrong[i], results.get(i, no_messages))
        elif kind == "lean":
            fb = sources[kind](task, wrong[i], results.get(i, no_messages))
        elif kind == "keep":  # FD's teacher also reads the tutor's verdict on the student's successes
            fb = levels[i](task, task.solution, SimpleNamespace(ok=True, status="ok", messages=[]))
        examples.append((task, fb, task.solution))
    return examples


def jsonl_examples(path):
    """(task, feedback, proof) per line of {statement, proof or solution[, name, header, feedback]}.
    A bad line is a ValueError naming the file and the line."""
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except ValueError as e:
                raise ValueError(f"{path}, line {n}: bad JSON ({e})") from None
            proof = r.get("proof", r.get("solution")) if isinstance(r, dict) else None
            if not isinstance(proof, str) or not isinstance(r.get("statement"), str):
                raise ValueError(f"{path}, line {n}: needs text fields 'statement' and 'proof' (or 'solution')")
            task = Task(r.get("name", f"jsonl_{n - 1}"), r["statement"], r.get("header", ""), proof)
            out.append((task, r.get("feedback"), proof))
    return out


def encode(tokenizer, examples, max_len):
    """(ids, n_prompt, has_feedback) per example: the prompt from model.render_prompt (the one template FD uses),
    then the proof and EOS, the only tokens with a loss."""
    out = []
    for task, fb, proof in examples:
        p = prompting.encode(tokenizer, task, fb)
        # after a plain prompt the proof follows ":=" after a space; a chat reply starts at once
        space = "" if getattr(tokenizer, "chat_template", None) else " "
        y = tokenizer(space + proof.strip(), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        if len(p) + len(y) <= max_len:
            out.append((p + y, len(p), fb is not None))
    return out


def batches(encoded, batch_size, steps, rng, pad_id, first=()):
    """Length-bucketed batches (sort a shuffled pool of 50 batches by length, cut it, shuffle the
    cuts): little padding, still a random order. Serves the `first` examples (the copy warm-up),
    then cycles over all the data until `steps` batches."""
    made, first = 0, list(first)
    while True:
        order = list(range(len(encoded)))
        rng.shuffle(order)
        order, first = (first, []) if first else (order, [])
        pool = batch_size * 50
        for start in range(0, len(order), pool):
            chunk = sorted(order[start:start + pool], key=lambda i: len(encoded[i][0]))
            cuts = [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
            rng.shuffle(cuts)
            for cut in cuts:
                T = max(len(encoded[i][0]) for i in cut)
                ids = torch.full((len(cut), T), pad_id, dtype=torch.long)
                labels = torch.full((len(cut), T), -100, dtype=torch.long)
                for b, i in enumerate(cut):
                    seq, n_prompt, _ = encoded[i]
                    ids[b, : len(seq)] = torch.tensor(seq)
                    labels[b, n_prompt: len(seq)] = torch.tensor(seq[n_prompt:])
                yield ids, labels
                made += 1
                if made == steps:
                    return


# ----------------------------------------------------------------------------- training

def new_small_prover(s: Config, tokenizer):
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=s.d_model, intermediate_size=s.d_ff,
                         num_hidden_layers=s.n_layers, num_attention_heads=s.n_heads,
                         num_key_value_heads=s.n_heads, max_position_embeddings=max(512, s.max_len),
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config)


def fit(net, encoded, s, pad_id, extra=None) -> list[dict]:
    """Next-token cross-entropy on each example's ids after its context (encode's n_prompt), AdamW
    with linear warmup then cosine to 10% of s.lr, s.steps batches of s.batch_size; the first
    s.copy_warmup batches (if s has it) from examples with feedback only. `extra(net, step)`: a loss
    added to each step's (sft_turns.py's unlikelihood of a rejected candidate). Returns the per-step log."""
    decay = [p for p in net.parameters() if p.dim() >= 2]
    rest = [p for p in net.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": s.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=s.lr, betas=(0.9, 0.95))
    # linear warmup then cosine to 10% of lr, by step (a wall-clock schedule would not be deterministic)
    lr_at = lambda i: s.lr * (min(1.0, (i + 1) / s.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * i / s.steps))))
    net.train()
    # copy warm-up: the first steps see only examples with feedback, where the proof can be read off
    # the context; without it the small model barely learns to copy even a two-token reference proof
    rng = random.Random(s.seed + 1)
    warm = [i for i, e in enumerate(encoded) if e[2]]
    warm = rng.sample(warm, min(len(warm), getattr(s, "copy_warmup", 0) * s.batch_size))
    bar = tqdm(batches(encoded, s.batch_size, s.steps, rng, pad_id, warm), total=s.steps, desc="sft", mininterval=2)
    log, ema = [], None
    for step, (ids, labels) in enumerate(bar):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.bf16 and native_bf16()):
            loss = net(input_ids=ids, labels=labels).loss
            if extra is not None:
                loss = loss + extra(net, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        bar.set_postfix(loss=f"{ema:.3f}", refresh=False)
        log.append({"step": step, "loss": loss.item(), "lr": lr_at(step)})
    net.eval()
    return log


def train(s: Config) -> str:
    """Train and save to s.out; returns s.out. Deterministic for a seed (step-based schedule)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)
    t0 = time.time()
    if s.jsonl:
        examples = jsonl_examples(s.jsonl)
    else:
        examples = mini_examples(s)
    if s.model:
        policy = lm.load(resolve_model(s.model), device="cpu", dtype=torch.float32)
        tokenizer, net = policy.tokenizer, policy.model
    else:
        plain = SimpleNamespace(chat_template=None, bos_token="")  # the plain template, before a tokenizer exists
        texts = [prompting.render(plain, t, fb) + " " + y for t, fb, y in examples]
        tokenizer = train_tokenizer(texts)
        net = new_small_prover(s, tokenizer)
    encoded = encode(tokenizer, examples, s.max_len)
    n_params = sum(p.numel() for p in net.parameters())
    print(f"sft: {len(encoded)} examples, vocab {len(tokenizer)}, {n_params / 1e6:.2f}M parameters, "
          f"data in {time.time() - t0:.0f} s")
    log = fit(net, encoded, s, tokenizer.pad_token_id)
    lm.save(lm.Policy(net, tokenizer, torch.device("cpu"), "small-prover"), s.out)
    with open(os.path.join(s.out, "sft.json"), "w") as f:
        json.dump({"settings": dataclasses.asdict(s), "recipe_version": RECIPE_VERSION, "params": n_params,
                   "examples": len(encoded), "seconds": round(time.time() - t0, 1), "log": log}, f)
    torch.set_num_threads(threads)
    print(f"sft: saved {s.out} after {time.time() - t0:.0f} s")
    return s.out


# ----------------------------------------------------------------------------- the cached preset

def cache_dir() -> str:
    return os.environ.get("FD_LEAN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fd-lean")


def native_bf16() -> bool:
    """Does this CPU compute bf16 natively (AVX512-BF16 or AMX)? Elsewhere torch emulates bf16 matmuls, and bf16
    autocast made the build 10-20x slower than fp32 (python bench/bench_bf16.py)."""
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if probe is not None:
        return bool(probe())
    try:
        with open("/proc/cpuinfo") as f:
            return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", f.read()))
    except OSError:
        return False


def wording() -> str:
    """The text the build trains on, for a fixed sample of 40 training tasks: statements, reference proofs, corrupted
    attempts, the reference as ground truth and the tutor's advice at every level on the attempt and on the
    reference. A change of wording (a tutor sentence, a rule, the generator) is another model, so it must be another
    cache entry without anybody remembering to bump RECIPE_VERSION. Lean's messages are left out (no Lean here):
    a change in how the tutor reads them still needs the bump."""
    rng, fail = random.Random(0), SimpleNamespace(ok=False, status="error", messages=[])
    ok = SimpleNamespace(ok=True, status="ok", messages=[])
    tutors = [feedback.load(f"tutor:{n}") for n in feedback.TUTOR_LEVELS]
    truth = feedback.load("ground-truth")
    text = []
    for task in tasks.load("mini", split="train", n=40, seed=0):
        wrong = corrupt(task, rng)
        text += [task.statement, task.solution, wrong, truth(task, wrong, fail)]
        text += [tutor(task, wrong, fail) for tutor in tutors] + [tutor(task, task.solution, ok) for tutor in tutors]
    return hashlib.sha256("\n".join(text).encode()).hexdigest()


def recipe_hash(s: Config) -> str:
    """What decides the built model: the settings (minus where/whether to build; bf16 as this CPU will use it), the
    recipe version, feedback.py's framing templates (the teacher must read the trained frames) and the wording of
    the training text (`wording`)."""
    keep = {k: v for k, v in dataclasses.asdict(s).items() if k not in ("out", "rebuild", "threads")}
    keep["bf16"] = s.bf16 and native_bf16()   # an fp32 build is another model: a cache of its own
    text = json.dumps([keep, RECIPE_VERSION, feedback.TEMPLATES, wording()], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale(root: str):
    """Leftovers of killed builds (`small-prover-*.tmp<PID>`, `.old<PID>`) whose process is gone."""
    for name in os.listdir(root) if os.path.isdir(root) else []:
        m = re.fullmatch(r"small-prover-\w+\.(?:tmp|old)(\d+)", name)
        if m and not _alive(int(m.group(1))):
            print(f"sft: removing {os.path.join(root, name)}, left by a build that was killed")
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def build_small_prover(rebuild: bool = False, settings: Config | None = None, build=None) -> str:
    """The `small-prover` preset: built on first use (minutes), then loaded from the cache.
    The build goes into `PATH.tmp<PID>` and is renamed to PATH when complete, so a published PATH
    is always a whole model and is never removed (except by an explicit --rebuild). An exclusive
    lock on `PATH.lock` around check / build / publish: a second process waits for the first build
    and then loads it, instead of building too. `build(settings)` trains into settings.out (train)."""
    s = settings or Config()
    rebuild = rebuild or s.rebuild
    root = cache_dir()
    path = os.path.join(root, f"small-prover-{recipe_hash(s)}")
    published = lambda: os.path.isfile(os.path.join(path, "config.json"))
    remove_stale(root)
    if published() and not rebuild:
        return path
    os.makedirs(root, exist_ok=True)
    with open(path + ".lock", "w") as lock:  # the lock goes when the file closes, or the process dies
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"sft: waiting for another process that is building {path}", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
            if published():  # built while we waited: a rebuild asked for here is that build
                return path
        if published() and not rebuild:
            return path
        print(f"sft: building small-prover into {path} (once; about 6 minutes on 2 CPU cores"
              f"{'' if native_bf16() else ', in fp32: this CPU has no native bf16'})")
        tmp = f"{path}.tmp{os.getpid()}"
        try:
            (build or train)(dataclasses.replace(s, out=tmp))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if os.path.exists(path):  # --rebuild: the old model aside first, deleted once the new one is in
            old = f"{path}.old{os.getpid()}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    return path


def resolve_model(name: str) -> str:
    """What model.load should read for a model name a user gave: the preset is this file's recipe,
    built on first use (minutes, once) and then its cached folder; any other name is returned as it is."""
    return build_small_prover() if name == PRESET else name


# (field, test, what it must be): checked before anything slow starts (cli.check)
RULES = [(f, lambda v: v >= 1, "at least 1") for f in ("steps", "batch_size", "warmup", "n_tasks", "d_model", "n_layers",
                                                       "n_heads", "d_ff", "max_len", "threads")]
RULES += [(f, lambda v: v >= 0, "0 or more") for f in ("weight_decay", "plain", "solution", "prefix", "tutor", "keep",
                                                       "lean", "copy_warmup", "lean_checks")]
RULES += [("lr", lambda v: v > 0, "above 0")]


def parse_args(argv=None) -> Config:
    return cli.parse(Config, argv, prog="sft.py", description=__doc__.split("\n")[0])


def check_weights(value: str, option: str, script: str, example: str):
    """A comma-separated list of weights, 0 or more, not all 0, as many as `example` has: else one line, exit 2."""
    weights, count = value.split(","), example.count(",") + 1
    if not (len(weights) == count and all(re.fullmatch(r"\d+(\.\d*)?|\.\d+", w.strip()) for w in weights)
            and sum(map(float, weights)) > 0):
        cli.fail(f"{script}: --{option} {value}: must be {['three', 'four'][count - 3]} weights 0 or more, "
                 f"e.g. {example}")


def check_level_mix(value: str, script: str):
    """--level-mix: three weights (levels 1, 2, 3 of the training tasks)."""
    check_weights(value, "level-mix", script, "0.6,0.3,0.1")


def check(s: Config):
    """Every setting in range, and the files named, before anything slow starts: one line, exit 2."""
    cli.check(s, RULES, "sft.py")
    if s.out:   # a model folder is written whole: never over a run or another model (the preset's cache: its own)
        cli.new_folder(s.out, "sft.py")
    if s.d_model % s.n_heads:
        cli.fail(f"sft.py: --n-heads {s.n_heads}: must divide --d-model {s.d_model}")
    kinds = ("plain", "solution", "prefix", "tutor", "keep", "lean")
    if not sum(getattr(s, k) for k in kinds) > 0:
        cli.fail(f"sft.py: the shares --{' --'.join(kinds)} are all 0: give one a positive share")
    check_level_mix(s.level_mix, "sft.py")
    check_weights(s.tutor_levels, "tutor-levels", "sft.py", "0.1,0.3,0.3,0.3")   # the tutor's levels 1-4
    if s.jsonl:
        with cli.user_errors(f"sft.py: --jsonl {s.jsonl}", OSError, ValueError):
            jsonl_examples(s.jsonl)
    if s.model:
        with cli.user_errors(f"sft.py: --model {s.model}", lm.ModelNotFound):
            lm.check_name(s.model)


def main(argv=None):
    s = parse_args(argv)
    check(s)
    with cli.user_errors("sft.py", lm.ModelNotFound):  # a hub id the hub did not give (--model)
        print(train(s) if s.out else build_small_prover(settings=s))


if __name__ == "__main__":
    cli.main(main, "sft.py", lambda: "A preset that was being built is removed and built again on next use; an --out folder may hold part of a model: delete it.")
