"""A rehearsal of the paper's GPU path on the CPU: fd.py --paper, then grpo.py --paper --init-from that run, then
evaluate.py --paper, each scaled down by explicit flags only, with a tiny Qwen3-style chat model built here
(tests/rehearsal_parts.py: it has learnt one tool conversation), a loopback Kimina Lean Server stand-in as the
verifier and the tools' Lean, and a loopback OpenAI-compatible critic. What a GPU run would get wrong silently is
asserted: each tool call stops the generation and its output is appended as context (never trained), the whole
attempt keeps to one token budget, the critic reads the attempt as generated (thinking, calls, outputs) and Lean's
last word, and the three scripts accept --paper with the agentic attempt on.
"""
import json

import pytest
from rehearsal_parts import THINK, build_chat_prover, critic_server, kimina_standin, write_tasks
from transformers import AutoTokenizer

import evaluate
import fd
import grpo
from fdlean import turns
from training import checkpoint

BUDGET = 300   # sampled tokens per whole attempt: the prover's conversation takes about 130


@pytest.fixture(scope="module")
def prover(tmp_path_factory):
    return build_chat_prover(str(tmp_path_factory.mktemp("rehearsal") / "prover"), threads=1)


def test_the_paper_path_runs_on_cpu_fd_then_grpo_then_evaluate(prover, tmp_path, monkeypatch):
    task_file = write_tasks(str(tmp_path / "tasks.jsonl"))
    seen = []   # every attempt fd.py / grpo.py made, as turns.rollout returned it

    def recording(*args, **kw):
        attempts = rollout(*args, **kw)
        seen.append((kw.get("tools"), attempts))
        return attempts
    rollout = turns.rollout
    monkeypatch.setattr(turns, "rollout", recording)
    with kimina_standin() as kimina, critic_server() as critic:
        common = ["--paper", "--tasks", f"jsonl:{task_file}", "--eval-tasks", f"jsonl:{task_file}",
                  "--verifier", f"kimina:{kimina.url}", "--max-new-tokens", str(BUDGET), "--max-prompt", "0",
                  "--eval-limit", "2", "--eval-n", "1", "--eval-every", "0", "--warmup", "1", "--micro-batch", "1",
                  "--threads", "1"]
        cfg = fd.parse_args(["--model", prover, "--out", str(tmp_path / "fd"), "--steps", "2", "--prompts", "2",
                             "--feedback", "openai:critic-model", "--base-url", critic.url, *common])
        assert cfg.tools and cfg.lr == 1e-5 and cfg.topk == 25   # --paper: agentic, Table 1's values
        fd.train(cfg)
        rows = checkpoint.read_metrics(str(tmp_path / "fd"))
        assert [r["step"] for r in rows] == [0, 1, 2]
        assert all(r["feedback_failures"] == 0 for r in rows[1:])

        tok = AutoTokenizer.from_pretrained(prover)
        attempts = [a for tools, batch in seen for a in batch if tools]
        assert len(attempts) >= 4   # 2 steps x 2 prompts (and the held-out evaluations)
        called = [a for a in attempts if any(kind == "tool" for kind, _ in a.log)]
        assert called, "no attempt called a tool"
        for a in called:
            assert a.n_sampled <= BUDGET   # one budget for the whole attempt, not per generation
            # a call stops the generation: the sampled run before the first output ends with the call's end
            first_output = a.trained.index(False)
            assert tok.decode(a.ids[:first_output]).endswith("</tool_call>")   # special tokens shown: no EOS
            # the output is appended as context (not trained), then the policy writes again
            assert any(a.trained[first_output:]) and a.turns >= 2
            assert sum(a.trained) < len(a.ids)

        # the critic read each attempt as generated: the thinking, the call, the tool's output, Lean's last word
        assert critic.requests and all(p == "/v1/chat/completions" for p in critic.paths)
        asked = ["\n".join(m["content"] for m in r["messages"]) for r in critic.requests]
        assert all(r["model"] == "critic-model" for r in critic.requests)
        for a in called[:4]:
            output = next(text for kind, text in a.log if kind == "tool")
            assert any(THINK in q and "lean_write_file" in q and output.strip()[:60] in q for q in asked), output
        assert kimina.posts   # the tools and the verdicts went to the Lean server

        seen.clear()
        g = grpo.parse_args(["--init-from", str(tmp_path / "fd" / "final"), "--out", str(tmp_path / "grpo"),
                             "--steps", "1", "--prompts", "1", "--group", "2", *common])
        assert g.tools
        grpo.train(g)
        assert [r["step"] for r in checkpoint.read_metrics(str(tmp_path / "grpo"))] == [0, 1]
        assert any(tools and any(k == "tool" for a in batch for k, _ in a.log) for tools, batch in seen)

        results = evaluate.main(["--paper", "--model", str(tmp_path / "grpo" / "final"), "--tasks",
                                 f"jsonl:{task_file}", "-n", "2", "--k", "1,2", "--verifier", f"kimina:{kimina.url}",
                                 "--max-new-tokens", str(BUDGET), "--out", str(tmp_path / "eval")])
    assert results["tools"] and results["max_new_tokens"] == BUDGET
    with open(tmp_path / "eval" / "attempts_1.jsonl") as fh:
        records = [json.loads(line) for line in fh]
    assert len(records) == 6
    # solved = a written file Lean accepts: the first task's proof is right, the others' (WRONG) never pass
    assert any(r["ok"] for r in records if r["task"] == 0)
    assert not any(r["ok"] for r in records if r["task"] != 0)
    assert all(THINK in r["generated"] for r in records)   # epistemic words are counted over the generation


def test_a_template_that_rewrites_earlier_turns_feeds_the_model_the_same_tokens(prover):
    """Qwen3's real template renders the last assistant turn with a <think> block it drops once a tool message
    follows, so the text after a generation cannot be read as a difference of renderings: the agent reads it
    around a stand-in. With such a template the prover (trained with the plain one) must see the same tokens."""
    from rehearsal_parts import QWEN3_REWRITING_TEMPLATE, TASKS

    import lean_env
    from fdlean import lm
    policy = lm.load(prover, device="cpu")
    runs = []
    with kimina_standin() as kimina:
        env = lean_env.load("kimina", url=kimina.url, backoff=0.01, max_repls=2)
        for template in (None, QWEN3_REWRITING_TEMPLATE):
            if template:
                policy.tokenizer.chat_template = template
            runs.append(turns.rollout(policy, env, TASKS, max_new_tokens=BUDGET, temperature=1.0, generator=7,
                                      tools=True))
        env.close()
    assert [a.ids for a in runs[0]] == [a.ids for a in runs[1]]
    assert [a.trained for a in runs[0]] == [a.trained for a in runs[1]]
    text = policy.tokenizer.decode(runs[1][0].ids)
    assert "</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n" in text and runs[1][0].result.ok
