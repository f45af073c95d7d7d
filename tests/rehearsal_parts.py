"""Parts of a CPU rehearsal of the paper's GPU path (fd.py / grpo.py / evaluate.py with --paper, scaled down): a tiny
chat model that has learnt ONE tool conversation, a Kimina Lean Server stand-in, an OpenAI-compatible critic stand-in
and a Mathlib-style task file. Everything listens on 127.0.0.1 only; nothing here needs a network or a GPU.

    path = build_chat_prover(str(tmp / "prover"))        # ~10-20 s on 2 CPU threads; lm.load(path) reads it
    write_tasks(str(tmp / "tasks.jsonl"))                # --tasks jsonl:PATH / --eval-tasks jsonl:PATH
    with kimina_standin() as k, critic_server() as critic:
        ...  --verifier kimina:{k.url}  --feedback openai:critic-model --base-url {critic.url}
        k.posts, critic.requests                         # what each received

The prover (a Qwen3 model of two layers, a byte-level BPE tokenizer with Qwen3's control tokens, QWEN3_TEMPLATE)
answers the prompt prompting.render(tok, task, tools=tools.TOOLS) of each task in TASKS with, generation by generation
(fdlean/agent.py appends the tools' outputs between them):
    1. <think>\\nI write the proof and check it.\\n</think>\\n\\n<tool_call>\\n{"name": "lean_write_file", ...}\\n</tool_call>
       the file: the statement, then the task's solution (TASKS[0]) or the wrong proof WRONG (the others)
    2. <tool_call>\\n{"name": "lean_check_file", "arguments": {}}\\n</tool_call>
    3. The file is written and checked.
each closed by <|im_end|> (its EOS; after a call it is learnt too, so a sampler that stops at </tool_call> and one
that runs on to the EOS see the same text). sample_check(path) measures how often it does (rollouts through
turns.rollout against the Kimina stand-in).
Import-light: torch / transformers load inside the functions.
"""
import contextlib
import http.server
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _p in (ROOT, HERE):   # the repository (fdlean, mini, mathlib) and tests/ (fake_kimina, fake_repl)
    if _p not in sys.path:
        sys.path.insert(0, _p)

from fdlean.lean import Task  # noqa: E402  (a dataclass: light)

# ----------------------------------------------------------------------------- the chat template
# Qwen3's structure, minimal (the real one: Qwen/Qwen3-8B tokenizer_config.json): with `tools`, a system block that
# lists them as JSON in <tools></tools> and teaches the <tool_call> format; turns as <|im_start|>ROLE\n...<|im_end|>\n;
# tool messages inside ONE user turn per run of them, each in <tool_response>\n...\n</tool_response>; the generation
# prompt, with enable_thinking false, closes an empty think block. Unlike the real one it prints an assistant's
# content as is: appending a message only extends the text (see QWEN3_REWRITING_TEMPLATE for what the real one does).
QWEN3_TEMPLATE = r"""
{%- if tools %}
{{- '<|im_start|>system\n' }}
{%- if messages[0].role == 'system' %}{{- messages[0].content + '\n\n' }}{%- endif %}
{{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
{%- for tool in tools %}{{- '\n' }}{{- tool | tojson }}{%- endfor %}
{{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'system' and loop.first %}
{%- elif message.role == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}
{{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\n' }}{%- endif %}
{%- else %}
{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\n' }}
{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\n\n</think>\n\n' }}{%- endif %}
{%- endif %}
""".strip()

