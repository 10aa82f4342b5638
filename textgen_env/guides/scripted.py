"""`ScriptedGuide`: a hand-written expert with ε-noise, for guides of tunable quality."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from textgen_env._checks import check_int, check_real, is_int
from textgen_env.errors import GuideError
from textgen_env.guides.validation import check_request
from textgen_env.state import TextState

__all__ = ["ScriptedGuide"]


class ScriptedGuide:
    """Each token is the expert's with probability ``1 - epsilon``, else uniform noise.

    The guide acts token by token: the expert sees the state extended by the tokens drawn so
    far in this call (noisy ones included), and a row stops right after EOS. With
    ``epsilon=0`` it is the expert; with ``epsilon=1`` it is uniform over ``noise_tokens``.
    All randomness comes from ``rng``.

    >>> from textgen_env.tasks.toy import reverse_expert
    >>> guide = ScriptedGuide(reverse_expert, vocab_size=11, epsilon=0.3)

    Args:
        expert: Maps a state to the next token id (e.g. ``textgen_env.tasks.toy.reverse_expert``).
        vocab_size: Size of the policy vocabulary; expert and noise ids must lie below it.
        epsilon: Probability of replacing each expert token by a noise token, in ``[0, 1]``.
        noise_tokens: Ids the noise draws from, uniformly. Default ``range(1, vocab_size)``:
            every id except 0 (the pad id of :class:`~textgen_env.tokenizer.ToyTokenizer`);
            EOS is included, so noise can end an episode early.
        eos_token_id: The policy's EOS id (1 for ``ToyTokenizer``); a row stops after it.
    """

    def __init__(
        self,
        expert: Callable[[TextState], int],
        *,
        vocab_size: int,
        epsilon: float = 0.0,
        noise_tokens: Sequence[int] | None = None,
        eos_token_id: int = 1,
    ) -> None:
        if not callable(expert):
            raise TypeError(f"expert must be callable, got {type(expert).__name__}")
        vocab_size = check_int(vocab_size, "vocab_size", minimum=2)
        eos_token_id = check_int(eos_token_id, "eos_token_id", minimum=0, below=vocab_size)
        noise = np.arange(1, vocab_size) if noise_tokens is None else np.asarray(noise_tokens)
        if noise.ndim != 1 or len(noise) == 0 or not np.issubdtype(noise.dtype, np.integer):
            raise ValueError("noise_tokens must be a non-empty sequence of int token ids")
        if noise.min() < 0 or noise.max() >= vocab_size:
            raise ValueError(f"noise_tokens must lie in [0, {vocab_size})")
        self.epsilon = epsilon  # checked by the setter, before anything else is stored
        self._expert = expert
        self._vocab_size = vocab_size
        self._noise_tokens = noise.astype(np.int64)  # a copy, made read-only
        self._noise_tokens.flags.writeable = False
        self._eos_token_id = eos_token_id

    @property
    def epsilon(self) -> float:
        """Probability of replacing each expert token by noise, in ``[0, 1]``; assigning it
        (to anneal the noise, say) checks it as the constructor does."""
        return self._epsilon

    @epsilon.setter
    def epsilon(self, value: float) -> None:
        self._epsilon = check_real(value, "epsilon", ge=0.0, le=1.0)

    @property
    def expert(self) -> Callable[[TextState], int]:
        """The expert (read-only)."""
        return self._expert

    @property
    def vocab_size(self) -> int:
        """Size of the policy vocabulary (read-only: ``noise_tokens`` were checked against it)."""
        return self._vocab_size

    @property
    def noise_tokens(self) -> np.ndarray:
        """Ids the noise draws from (a read-only int64 array)."""
        return self._noise_tokens

    @property
    def eos_token_id(self) -> int:
        """The policy's EOS id (read-only)."""
        return self._eos_token_id

    def _expert_token(self, state: TextState) -> int:
        token = self.expert(state)
        if not is_int(token):
            raise GuideError(f"expert returned {token!r}, not an int token id")
        if not 0 <= token < self.vocab_size:
            raise GuideError(f"expert returned token {token} outside [0, {self.vocab_size})")
        return int(token)

    def act(
        self,
        states: Sequence[TextState],
        num_tokens: Sequence[int],
        rng: np.random.Generator,
    ) -> list[tuple[int, ...]]:
        """Up to ``num_tokens[i]`` tokens per state, stopping after EOS."""
        counts = check_request(states, num_tokens, rng)
        out: list[tuple[int, ...]] = []
        for state, k in zip(states, counts, strict=True):
            tokens: list[int] = []
            current = state
            while len(tokens) < k and (not tokens or tokens[-1] != self.eos_token_id):
                if self.epsilon > 0.0 and rng.random() < self.epsilon:
                    token = int(rng.choice(self.noise_tokens))
                else:
                    token = self._expert_token(current)
                tokens.append(token)
                current = current.extend((token,))
            out.append(tuple(tokens))
        return out
