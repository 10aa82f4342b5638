"""π as an actor (agents.learner): what it samples is what the env receives."""

from __future__ import annotations

import numpy as np
import torch

from agents.learner import LearnerPolicy
from textgen_env.guides import HFGuide
from textgen_env.models import tiny_causal_lm, tiny_hf_tokenizer
from textgen_env.state import TextState

SYMBOLS = ("the", "cat", "dog", "sat", "ran", "on", "a", "mat", "log", ".")


def test_a_second_stop_id_is_kept_not_rewritten() -> None:
    """SmolLM2-like: the model's generation config lists a second stop id. The learner
    keeps sampling past it and returns it as sampled; a guide (HFGuide) stops there and
    hands the env its EOS instead, a token the model did not sample."""
    tokenizer = tiny_hf_tokenizer(SYMBOLS)
    eos = tokenizer.eos_token_id
    other_stop = tokenizer.convert_tokens_to_ids("cat")
    model = tiny_causal_lm(len(tokenizer), seed=0).eval()
    head = torch.nn.Linear(model.lm_head.in_features, len(tokenizer))  # "cat" almost surely
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[other_stop] = 100.0
    model.lm_head = head
    model.generation_config.eos_token_id = [eos, other_stop]
    ids = tuple(tokenizer.encode("the dog", add_special_tokens=False))
    state = TextState("custom", 0, ids, (), ())
    learner = LearnerPolicy(model, eos_token_id=eos, vocab_limit=len(tokenizer), top_k=0,
                            temperature=1.0)  # fmt: skip
    assert learner.act([state], [4], np.random.default_rng(0)) == [(other_stop,) * 4]
    guide = HFGuide(model, tokenizer, top_k=0)
    assert guide.act([state], [4], np.random.default_rng(0)) == [(eos,)]


def test_asks_for_zero_tokens_get_none_and_runs_are_seeded() -> None:
    tokenizer = tiny_hf_tokenizer(SYMBOLS)
    model = tiny_causal_lm(len(tokenizer), seed=1).eval()
    learner = LearnerPolicy(model, eos_token_id=tokenizer.eos_token_id,
                            vocab_limit=len(tokenizer), top_k=0, temperature=1.0)  # fmt: skip
    states = [TextState("custom", 0, (3, 4), (), ()), TextState("custom", 1, (5,), (6,), ())]
    a = learner.act(states, [0, 3], np.random.default_rng(7))
    b = learner.act(states, [0, 3], np.random.default_rng(7))
    assert a == b and a[0] == () and 1 <= len(a[1]) <= 3