# The real Qwen3 template's handling of assistant turns (reconstructed; tool_calls fields left out): the reasoning
# (before </think>) is split off and re-rendered as '<think>\n' + reasoning.strip('\n') + '\n</think>\n\n' +
# content.lstrip('\n'), only for turns after the last real user query; the LAST message gets a think block even when
# it has none (empty), which it loses once another message follows unless its reasoning is non-empty. So it
# rewrites: a generation without thinking, or with an empty think block, or spaced otherwise, renders differently as
# the last message than later. fdlean/agent.py then takes its fallbacks (see the report / sample_check).
QWEN3_REWRITING_TEMPLATE = QWEN3_TEMPLATE.replace(
    "{%- for message in messages %}",
    r"""{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
{%- set index = (messages|length - 1) - loop.index0 %}
{%- if ns.multi_step_tool and message.role == 'user' and not (message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
{%- set ns.multi_step_tool = false %}{%- set ns.last_query_index = index %}
{%- endif %}
{%- endfor %}
{%- for message in messages %}""", 1).replace(
    "{%- else %}\n{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}",
    r"""{%- elif message.role == 'assistant' %}
{%- set content = message.content %}{%- set reasoning = '' %}
{%- if '</think>' in content %}
{%- set reasoning = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
{%- set content = content.split('</think>')[-1].lstrip('\n') %}
{%- endif %}
{%- if loop.index0 > ns.last_query_index and (loop.last or reasoning) %}
{{- '<|im_start|>assistant\n<think>\n' + reasoning.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
{%- else %}{{- '<|im_start|>assistant\n' + content }}{%- endif %}
{{- '<|im_end|>\n' }}
{%- else %}
{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}""", 1)

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]     # pad, turn start, turn end (= EOS)
# added tokens that are NOT special (as in Qwen3's tokenizer): one token each, kept by skip_special_tokens
CONTROL = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]

# ----------------------------------------------------------------------------- the tasks and the conversation
TASKS = [
    Task("rehearsal_sq_nonneg", "theorem rehearsal_sq_nonneg (x : ℝ) : x ^ 2 ≥ 0 :=", header="import Mathlib",
         solution="by positivity"),
    Task("rehearsal_add_comm", "theorem rehearsal_add_comm (a b : ℕ) : a + b = b + a :=", header="import Mathlib",
         solution="by ring"),
    Task("rehearsal_abs_nonneg", "theorem rehearsal_abs_nonneg (x : ℝ) : |x| ≥ 0 :=", header="import Mathlib",
         solution="by positivity"),
]
WRONG = "by nlinarith [wrong]"        # fake_repl: the word `wrong` is an error ("unsolved goals") where it stands
THINK = "I write the proof and check it."
LAST = "The file is written and checked."


def proof_of(tasks, i) -> str:
    """The proof the prover writes for tasks[i]: the solution for the first task, WRONG for the others."""
    return tasks[i].solution if i == 0 else WRONG


def generations(task, proof: str) -> list[str]:
    """The three generations the prover learns for `task` (text as sampled, without the final EOS)."""
    call = json.dumps({"name": "lean_write_file", "arguments": {"content": task.statement + " " + proof}},
                      ensure_ascii=False)
    return [f"<think>\n{THINK}\n</think>\n\n<tool_call>\n{call}\n</tool_call>",
            '<tool_call>\n{"name": "lean_check_file", "arguments": {}}\n</tool_call>',
            LAST]


def tool_outputs(task, gens: list[str], env) -> list[str]:
    """What tools.Workspace returns for the calls of each generation (one output per call), checked by `env`."""
    from fdlean import tools
    ws = tools.Workspace(task, env)
    return [[ws.run(c) for c in tools.parse_calls(g, ws.max_calls)] for g in gens]


