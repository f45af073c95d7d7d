"""model.py: prompts, sampling (== HF generate), scoring (== a plain forward), checkpoints, HF path.

    python -m pytest -q tests/test_model.py
"""
import os

import pytest
import torch
import torch.nn.functional as F

from fdlean import lm, prompting, sampling
from lean_env import Task

torch.set_num_threads(1)

TASKS = [
    Task("mini_test_0001", "theorem mini_test_0001 (p q : Prop) (h1 : And p q) : And q p :=", solution="⟨h1.2, h1.1⟩", level=2),
    Task("mini_test_0002", "theorem mini_test_0002 (p q : Prop) (h1 : p) : Or p q :=", solution="Or.inl h1", level=1),
    Task("mini_test_0003", "theorem mini_test_0003 (p q r : Prop) (h1 : Iff p q) (h2 : q) (h3 : r) : p :=",
         solution="h1.mpr h2", level=1),
]
HINT = "Hint:\n1. Do build the pair ⟨_, _⟩."


@pytest.fixture(scope="module")
def policy(tiny_prover):
    return lm.load(tiny_prover, device="cpu")


def full_logprobs(net, prompt, attempt):
    """The reference: one plain forward over prompt + attempt, log_softmax, pick the attempt's ids."""
    logits = net(torch.tensor([prompt + attempt])).logits[0].float()
    logp = F.log_softmax(logits, -1)[len(prompt) - 1: -1]
    return logp.gather(1, torch.tensor(attempt)[:, None]).squeeze(1), -(logp.exp() * logp).sum(-1)


def test_prompts_end_where_the_proof_starts(policy):
    tok = policy.tokenizer
    for task in TASKS:
        student, teacher = prompting.render(tok, task), prompting.render(tok, task, HINT)
        assert student.endswith(":=") and teacher.endswith(":=") and HINT in teacher
        assert "mini_test" not in student  # the name carries no information: normalised
        attempt = tok(" " + task.solution, add_special_tokens=False)["input_ids"]
        for text, ids in ((student, prompting.encode(tok, task)), (teacher, prompting.encode(tok, task, HINT))):
            whole = tok(text + " " + task.solution, add_special_tokens=False)["input_ids"]
            assert whole == ids + attempt  # the attempt's ids are the same after either prompt
        assert tok.decode(attempt).replace(" ", "") == task.solution.replace(" ", "")
        assert tok.unk_token_id not in prompting.encode(tok, task, HINT)


def test_sample_returns_exact_ids_and_text(policy):
    prompts = [prompting.encode(policy.tokenizer, t) for t in TASKS] + [prompting.encode(policy.tokenizer, TASKS[0], HINT)]
    samples = sampling.sample(policy, prompts, max_new_tokens=12, temperature=1.0, generator=0)
    assert len(samples) == len(prompts)
    eos = policy.tokenizer.eos_token_id
    for s in samples:
        assert 1 <= len(s.ids) <= 12 and eos not in s.ids[:-1]
        assert s.truncated == (s.ids[-1] != eos)
        body = s.ids if s.truncated else s.ids[:-1]
        assert s.text == policy.tokenizer.decode(body, skip_special_tokens=True)
        assert prompting.proof_text(s) == s.text.strip()
    again = sampling.sample(policy, prompts, max_new_tokens=12, temperature=1.0, generator=0)
    assert [s.ids for s in again] == [s.ids for s in samples]  # a seed fixes the samples
    tiny_p = sampling.sample(policy, prompts, max_new_tokens=12, top_p=1e-6, generator=1)
    greedy = sampling.sample(policy, prompts, max_new_tokens=12, temperature=0)
    assert [s.ids for s in tiny_p] == [s.ids for s in greedy]  # top-p -> 0 keeps only the argmax


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_own_sampler_matches_hf_generate(policy, temperature):
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_sample", os.path.join(
        os.path.dirname(os.path.dirname(lm.__file__)), "bench", "bench_sample.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # prompts of different lengths: left padding, position ids and the mask must be right
    prompts = [prompting.encode(policy.tokenizer, t, fb) for t in TASKS for fb in (None, HINT)]
    torch.manual_seed(3)
    ours = [s.ids for s in sampling.sample(policy, prompts, max_new_tokens=10, temperature=temperature)]
    torch.manual_seed(3)
    theirs = bench.hf_generate(policy, prompts, 10, temperature, 1.0)
    assert ours == theirs


