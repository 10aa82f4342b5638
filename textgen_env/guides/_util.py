"""Helpers shared by the guide implementations (request checks, state texts, re-encoding)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from textgen_env._checks import is_int
from textgen_env.errors import GuideError
from textgen_env.state import TextState
from textgen_env.tokenizer import Tokenizer

__all__ = [
    "check_request",
    "check_template",
    "encode_text",
    "format_prompt",
    "require_eos",
    "state_texts",
    "suffix_text",
]


def check_request(
    states: Sequence[TextState], num_tokens: Sequence[int], rng: np.random.Generator
) -> list[int]:
    """Validate the arguments of ``GuidePolicy.act`` and return ``num_tokens`` as ints.

    Raises:
        TypeError: A state is not a :class:`TextState` or ``rng`` is not a NumPy Generator.
        ValueError: The lengths differ or a count is not an int >= 0.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if len(states) != len(num_tokens):
        raise ValueError(f"got {len(states)} states but {len(num_tokens)} num_tokens entries")
    counts = []
    for i, (state, k) in enumerate(zip(states, num_tokens, strict=True)):
        if not isinstance(state, TextState):
            raise TypeError(f"states[{i}] must be a TextState, got {type(state).__name__}")
        if not is_int(k) or k < 0:
            raise ValueError(f"num_tokens[{i}] must be an int >= 0, got {k!r}")
        counts.append(int(k))
    return counts


def require_eos(tokenizer: Tokenizer, what: str) -> int:
    """The tokenizer's ``eos_token_id``; ``ValueError`` naming ``what`` if it has none."""
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise ValueError(f"{what} must define eos_token_id")
    return int(eos)


def format_prompt(template: str | None, prompt: str) -> str:
    """Put ``prompt`` in place of ``{prompt}`` in ``template`` (no template: the prompt itself).

    Plain substitution, not ``str.format``: other braces in the template are kept as they are.
    """
    return prompt if template is None else template.replace("{prompt}", prompt)


def check_template(template: str | None) -> str | None:
    """Validate a prompt template: ``None`` or a str containing ``{prompt}``."""
    if template is not None and (not isinstance(template, str) or "{prompt}" not in template):
        raise ValueError(f"prompt_template must be a str containing '{{prompt}}', got {template!r}")
    return template


def suffix_text(tokenizer: Tokenizer, prefix: Sequence[int], new: Sequence[int]) -> str:
    """Text that ``new`` adds after ``prefix`` (special tokens skipped).

    Decoding ``prefix + new`` and removing the decoded prefix keeps the spacing at the boundary
    (word-level and SentencePiece tokenizers drop a leading space when a piece is decoded
    alone); if the decoded prefix is not a prefix of the whole, ``new`` is decoded alone.
    """
    head, whole = tokenizer.batch_decode([list(prefix), [*prefix, *new]], skip_special_tokens=True)
    if whole.startswith(head):
        return whole[len(head) :]
    return tokenizer.batch_decode([list(new)], skip_special_tokens=True)[0]


def state_texts(tokenizer: Tokenizer, states: Sequence[TextState]) -> tuple[list[str], list[str]]:
    """Prompt texts and completion-so-far texts of ``states``, decoded with ``tokenizer``."""
    prompts = tokenizer.batch_decode([list(s.prompt_ids) for s in states], skip_special_tokens=True)
    completions = [
        suffix_text(tokenizer, s.prompt_ids, s.generated_ids) if s.generated_ids else ""
        for s in states
    ]
    return prompts, completions


def encode_text(tokenizer: Tokenizer, text: str, what: str) -> list[int]:
    """Policy token ids of a guide's text; :class:`GuideError` if the tokenizer refuses it."""
    try:
        return [int(t) for t in tokenizer.encode(text, add_special_tokens=False)]
    except (ValueError, KeyError, TypeError) as err:
        raise GuideError(f"{what}: the policy tokenizer cannot encode {text!r}: {err}") from err
