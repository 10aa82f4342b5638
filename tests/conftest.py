"""Shared model fixtures: the offline default SmolLM2 (loaded once) and a tiny random LM."""

from __future__ import annotations

import pytest
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from textgen_env.models import load_causal_lm, tiny_causal_lm, tiny_hf_tokenizer

# Tiny models dominate the suite: on 2 cores one torch thread is 5-20x faster for them
# (no thread hand-off per small matmul); the few SmolLM2 tests pay a little for it.
torch.set_num_threads(1)

TINY_SYMBOLS = ("the", "cat", "dog", "sat", "ran", "on", "a", "mat", "log", ".")


@pytest.fixture(scope="session")
def smollm2() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """SmolLM2-135M-Instruct and its tokenizer, converted on first use and shared by all tests.

    Treat it as read-only: do not train it or change its tokenizer.
    """
    return load_causal_lm()


@pytest.fixture
def tiny_lm() -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A fresh seeded tiny Llama LM over :data:`TINY_SYMBOLS` with its word-level tokenizer."""
    tokenizer = tiny_hf_tokenizer(TINY_SYMBOLS)
    return tiny_causal_lm(len(tokenizer), seed=0), tokenizer