def conversation(tok, task, gens: list[str], outputs: list[list[str]], eos_after_call: bool = True):
    """(ids, own): the prompt and the attempt's token sequence exactly as fdlean/agent.py builds it (its _tool_turn:
    the text the template puts after a generation, then agent.tool_messages), and per id whether the model generated
    it (the loss mask). eos_after_call: each generation ends with the EOS (True), or a call's generation stops at
    </tool_call> (the sampler's stop; its EOS is then context)."""
    from fdlean import agent, prompting, tools
    said = prompting.render(tok, task, tools=tools.TOOLS)
    ids = tok(said, add_special_tokens=False)["input_ids"]
    own = [False] * len(ids)
    talk = prompting.chat_messages(task, tools=tools.TOOLS)
    for k, (g, outs) in enumerate(zip(gens, outputs)):
        gen = tok(g, add_special_tokens=False)["input_ids"]
        if eos_after_call or not outs:
            gen = gen + [tok.eos_token_id]
        ids, own = ids + gen, own + [True] * len(gen)
        if not outs or k == len(gens) - 1:
            break
        text = tok.decode(gen[:-1] if gen[-1] == tok.eos_token_id else gen, skip_special_tokens=True)
        shown = [prompting.as_text(tok, o) for o in outs]
        talk = talk + [{"role": "assistant", "content": text}]
        closed = prompting.chat_template(tok, talk, tools.TOOLS, add_generation_prompt=False)
        ended = said + tok.decode(gen)
        gap = closed[len(ended):] if closed.startswith(ended) else "\n"
        gap += agent.tool_messages(tok, talk, shown, tools.TOOLS)
        talk += [{"role": "tool", "content": o} for o in shown]
        said = ended + gap
        more = tok(gap, add_special_tokens=False)["input_ids"]
        ids, own = ids + more, own + [False] * len(more)
    return ids, own


# ----------------------------------------------------------------------------- the prover
def make_tokenizer(corpus: list[str], vocab_size: int = 1024, template: str = QWEN3_TEMPLATE):
    """A byte-level BPE tokenizer (trained on `corpus`) with Qwen3's control tokens and chat template."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bpe.add_tokens([AddedToken(t, special=False, normalized=False, lstrip=False, rstrip=False) for t in CONTROL])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  clean_up_tokenization_spaces=False)
    tok.chat_template = template
    return tok


@dataclass
class Built:
    path: str
    seconds: float
    steps: int
    loss: float                       # the last step's mean loss over the generated tokens
    tokens: list = field(default_factory=list)   # per task: (prompt tokens, whole conversation tokens)


def build_chat_prover(path: str, tasks=None, seed: int = 0, threads: int = 2, max_steps: int = 400,
                      target_loss: float = 2e-4, template: str = QWEN3_TEMPLATE, max_positions: int = 2048,
                      info: dict | None = None) -> str:
    """Train the tiny chat prover of the module docstring on `tasks` (default TASKS; the first is solved, the others
    get WRONG) and save it (model, tokenizer, generation config) to `path`, which fdlean.lm.load reads. The tool
    outputs it learns are the ones tools.Workspace gives against tests/fake_kimina.py. Deterministic in `seed`;
    trains on `threads` CPU threads (restored after) until the loss on its generated tokens is below
    `target_loss` (checked every 25 steps) or `max_steps`. `info`, if given, gets the Built record. Returns path."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    import lean_env
    from fdlean import prompting, tools
    tasks = list(tasks or TASKS)
    t0 = time.monotonic()
    gens = [generations(t, proof_of(tasks, i)) for i, t in enumerate(tasks)]
    with kimina_standin() as k:
        env = lean_env.load("kimina", url=k.url, backoff=0.01, max_repls=2)
        outputs = [tool_outputs(t, g, env) for t, g in zip(tasks, gens)]
        env.close()
    # the tokenizer, trained on the texts it will read (so the prompt is short), rendered with a provisional one
    probe = make_tokenizer(["x"], 300, template)
    prompting.set_prompting(probe, "chat", True)
    corpus = [prompting.render(probe, t, tools=tools.TOOLS) for t in tasks] * 4
    corpus += ["\n".join(g + [o for outs in out for o in outs]) for g, out in zip(gens, outputs)] * 4
    tok = make_tokenizer(corpus, 1024, template)
    prompting.set_prompting(tok, "chat", True)
    rows = [conversation(tok, t, g, o) for t, g, o in zip(tasks, gens, outputs)]
    lengths = [len(ids) for ids, _ in rows]
    if max(lengths) > max_positions:
        raise ValueError(f"conversations of {lengths} tokens: over max_positions = {max_positions}")

    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        config = Qwen3Config(vocab_size=len(tok), hidden_size=96, intermediate_size=192, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, head_dim=24,
                             max_position_embeddings=max_positions, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id, bos_token_id=None, tie_word_embeddings=False)
        model = Qwen3ForCausalLM(config)
        T = max(lengths)
        ids = torch.full((len(rows), T), tok.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), T), -100, dtype=torch.long)
        for r, (seq, own) in enumerate(rows):
            ids[r, :len(seq)] = torch.tensor(seq)
            labels[r, :len(seq)] = torch.tensor([x if o else -100 for x, o in zip(seq, own)])
        # right padding, never a label: causal attention never lets a real token see it, so no attention mask
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
        model.train()
        step, loss = 0, float("inf")
        for step in range(1, max_steps + 1):
            lr = 1e-2 * min(1.0, step / 20)
            for g in opt.param_groups:
                g["lr"] = lr
            out = model(input_ids=ids, labels=labels)
            opt.zero_grad()
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            loss = out.loss.item()
            if step % 25 == 0 and loss < target_loss:
                break
        model.eval()
        model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                                   bos_token_id=None)
        os.makedirs(path, exist_ok=True)
        model.save_pretrained(path)
        tok.save_pretrained(path)
    finally:
        torch.set_num_threads(old_threads)
    if info is not None:
        info["built"] = Built(path, time.monotonic() - t0, step, loss,
                              [(len(tok(prompting.render(tok, t, tools=tools.TOOLS), add_special_tokens=False)
                                    ["input_ids"]), n) for t, n in zip(tasks, lengths)])
    return path


