"""`MixtureGuide`: per state, one of two guides acts (a β-mixture, as in DAgger/AggreVaTeD)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from textgen_env._checks import check_real
from textgen_env.errors import GuideError
from textgen_env.guides.base import GuidePolicy
from textgen_env.guides.validation import check_request
from textgen_env.state import TextState

__all__ = ["MixtureGuide"]


def _check_guide(guide: GuidePolicy, name: str) -> GuidePolicy:
    if not callable(getattr(guide, "act", None)):
        raise TypeError(f"{name} must be a GuidePolicy (with an act method)")
    return guide


class MixtureGuide:
    """With probability ``beta`` the ``first`` guide acts for a state, else the ``second``.

    The choice is drawn independently for every state on every call (from ``rng``); each
    sub-guide is then called once with its subset of states (only if that subset is
    non-empty; states asked for 0 tokens get ``()`` without a call) and the results are put
    back in order. A common use is ``MixtureGuide(guide, learner, beta)`` with ``beta``
    decayed over training.

    Assigning ``beta`` (to decay it, say) checks it as the constructor does; ``first`` and
    ``second`` may be replaced by other guides (checked too).

    Args:
        first: The guide chosen with probability ``beta``.
        second: The guide chosen with probability ``1 - beta``.
        beta: Mixing probability in ``[0, 1]`` (a Python or NumPy number).
    """

    def __init__(self, first: GuidePolicy, second: GuidePolicy, beta: float) -> None:
        self.first = first
        self.second = second
        self.beta = beta

    @property
    def beta(self) -> float:
        """Probability that ``first`` acts for a state, in ``[0, 1]``."""
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        self._beta = check_real(value, "beta", ge=0.0, le=1.0)

    @property
    def first(self) -> GuidePolicy:
        """The guide chosen with probability ``beta``."""
        return self._first

    @first.setter
    def first(self, guide: GuidePolicy) -> None:
        self._first = _check_guide(guide, "first")

    @property
    def second(self) -> GuidePolicy:
        """The guide chosen with probability ``1 - beta``."""
        return self._second

    @second.setter
    def second(self, guide: GuidePolicy) -> None:
        self._second = _check_guide(guide, "second")

    def act(
        self,
        states: Sequence[TextState],
        num_tokens: Sequence[int],
        rng: np.random.Generator,
    ) -> list[Sequence[int]]:
        """Route each state to ``first`` (probability ``beta``) or ``second``."""
        counts = check_request(states, num_tokens, rng)
        use_first = rng.random(len(counts)) < self.beta  # (N,) one coin per state
        out: list[Sequence[int]] = [()] * len(counts)
        for name, guide, chosen in (
            ("first", self.first, use_first),
            ("second", self.second, ~use_first),
        ):
            rows = [i for i in range(len(counts)) if chosen[i] and counts[i] > 0]
            if not rows:
                continue
            result = guide.act([states[i] for i in rows], [counts[i] for i in rows], rng)
            if len(result) != len(rows):
                raise GuideError(
                    f"MixtureGuide: {name} guide returned {len(result)} sequences "
                    f"for {len(rows)} states"
                )
            for i, seq in zip(rows, result, strict=True):
                out[i] = seq  # validated by the caller (the oracles), as any guide output
        return out
