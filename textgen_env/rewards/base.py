"""The reward interface: a batched callable scoring finished generations.

A reward function receives, for each finished episode, the prompt text, the generated text
(special tokens removed) and the prompt's references, and returns one finite float each. The
env calls it once per step with every episode that finished in that step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["RewardFunction", "check_rewards"]


@runtime_checkable
class RewardFunction(Protocol):
    """Scores finished texts; returns a sequence of ``len(completions)`` finite floats.

    Implementations must be pure with respect to their inputs (never mutate them) and should
    be batched: one call, many texts.
    """

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[Sequence[str]],
    ) -> Sequence[float] | np.ndarray: ...


# A reward is any callable with the signature above, e.g. a plain function:
#   def length_reward(prompts, completions, references): return [len(c) for c in completions]


def check_rewards(values: object, n: int, name: str = "reward function") -> np.ndarray:
    """Validate a reward function's output: ``n`` finite floats, returned as float64 (n,)."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must return {n} floats, got {type(values).__name__}") from err
    if arr.shape != (n,):
        raise ValueError(f"{name} must return {n} rewards, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} returned non-finite rewards: {arr[~np.isfinite(arr)][:5]}")
    return arr
