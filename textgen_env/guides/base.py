"""The guide-policy interface.

A guide is any policy that, given episode states, proposes the next tokens for each: a
stronger or differently prompted LM, a black-box API, the data set's reference, a scripted
expert, or the learner itself. Guides only *propose* tokens; the env applies them and computes
rewards (see :func:`textgen_env.oracles.roll_in` and :func:`textgen_env.oracles.roll_out`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from textgen_env.state import TextState

__all__ = ["GuidePolicy"]


@runtime_checkable
class GuidePolicy(Protocol):
    """Proposes up to ``num_tokens[i]`` next tokens for each state ``states[i]``.

    Contract (checked by the oracles, which raise :class:`~textgen_env.errors.GuideError`
    otherwise):

    * returns one sequence of token ids per state, in the env's (policy's) vocabulary;
    * sequence ``i`` has exactly ``num_tokens[i]`` tokens, or fewer only if it ends with EOS;
    * it generates only what it is asked for (``num_tokens[i]`` may be 0: return ``()``);
    * its randomness comes from ``rng`` (seeded by the caller), so runs are reproducible
      (a black-box guide, e.g. a remote API, is only as reproducible as the service).
    """

    def act(
        self,
        states: Sequence[TextState],
        num_tokens: Sequence[int],
        rng: np.random.Generator,
    ) -> Sequence[Sequence[int]]:
        """Token ids proposed for each state (see the contract above)."""
        ...


# A guide is any object with that `act` method, e.g. one that always ends the episode:
#   class Quitter:
#       def act(self, states, num_tokens, rng): return [(EOS,)[:k] for k in num_tokens]