def expected_log(tasks=None) -> list[list[tuple]]:
    """Per task, the Attempt.log of the conversation the prover learnt (generations and tool outputs in order)."""
    import lean_env
    tasks = list(tasks or TASKS)
    out = []
    with kimina_standin() as k:
        env = lean_env.load("kimina", url=k.url, backoff=0.01, max_repls=2)
        for i, t in enumerate(tasks):
            gens = generations(t, proof_of(tasks, i))
            outs = tool_outputs(t, gens, env)
            log = []
            for g, o in zip(gens, outs):
                log += [("model", g)] + [("tool", x) for x in o]
            out.append(log)
        env.close()
    return out


def sample_check(path: str, tasks=None, n: int = 20, seed: int = 0, max_new_tokens: int = 400,
                 threads: int = 2) -> dict:
    """Load the prover with lm.load and sample it at temperature 1, n times per task: its first generation alone
    (sampling.sample from prompting.render(tok, task, tools=tools.TOOLS), stopped at tools.CALL_END), and n whole
    agentic attempts through turns.rollout (fdlean/agent.py; the tools' Lean is the Kimina stand-in). Returns
    {task name: {"first": fraction of first generations that are the learnt write-file call, "whole": fraction of
    attempts whose log is the learnt conversation, "ids": fraction whose token sequence is the one trained on
    (conversation(), the calls stopped at </tool_call>), "ok": fraction Lean accepted, "samples": 3 first
    generations}}."""
    import torch

    import lean_env
    from fdlean import lm, prompting, sampling, tools, turns
    tasks = list(tasks or TASKS)
    want = expected_log(tasks)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        policy = lm.load(path, device="cpu")
        tok = policy.tokenizer
        report = {}
        with kimina_standin() as k:
            env = lean_env.load("kimina", url=k.url, backoff=0.01, max_repls=2)
            for i, t in enumerate(tasks):
                gens = [x for kind, x in want[i] if kind == "model"]
                outs = tool_outputs(t, gens, env)
                trained, _ = conversation(tok, t, gens, outs, eos_after_call=False)
                prompt = tok(prompting.render(tok, t, tools=tools.TOOLS), add_special_tokens=False)["input_ids"]
                firsts = [x.text for x in sampling.sample(policy, [prompt] * n, 200, 1.0, 1.0, seed + i,
                                                          stop=tools.CALL_END)]
                attempts = turns.rollout(policy, env, [t] * n, max_new_tokens=max_new_tokens, temperature=1.0,
                                         generator=seed + 100 + i, tools=True)
                report[t.name] = {"first": sum(f == gens[0] for f in firsts) / n,
                                  "whole": sum(a.log == want[i] for a in attempts) / n,
                                  "ids": sum(prompt + a.ids == trained for a in attempts) / n,
                                  "ok": sum(bool(a.results) and a.result.ok for a in attempts) / n,
                                  "samples": firsts[:3], "logs": [a.log for a in attempts[:2]]}
            env.close()
    finally:
        torch.set_num_threads(old_threads)
    return report


