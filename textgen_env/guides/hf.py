"""`HFGuide`: a Hugging Face LM (causal or encoder-decoder) as a guide, directly or through a
text hand-off."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from textgen_env._checks import check_int, check_real
from textgen_env.generation import is_encoder_decoder, sample, sample_seq2seq
from textgen_env.guides.handoff import encode_text, format_prompt, state_texts, suffix_text
from textgen_env.guides.validation import check_request, check_template, require_eos
from textgen_env.state import TextState
from textgen_env.tokenizer import Tokenizer

__all__ = ["HFGuide"]

MAX_ROUNDS = 8
"""Text hand-off: most sampling rounds per call before a row that yields too little policy
text is treated as finished (its guide tokens decode to nothing the policy can use)."""


def _pad(
    seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device, *, left: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)``, each ``(B, T)``, of left-padded (or right-padded) ``seqs``."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)  # (B, T)
    for r, s in enumerate(seqs):
        if s:
            cols = slice(width - len(s), width) if left else slice(0, len(s))
            ids[r, cols] = torch.tensor(list(s), dtype=torch.long)
            mask[r, cols] = 1
    return ids.to(device), mask.to(device)


class HFGuide:
    """A language model that proposes the next tokens by sampling (KV-cached, batched).

    The model is a causal LM or, when ``model.config.is_encoder_decoder`` (e.g. T5), an
    encoder-decoder: its encoder then reads the prompt and its decoder continues the completion
    so far (:func:`~textgen_env.generation.sample_seq2seq`).

    **Fast path** (no ``prompt_template``, no chat template, ``policy_tokenizer`` ``None`` or
    ``tokenizer`` itself): a causal model reads ``prompt_ids + generated_ids`` of each state; an
    encoder-decoder encodes ``prompt_ids`` and its decoder continues ``generated_ids``. The
    sampled ids are the policy's ids; a row gets exactly ``k`` new tokens unless it stops.

    **Text hand-off** (otherwise): the state's prompt and completion so far are decoded with the
    policy tokenizer; the guide context is ``prompt_template`` (``{prompt}`` replaced by the
    prompt; chat-wrapped as a user message if ``use_chat_template``) followed by the
    completion so far (an encoder-decoder encodes the formatted prompt and its decoder continues
    the completion so far, encoded without special tokens). The guide samples a few tokens
    (``k + 1`` at first), their text is re-encoded with the policy tokenizer, and the first
    ``k`` policy ids are returned. One policy id more than needed is required before
    returning, so the last returned id is not a word cut by the end of the sample; while the
    re-encoding is too short and the guide has not stopped, it is asked for more (at most
    :data:`MAX_ROUNDS` rounds, each at least doubling what the row has generated; a row still
    short after them is treated as finished).

    In both paths the guide stops at its EOS (``tokenizer.eos_token_id`` and the model's
    ``generation_config.eos_token_id``) or any of ``stop_token_ids``; a stop becomes the policy
    EOS (``policy_tokenizer.eos_token_id``), appended when there is room. Ids at or beyond
    ``len(tokenizer)`` (padded embedding rows) are never sampled.

    Randomness: every call seeds a ``torch.Generator`` on the model's device from ``rng``.

    Numbers may be Python or NumPy scalars. The sampling settings (``top_k``, ``top_p``,
    ``temperature``, ``do_sample``) and ``batch_size`` may be reassigned, checked as in the
    constructor; the other attributes are fixed by the constructor and read-only.

    Args:
        model: A Hugging Face causal or encoder-decoder LM (in eval mode), e.g. from
            :func:`textgen_env.models.load_causal_lm` or
            :func:`~textgen_env.models.load_seq2seq_lm`; its device is used.
        tokenizer: The guide model's tokenizer.
        policy_tokenizer: The env's tokenizer, if different from ``tokenizer``.
        prompt_template: Guide prompt with a ``{prompt}`` placeholder, e.g. ``"Continue this
            movie review so that it ends positively: {prompt}"``.
        use_chat_template: Wrap the formatted prompt with
            ``tokenizer.apply_chat_template`` as one user message (generation prompt added).
        stop_token_ids: Further guide token ids that end the continuation.
        top_k: Top-k filter of the sampling (0 = off).
        top_p: Nucleus filter of the sampling (1.0 = off).
        temperature: Sampling temperature.
        do_sample: ``False`` for greedy decoding.
        batch_size: Most states per forward batch (``None``: all at once).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Tokenizer,
        *,
        policy_tokenizer: Tokenizer | None = None,
        prompt_template: str | None = None,
        use_chat_template: bool = False,
        stop_token_ids: Sequence[int] = (),
        top_k: int = 50,
        top_p: float = 1.0,
        temperature: float = 1.0,
        do_sample: bool = True,
        batch_size: int | None = None,
    ) -> None:
        if not callable(model):
            raise TypeError(f"model must be a callable torch module, got {type(model).__name__}")
        if not isinstance(use_chat_template, bool | np.bool_):
            raise TypeError(
                f"use_chat_template must be a bool, got {type(use_chat_template).__name__}"
            )
        if use_chat_template and not callable(getattr(tokenizer, "apply_chat_template", None)):
            raise TypeError("use_chat_template needs a tokenizer with apply_chat_template")
        if isinstance(stop_token_ids, str) or not isinstance(stop_token_ids, Iterable):
            raise TypeError(
                f"stop_token_ids must be a sequence of int token ids, got {stop_token_ids!r:.80}"
            )
        stops = {
            check_int(t, f"stop_token_ids[{i}]", minimum=0) for i, t in enumerate(stop_token_ids)
        }
        self._sampling: dict[str, Any] = {}
        self.top_k = top_k
        self.top_p = top_p
        self.temperature = temperature
        self.do_sample = do_sample
        self.batch_size = batch_size
        self._model = model
        self._seq2seq = is_encoder_decoder(model)
        self._tokenizer = tokenizer
        self._policy_tokenizer = tokenizer if policy_tokenizer is None else policy_tokenizer
        self._prompt_template = check_template(prompt_template)
        self._use_chat_template = bool(use_chat_template)
        self._fast = (
            prompt_template is None
            and not use_chat_template
            and self._policy_tokenizer is self._tokenizer
        )
        self._eos_token_id = require_eos(self._policy_tokenizer, "policy_tokenizer")
        guide_eos = getattr(tokenizer, "eos_token_id", None)
        if guide_eos is not None:
            stops.add(int(guide_eos))
        config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        if config_eos is not None:
            stops.update(int(t) for t in np.atleast_1d(config_eos))
        if not stops:
            raise ValueError("the guide has no stop token: give stop_token_ids or an EOS id")
        self._stop_token_ids = frozenset(stops)
        pad = getattr(tokenizer, "pad_token_id", None)
        pad = guide_eos if pad is None else pad
        self._pad_token_id = 0 if pad is None else int(pad)  # any id works: padding is masked
        self._vocab_limit = len(tokenizer)

    # ------------------------------------------------ settable sampling knobs (checked)
    @property
    def top_k(self) -> int:
        """Top-k filter of the sampling (0 = off)."""
        return self._sampling["top_k"]

    @top_k.setter
    def top_k(self, value: int) -> None:
        self._sampling["top_k"] = check_int(value, "top_k", minimum=0)

    @property
    def top_p(self) -> float:
        """Nucleus filter of the sampling, in ``(0, 1]`` (1.0 = off)."""
        return self._sampling["top_p"]

    @top_p.setter
    def top_p(self, value: float) -> None:
        self._sampling["top_p"] = check_real(value, "top_p", gt=0.0, le=1.0)

    @property
    def temperature(self) -> float:
        """Sampling temperature (> 0)."""
        return self._sampling["temperature"]

    @temperature.setter
    def temperature(self, value: float) -> None:
        self._sampling["temperature"] = check_real(value, "temperature", gt=0.0)

    @property
    def do_sample(self) -> bool:
        """``False`` for greedy decoding."""
        return self._sampling["do_sample"]

    @do_sample.setter
    def do_sample(self, value: bool) -> None:
        if not isinstance(value, bool | np.bool_):
            raise TypeError(f"do_sample must be a bool, got {type(value).__name__}")
        self._sampling["do_sample"] = bool(value)

    @property
    def sampling(self) -> Mapping[str, Any]:
        """The sampling settings ``top_k``, ``top_p``, ``temperature``, ``do_sample`` (a
        read-only view; assign the attributes of the same names to change them)."""
        return MappingProxyType(self._sampling)

    @property
    def batch_size(self) -> int | None:
        """Most states per forward batch (``None``: all at once)."""
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int | None) -> None:
        self._batch_size = None if value is None else check_int(value, "batch_size", minimum=1)

    # ------------------------------------- read-only: fixed by the constructor's arguments
    @property
    def model(self) -> Any:
        """The guide model (read-only)."""
        return self._model

    @property
    def seq2seq(self) -> bool:
        """Whether the model is an encoder-decoder (read-only)."""
        return self._seq2seq

    @property
    def tokenizer(self) -> Tokenizer:
        """The guide model's tokenizer (read-only)."""
        return self._tokenizer

    @property
    def policy_tokenizer(self) -> Tokenizer:
        """The env's tokenizer (read-only)."""
        return self._policy_tokenizer

    @property
    def prompt_template(self) -> str | None:
        """The guide prompt template (read-only)."""
        return self._prompt_template

    @property
    def use_chat_template(self) -> bool:
        """Whether the formatted prompt is chat-wrapped (read-only)."""
        return self._use_chat_template

    @property
    def fast(self) -> bool:
        """Whether the guide samples policy ids directly (the fast path; read-only)."""
        return self._fast

    @property
    def eos_token_id(self) -> int:
        """The policy's EOS id (read-only)."""
        return self._eos_token_id

    @property
    def stop_token_ids(self) -> frozenset[int]:
        """Guide token ids that end a continuation (read-only)."""
        return self._stop_token_ids

    @property
    def pad_token_id(self) -> int:
        """The guide id used for (masked) padding (read-only)."""
        return self._pad_token_id

    @property
    def vocab_limit(self) -> int:
        """Ids at or beyond this (padded embedding rows) are never sampled (read-only)."""
        return self._vocab_limit

    @property
    def device(self) -> torch.device:
        """The device of the model."""
        device = getattr(self.model, "device", None)
        return device if device is not None else next(self.model.parameters()).device

    # ------------------------------------------------------------------ sampling
    def _sample(
        self,
        contexts: list[list[int]],
        budgets: list[int],
        generator: torch.Generator,
        encoder_inputs: list[list[int]] | None = None,
    ) -> list[list[int]]:
        """Sample continuations of ``contexts`` in chunks of ``batch_size``.

        For an encoder-decoder, ``encoder_inputs`` are the encoder's ids and ``contexts`` the
        decoder prefixes; for a causal LM ``contexts`` are the whole model inputs.
        """
        step = self.batch_size or max(len(contexts), 1)
        common = dict(
            eos_token_ids=sorted(self.stop_token_ids),
            generator=generator,
            vocab_limit=self.vocab_limit,
            **self.sampling,
        )
        out: list[list[int]] = []
        for lo in range(0, len(contexts), step):
            chunk = slice(lo, lo + step)
            if encoder_inputs is None:
                ids, mask = _pad(contexts[chunk], self.pad_token_id, self.device)
                out += sample(self.model, ids, mask, budgets[chunk], **common)
            else:
                ids, mask = _pad(encoder_inputs[chunk], self.pad_token_id, self.device, left=False)
                out += sample_seq2seq(
                    self.model, ids, mask, contexts[chunk], budgets[chunk], **common
                )
        return out

    def act(
        self,
        states: Sequence[TextState],
        num_tokens: Sequence[int],
        rng: np.random.Generator,
    ) -> list[tuple[int, ...]]:
        """Sample up to ``num_tokens[i]`` next policy tokens for each state."""
        counts = check_request(states, num_tokens, rng)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(int(rng.integers(2**63 - 1)))
        out: list[tuple[int, ...]] = [()] * len(counts)
        rows = [i for i, k in enumerate(counts) if k > 0]
        if not rows:
            return out
        chosen = [states[i] for i in rows]
        ks = [counts[i] for i in rows]
        act = self._act_fast if self.fast else self._act_text
        for i, tokens in zip(rows, act(chosen, ks, generator), strict=True):
            out[i] = tokens
        return out

    def _act_fast(
        self, states: list[TextState], ks: list[int], generator: torch.Generator
    ) -> list[tuple[int, ...]]:
        """Same vocabulary: sample policy ids directly, a stop token becoming EOS."""
        if self.seq2seq:
            encoder = [list(s.prompt_ids) for s in states]
            sampled = self._sample([list(s.generated_ids) for s in states], ks, generator, encoder)
        else:
            contexts = [[*s.prompt_ids, *s.generated_ids] for s in states]
            sampled = self._sample(contexts, ks, generator)
        result = []
        for tokens in sampled:
            if tokens and tokens[-1] in self.stop_token_ids:
                tokens[-1] = self.eos_token_id
            result.append(tuple(tokens))
        return result

    # ------------------------------------------------------------- text hand-off
    def contexts(self, states: Sequence[TextState]) -> list[str]:
        """Guide context texts of ``states`` (text hand-off path of a causal LM)."""
        return [user + completion for user, completion in self._text_parts(states)]

    def _text_parts(self, states: Sequence[TextState]) -> list[tuple[str, str]]:
        """``(formatted prompt, completion so far)`` texts of ``states``."""
        prompts, completions = state_texts(self.policy_tokenizer, states)
        parts = []
        for prompt, completion in zip(prompts, completions, strict=True):
            user = format_prompt(self.prompt_template, prompt)
            if self.use_chat_template:
                user = self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": user}], add_generation_prompt=True, tokenize=False
                )
            parts.append((user, completion))
        return parts

    def _encode_context(self, text: str) -> list[int]:
        """Guide ids of a context (the chat template brings its own special tokens)."""
        ids = self.tokenizer.encode(text, add_special_tokens=not self.use_chat_template)
        if not ids:
            raise ValueError(f"guide context encodes to zero tokens: {text!r}")
        return [int(t) for t in ids]

    def _encode_completion(self, text: str) -> list[int]:
        """Decoder-prefix ids of a completion text (no special tokens; may be empty)."""
        text = text.lstrip()  # a decoder output starts without the separating space
        if not text:
            return []
        return [int(t) for t in self.tokenizer.encode(text, add_special_tokens=False)]

    def _act_text(
        self, states: list[TextState], ks: list[int], generator: torch.Generator
    ) -> list[tuple[int, ...]]:
        """Different vocabulary or prompt: sample guide text, re-encode it for the policy."""
        n = len(states)
        encoder: list[list[int]] | None = None
        if self.seq2seq:  # encoder: the formatted prompt; decoder prefix: the completion so far
            parts = self._text_parts(states)
            encoder = [self._encode_context(user) for user, _ in parts]
            contexts = [self._encode_completion(completion) for _, completion in parts]
        else:
            contexts = [self._encode_context(t) for t in self.contexts(states)]
        sampled: list[list[int]] = [[] for _ in range(n)]  # guide ids so far, stop excluded
        policy: list[list[int]] = [[] for _ in range(n)]  # their re-encoding
        stopped = [False] * n
        result: list[tuple[int, ...] | None] = [None] * n
        for _ in range(MAX_ROUNDS):
            pending = [i for i in range(n) if result[i] is None]
            if not pending:
                break
            budgets = [max(ks[i] + 1 - len(policy[i]), len(sampled[i]), 1) for i in pending]
            new = self._sample(
                [contexts[i] + sampled[i] for i in pending],
                budgets,
                generator,
                None if encoder is None else [encoder[i] for i in pending],
            )
            for i, tokens in zip(pending, new, strict=True):
                if tokens and tokens[-1] in self.stop_token_ids:
                    stopped[i] = True
                    tokens = tokens[:-1]
                sampled[i] += tokens
                text = suffix_text(self.tokenizer, contexts[i], sampled[i])
                policy[i] = encode_text(self.policy_tokenizer, text, "HFGuide")
                if len(policy[i]) > ks[i] or stopped[i]:
                    result[i] = self._finish(policy[i], ks[i])
        return [self._finish(policy[i], ks[i]) if r is None else r for i, r in enumerate(result)]

    def _finish(self, ids: list[int], k: int) -> tuple[int, ...]:
        """First ``k`` policy ids, or all of them plus EOS when there are fewer."""
        return tuple(ids[:k]) if len(ids) >= k else (*ids, self.eos_token_id)
