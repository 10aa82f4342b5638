"""``LearnerPolicy``: the policy π acting in the env, token by token.

π proposes tokens through the same ``act(states, num_tokens, rng)`` interface as a guide
(:class:`~textgen_env.guides.GuidePolicy`), so the oracles
(:func:`~textgen_env.oracles.roll_in`, :func:`~textgen_env.oracles.roll_out`) run either.
Sampling is the KV-cached batched loop of :mod:`textgen_env.generation`: one prefill per
restart, then one forward per token, only the tokens asked for.

π stops only at the env's EOS. A model may have further stop ids (SmolLM2's generation
config lists two); rewriting one of those to the env's EOS would make the env, and the
update, see a token π did not sample. Here the token the env receives, and the update trains
on, is the token sampled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from textgen_env.generation import is_encoder_decoder, sample, sample_seq2seq
from textgen_env.state import TextState

__all__ = ["LearnerPolicy"]


class LearnerPolicy:
    """π as an actor: samples up to ``num_tokens[i]`` next tokens for each state.

    Args:
        model: The policy LM (causal or encoder-decoder), e.g. ``ActorCritic.model``.
        eos_token_id: The env's EOS id; the only token that ends a row early.
        vocab_limit: Ids at or beyond it are never sampled (padded embedding rows), e.g.
            ``len(tokenizer)``; ``None`` allows every id.
        top_k: Top-k filter (0 = full softmax).
        temperature: Sampling temperature.
        bf16: Sample under bf16 autocast.
    """

    def __init__(
        self,
        model: Any,
        *,
        eos_token_id: int,
        vocab_limit: int | None,
        top_k: int,
        temperature: float,
        bf16: bool = False,
    ) -> None:
        self.model = model
        self.bf16 = bool(bf16)
        self.seq2seq = is_encoder_decoder(model)
        self.eos_token_id = int(eos_token_id)
        self.sampling = dict(top_k=top_k, temperature=temperature, vocab_limit=vocab_limit)

    def act(
        self, states: Sequence[TextState], num_tokens: Sequence[int], rng: np.random.Generator
    ) -> list[tuple[int, ...]]:
        """Sampled token ids per state: ``num_tokens[i]`` of them, fewer only if EOS came."""
        device = next(self.model.parameters()).device
        generator = torch.Generator(device=device)
        generator.manual_seed(int(rng.integers(2**63 - 1)))
        out: list[tuple[int, ...]] = [()] * len(states)
        rows = [i for i, k in enumerate(num_tokens) if k > 0]
        if not rows:
            return out
        budgets = [int(num_tokens[i]) for i in rows]
        common = dict(eos_token_ids=[self.eos_token_id], generator=generator, **self.sampling)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16):
            sampled = self._sample(states, rows, budgets, common, device)
        for i, tokens in zip(rows, sampled, strict=True):
            out[i] = tuple(tokens)
        return out

    def _sample(
        self,
        states: Sequence[TextState],
        rows: list[int],
        budgets: list[int],
        common: dict[str, Any],
        device: torch.device,
    ) -> list[list[int]]:
        if self.seq2seq:  # encoder: the prompt (right-padded); decoder: the completion so far
            ids, mask = _padded([states[i].prompt_ids for i in rows], "right", device)
            prefixes = [list(states[i].generated_ids) for i in rows]
            return sample_seq2seq(self.model, ids, mask, prefixes, budgets, **common)
        contexts = [states[i].prompt_ids + states[i].generated_ids for i in rows]  # causal
        ids, mask = _padded(contexts, "left", device)
        return sample(self.model, ids, mask, budgets, **common)


def _padded(
    seqs: list[tuple[int, ...]], side: str, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)``, each ``(B, T)``, padded on ``side`` (pad id 0: masked out)."""
    tensors = [torch.tensor(s, dtype=torch.long) for s in seqs]
    ids = pad_sequence(tensors, batch_first=True, padding_value=0, padding_side=side)
    ones = [torch.ones(len(s), dtype=torch.long) for s in seqs]
    mask = pad_sequence(ones, batch_first=True, padding_value=0, padding_side=side)
    return ids.to(device), mask.to(device)
