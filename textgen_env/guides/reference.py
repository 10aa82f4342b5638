"""`ReferenceGuide`: replay the data set's reference completion, token by token."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from textgen_env.errors import GuideError
from textgen_env.guides.handoff import encode_text
from textgen_env.guides.validation import check_request, require_eos
from textgen_env.state import TextState
from textgen_env.tokenizer import Tokenizer

__all__ = ["ReferenceGuide"]


class ReferenceGuide:
    """A guide that proposes the first reference of each state, by position.

    The reference ``state.references[0]`` is encoded with the policy tokenizer (no special
    tokens) and followed by EOS; for a state with ``t`` generated tokens the next tokens are
    ``ref[t : t + k]``, whatever was generated before (so after an off-reference roll-in the
    guide continues the reference where the position says, as in the paper's reference
    roll-outs). Past the end of the reference it proposes EOS. Deterministic: ``rng`` is unused.

    Encodings are cached per reference string (one entry per distinct reference seen).

    Args:
        tokenizer: The policy (env) tokenizer; must define ``eos_token_id``.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.eos_token_id = require_eos(tokenizer, "ReferenceGuide tokenizer")
        self._cache: dict[str, tuple[int, ...]] = {}

    def reference_ids(self, state: TextState) -> tuple[int, ...]:
        """Token ids of ``state``'s first reference followed by EOS (cached)."""
        if not state.references:
            raise GuideError(
                f"ReferenceGuide: state of prompt {state.prompt_index} ({state.task_id!r}) "
                "has no reference"
            )
        text = state.references[0]
        ids = self._cache.get(text)
        if ids is None:
            ids = (*encode_text(self.tokenizer, text, "ReferenceGuide"), self.eos_token_id)
            self._cache[text] = ids
        return ids

    def act(
        self,
        states: Sequence[TextState],
        num_tokens: Sequence[int],
        rng: np.random.Generator,
    ) -> list[tuple[int, ...]]:
        """Next ``num_tokens[i]`` reference tokens of each state (see the class docstring)."""
        counts = check_request(states, num_tokens, rng)
        out: list[tuple[int, ...]] = []
        for state, k in zip(states, counts, strict=True):
            if k == 0:
                out.append(())
                continue
            ref = self.reference_ids(state)
            t = state.num_generated
            out.append(ref[t : t + k] if t < len(ref) else (self.eos_token_id,))
        return out