@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.7, 0.9), (0, 1.0)])
def test_fast_sampler_draws_what_the_plain_loop_draws(policy, temperature, top_p):
    """sampling.sample (KV cache, grouped prefill, repeated prompts prefilled once, finished rows
    dropped) against sampling.sample_plain (the whole sequences again at every step): the same ids."""
    from mini import tasks
    prompts = [prompting.encode(policy.tokenizer, t) for t in tasks.load("mini", split="test")[:12]]
    prompts += prompts[:4]  # repeated prompts, as in a GRPO group
    fast = sampling.sample(policy, prompts, max_new_tokens=12, temperature=temperature, top_p=top_p, generator=7)
    plain = sampling.sample_plain(policy, prompts, max_new_tokens=12, temperature=temperature, top_p=top_p,
                                  generator=7)
    assert [s.ids for s in fast] == [s.ids for s in plain]
    assert [(s.text, s.truncated) for s in fast] == [(s.text, s.truncated) for s in plain]
    for f, p in zip(fast, plain):     # the entropy where each token was drawn, too
        assert f.entropy == pytest.approx(p.entropy, abs=1e-4) and len(f.entropy) == len(f.ids)


def test_a_stop_text_and_budgets_per_row_end_rows_where_the_plain_loop_ends_them(policy):
    """A row ends once its text holds the stop text (a chat model's `</tool_call>`: the paper stops a generation
    at a tool call) or its own budget is spent. The fast sampler, which decodes only rows that drew a token holding
    the stop text's last character, ends the same rows at the same tokens as the plain loop, which decodes every
    row; a row that stopped is not truncated and stopped at the first place its text held the stop text."""
    from mini import tasks
    prompts = [prompting.encode(policy.tokenizer, t) for t in tasks.load("mini", split="test")[:16]]
    budget = [3 + i % 10 for i in range(len(prompts))]
    stop = "h1"
    fast = sampling.sample(policy, prompts, max_new_tokens=budget, generator=5, stop=stop)
    plain = sampling.sample_plain(policy, prompts, max_new_tokens=budget, generator=5, stop=stop)
    assert [(s.ids, s.text, s.truncated) for s in fast] == [(s.ids, s.text, s.truncated) for s in plain]
    tok = policy.tokenizer
    stopped = [s for s in fast if stop in tok.decode(s.ids)]
    assert stopped and any(s.truncated for s in fast)          # both ways of ending happen
    for s, b in zip(fast, budget):
        assert len(s.ids) <= b
        if s in stopped:
            assert not s.truncated and stop not in tok.decode(s.ids[:-1])   # its first occurrence
    free = sampling.sample(policy, prompts, max_new_tokens=budget, generator=5)
    assert [s.ids for s in free] != [s.ids for s in fast]      # the stop text changed something
    with pytest.raises(ValueError, match="one budget"):
        sampling.sample(policy, prompts, max_new_tokens=[4])


