"""Argument checks shared by the guides: the ``act`` request, the tokenizer's EOS, prompt
templates and stop strings. Each raises ``TypeError``/``ValueError`` naming the argument."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from textgen_env._checks import is_int
from textgen_env.state import TextState
from textgen_env.tokenizer import Tokenizer

__all__ = ["check_request", "check_stop", "check_template", "require_eos"]


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


def check_template(template: str | None) -> str | None:
    """Validate a prompt template: ``None`` or a str containing ``{prompt}``."""
    if template is not None and (not isinstance(template, str) or "{prompt}" not in template):
        raise ValueError(f"prompt_template must be a str containing '{{prompt}}', got {template!r}")
    return template


def check_stop(stop: Sequence[str]) -> tuple[str, ...]:
    """Validate stop strings: a sequence (not a single str) of non-empty str."""
    if isinstance(stop, str) or not isinstance(stop, Sequence):
        raise TypeError(
            f"stop must be a sequence of str (wrap a single string in a list), got {stop!r:.80}"
        )
    for i, s in enumerate(stop):
        if not isinstance(s, str):
            raise TypeError(f"stop[{i}] must be a str, got {s!r} ({type(s).__name__})")
        if not s:
            raise ValueError(f"stop[{i}] is empty; an empty stop string would cut every reply")
    return tuple(stop)