# ----------------------------------------------------------------------------- the task file
def write_tasks(path: str, tasks=None) -> str:
    """The tasks as JSONL that mini.tasks.load("jsonl:PATH") reads back equal (name, statement, header, solution,
    level). Returns path."""
    tasks = list(tasks or TASKS)
    with open(path, "w", encoding="utf-8") as f:
        for t in tasks:
            f.write(json.dumps({"name": t.name, "statement": t.statement, "header": t.header,
                                "solution": t.solution, "level": t.level}, ensure_ascii=False) + "\n")
    return path


# ----------------------------------------------------------------------------- the servers
@dataclass
class KiminaStandin:
    url: str
    server: object          # the http.server.ThreadingHTTPServer
    kimina: type            # fake_kimina.Kimina: its class attributes are the server's state (script, posts, ...)

    @property
    def posts(self) -> list:
        """(path, headers, body) of every request so far."""
        return self.kimina.posts


@contextlib.contextmanager
def kimina_standin():
    """tests/fake_kimina.py's server on 127.0.0.1 (fresh state): yields a KiminaStandin (.url for --verifier
    kimina:URL, .posts, .kimina the handler class). Its verdicts: fake_repl's rules (WRONG is an error, a solution
    without `wrong`, `sorry`, `hang`, `crash` is accepted). One at a time: the state is the class's."""
    from fake_kimina import Kimina, start_kimina
    srv, url = start_kimina()
    try:
        yield KiminaStandin(url, srv, Kimina)
    finally:
        srv.shutdown()
        srv.server_close()


CRITIC_TEXT = "1. Do check the file with lean_check_file before answering."


@dataclass
class CriticStandin:
    url: str                                           # base URL, ending in /v1 (fd.py --base-url)
    requests: list = field(default_factory=list)       # every request's JSON body, in order
    paths: list = field(default_factory=list)          # and its path (/v1/chat/completions)
    server: object = None


@contextlib.contextmanager
def critic_server(text: str = CRITIC_TEXT):
    """An OpenAI-compatible chat-completions server on 127.0.0.1 (a daemon thread): every POST's JSON body is
    recorded in .requests and answered with one choice whose content is `text` (finish_reason stop, usage 10 / 12
    tokens). Yields a CriticStandin; .url is the base URL for --base-url (critics.py appends /chat/completions)."""
    lock = threading.Lock()
    state = CriticStandin("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            with lock:
                state.requests.append(body)
                state.paths.append(self.path)
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            self._send(200, {"id": "chatcmpl-rehearsal", "object": "chat.completion",
                             "model": body.get("model", "") if isinstance(body, dict) else "",
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                          "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 10, "completion_tokens": 12}})

        def _send(self, status, obj):
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    state.server, state.url = srv, f"http://127.0.0.1:{srv.server_address[1]}/v1"
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield state
    finally:
        srv.shutdown()
        srv.server_close()


if __name__ == "__main__":   # python tests/rehearsal_parts.py [FOLDER]: build, then sample and show
    import tempfile
    out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="rehearsal-prover-")
    info = {}
    build_chat_prover(out, info=info)
    b = info["built"]
    print(f"built {b.path} in {b.seconds:.1f} s: {b.steps} steps, loss {b.loss:.2e}, tokens (prompt, whole) {b.tokens}")
    for name, r in sample_check(out).items():
        print(f"{name}: first {r['first']:.2f}  whole {r['whole']:.2f}  ids {r['ids']:.2f}  accepted {r['ok']:.2f}")
        for s in r["samples"]:
            print("   ", repr(s))