def test_one_generator_per_row_makes_a_rows_draws_its_own(policy):
    """A list of generators (the trainers: one per statement): a row samples the same tokens whatever the other
    rows of its batch, so data-parallel processes draw what one process draws; fast and plain samplers agree."""
    from mini import tasks
    prompts = [prompting.encode(policy.tokenizer, t) for t in tasks.load("mini", split="test")[:10]]
    gens = lambda seeds: [torch.Generator().manual_seed(s) for s in seeds]
    whole = sampling.sample(policy, prompts, max_new_tokens=12, generator=gens(range(10)))
    halves = (sampling.sample(policy, prompts[:4], max_new_tokens=12, generator=gens(range(4)))
              + sampling.sample(policy, prompts[4:], max_new_tokens=12, generator=gens(range(4, 10))))
    plain = sampling.sample_plain(policy, prompts, max_new_tokens=12, generator=gens(range(10)))
    assert [s.ids for s in whole] == [s.ids for s in halves] == [s.ids for s in plain]
    other = sampling.sample(policy, prompts, max_new_tokens=12, generator=gens(range(100, 110)))
    assert [s.ids for s in other] != [s.ids for s in whole]   # the seeds matter


def test_grouped_prefill_equals_one_forward(policy, monkeypatch):
    """The fast path (prompts prefilled in groups of similar length, caches padded and merged)
    against one left-padded forward: same next-token logits, same cache, same samples."""
    from mini import tasks
    prompts = [prompting.encode(policy.tokenizer, t) for t in tasks.load("mini", split="test")[:40]]
    lengths = [len(p) for p in prompts]
    assert max(lengths) - min(lengths) > 8        # varied enough for the grouped path
    T = max(lengths)
    ids = torch.tensor([[0] * (T - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in prompts])
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    monkeypatch.setattr(sampling, "PREFILL_ROWS", 7)     # 6 groups, the last one partial
    cache, logits = sampling._prefill(policy.model, ids, mask, pos, lengths)
    monkeypatch.setattr(sampling, "PREFILL_ROWS", 10_000)
    ref_cache, ref_logits = sampling._prefill(policy.model, ids, mask, pos, lengths)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    for layer, ref in zip(cache.layers, ref_cache.layers):  # real columns equal; padding is masked
        torch.testing.assert_close(layer.keys * mask[:, None, :, None], ref.keys * mask[:, None, :, None],
                                   atol=1e-5, rtol=1e-5)
    runs = []
    for rows in (7, 10_000):
        monkeypatch.setattr(sampling, "PREFILL_ROWS", rows)
        runs.append([s.ids for s in sampling.sample(policy, prompts, max_new_tokens=12, temperature=1.0, generator=5)])
    assert runs[0] == runs[1]


def test_token_logprobs_equal_a_plain_forward(policy):
    tok = policy.tokenizer
    prompts = [prompting.encode(tok, TASKS[0]), prompting.encode(tok, TASKS[1], HINT)]
    attempts = [tok(" ⟨h1.2, h1.1⟩", add_special_tokens=False)["input_ids"] + [tok.eos_token_id],
                tok(" Or.inr h1", add_special_tokens=False)["input_ids"]]
    logprobs, entropies = lm.token_logprobs(policy.model, prompts, attempts, chunk_size=3)
    assert logprobs.shape == (2, max(map(len, attempts)))
    for b in range(2):
        ref_lp, ref_ent = full_logprobs(policy.model, prompts[b], attempts[b])
        n = len(attempts[b])
        torch.testing.assert_close(logprobs[b, :n], ref_lp, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(entropies[b, :n], ref_ent, atol=1e-5, rtol=1e-5)
        assert (logprobs[b, n:] == 0).all()
    logprobs.sum().backward()  # gradients flow (GRPO's ratio needs them)
    assert lm.head_weight(policy.model).grad is not None
    policy.model.zero_grad(set_to_none=True)


def test_hidden_times_lm_head_is_the_logits(policy):
    ids = torch.tensor([prompting.encode(policy.tokenizer, TASKS[2])])
    hidden = lm.forward_hidden(policy.model, ids)
    weight = lm.head_weight(policy.model)
    assert weight.shape == (len(policy.tokenizer), hidden.shape[-1])
    torch.testing.assert_close(hidden @ weight.T, policy.model(ids).logits, atol=1e-5, rtol=1e-5)


def test_save_load_round_trip(policy, tmp_path):
    lm.save(policy, str(tmp_path))
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "tokenizer.json").exists()
    again = lm.load(str(tmp_path), device="cpu")
    ids = torch.tensor([prompting.encode(policy.tokenizer, TASKS[0], HINT)])
    assert torch.equal(policy.model(ids).logits, again.model(ids).logits)
    assert again.tokenizer.get_vocab() == policy.tokenizer.get_vocab()
    assert prompting.render(again.tokenizer, TASKS[0], HINT) == prompting.render(policy.tokenizer, TASKS[0], HINT)


def test_proof_text_strips_fences_and_restated_theorems():
    assert prompting.proof_text("```lean\ntheorem x (p : Prop) (h : p) : p := h\n```") == "h"
    assert prompting.proof_text(" ⟨h1.2 , h1.1⟩ ") == "⟨h1.2 , h1.1⟩"


# ----------------------------------------------------------------------------- a real HF (Qwen2) model

def test_hf_path_with_chat_template(qwen_dir):
    policy = lm.load(qwen_dir, device="cpu")
    tok = policy.tokenizer
    student, teacher = prompting.render(tok, TASKS[0]), prompting.render(tok, TASKS[0], HINT)
    assert student.startswith("<|im_start|>user\n") and student.endswith("<|im_start|>assistant\n")
    assert TASKS[0].statement in student and HINT in teacher and HINT not in student
    prompts = [prompting.encode(tok, TASKS[0]), prompting.encode(tok, TASKS[0], HINT)]
    assert prompts[0][-3:] == tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"][-3:]
    samples = sampling.sample(policy, prompts, max_new_tokens=6, temperature=1.0, generator=0)
    assert all(1 <= len(s.ids) <= 6 for s in samples)
    logprobs, entropies = lm.token_logprobs(policy.model, prompts, [s.ids for s in samples])
    for b, s in enumerate(samples):
        ref, _ = full_logprobs(policy.model, prompts[b], s.ids)
        torch.testing.assert_close(logprobs[b, : len(s.ids)], ref, atol=1e-5, rtol=1e-5)
    assert (entropies[:, 0] > 0).all()
    greedy = [s.ids for s in sampling.sample(policy, prompts, max_new_tokens=6, temperature=0)]
    T = max(map(len, prompts))
    out = policy.model.generate(
        input_ids=torch.tensor([[tok.pad_token_id] * (T - len(p)) + p for p in prompts]),
        attention_mask=torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in prompts]),
        max_new_tokens=6, do_sample=False, eos_token_id=sampling.stop_ids(policy), pad_token_id=tok.pad_token_id)
    assert [row[: len(g)] for row, g in zip(out[:, T:].tolist(), greedy)] == greedy


# ----------------------------------------------------------------------------- names load cannot read

def test_names_that_are_no_model_fail_fast_and_clearly(tiny_prover, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"  # a run folder: its config.json is the run's settings, its model is run/final
    (run / "final").mkdir(parents=True)
    (run / "config.json").write_text('{"model": "small-prover", "steps": 2}')
    (tmp_path / "runs").mkdir()
    for name, says in [("nonexistent_dir", "no such folder"), ("./nope", "no such folder"), ("a/b/c", "no such folder"),
                       ("runs/fd", "no such folder"),  # 'runs' is a folder here: a path, not a hub id
                       (str(run), f"a run folder's model is {run / 'final'}"), (str(tmp_path), "no HF-format model")]:
        with pytest.raises(lm.ModelNotFound, match=says):
            lm.check_name(name)
        with pytest.raises(lm.ModelNotFound, match=says):
            lm.load(name)
    for name in ("small-prover", tiny_prover, "Qwen/Qwen3-8B"):  # the preset, a folder, a hub id: no error yet
        lm.check_name(name)
