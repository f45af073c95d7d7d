"""Shared pytest fixtures.

`tiny_prover`: a test-sized small prover built by sft.py (the real recipe: word-level tokenizer,
Llama, feedback-conditioned examples) with a tiny budget, once per test session, into a temporary
folder. Load it with `lm.load(tiny_prover)`. It has learnt the syntax and some level-1 proofs,
not much more: tests should check mechanics, not pass rates.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TINY = dict(steps=150, n_tasks=3000, batch_size=32, lr=3e-3, warmup=20, d_model=64, n_layers=2,
            n_heads=4, d_ff=172, lean_checks=0, lean=0.0, copy_warmup=30, threads=1, seed=0)


@pytest.fixture(scope="session")
def tiny_prover(tmp_path_factory):
    from small_prover import sft
    path = str(tmp_path_factory.mktemp("tiny-prover"))
    sft.train(sft.Config(out=path, **TINY))
    return path


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="session")
def qwen_dir(tmp_path_factory):
    """A tiny randomly initialised Qwen2 model and a byte-level BPE tokenizer with a chat template,
    saved locally: the HF path end to end (fdlean/lm.py, fd.py), no network."""
    import json

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    from fdlean import prompting
    from mini import tasks
    path = str(tmp_path_factory.mktemp("tiny-qwen"))
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [t.statement + " " + t.solution for t in tasks.load("mini", split="test")[:60]] * 5
    corpus += [prompting.CHAT_INSTRUCTION, "Hint:\n1. Do build the pair ⟨_, _⟩."]
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"]))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = CHATML
    tok.save_pretrained(path)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(path)
    assert json.load(open(os.path.join(path, "config.json")))["model_type"] == "qwen2"
    return path
