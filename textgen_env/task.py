"""`TextTask`: the immutable description of one text-generation MDP.

The env constructors build a :class:`TextTask` from the objects they are given (tokenizer,
prompts, reward function). It tokenizes every prompt once, validates restart states and scores
finished episodes in one batched reward call. It never mutates what it was given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from textgen_env._checks import check_int, is_int
from textgen_env.errors import InvalidStateError
from textgen_env.rewards.base import RewardFunction, check_rewards
from textgen_env.state import Prompt, TextState
from textgen_env.tokenizer import Tokenizer

__all__ = ["TextTask"]

Truncation = Literal["left", "right", "error"]


@dataclass(frozen=True, eq=False)
class TextTask:
    """A compiled task: prompt token table, lengths, vocabulary and reward.

    Build it with :meth:`TextTask.build`; env constructors do so for you and expose it as
    ``env.unwrapped.task``.
    """

    task_id: str
    tokenizer: Tokenizer
    prompts: tuple[Prompt, ...]
    prompt_ids: tuple[tuple[int, ...], ...]
    reward_fn: RewardFunction
    max_prompt_tokens: int
    max_new_tokens: int
    vocab_size: int
    eos_token_id: int
    pad_token_id: int

    @classmethod
    def build(
        cls,
        tokenizer: Tokenizer,
        prompts: Sequence[Prompt | str],
        reward_fn: RewardFunction,
        *,
        max_new_tokens: int,
        max_prompt_tokens: int = 64,
        task_id: str = "custom",
        vocab_size: int | None = None,
        prompt_truncation: Truncation = "left",
    ) -> TextTask:
        """Validate the arguments and tokenize the prompts once.

        Args:
            tokenizer: Any object with the :class:`~textgen_env.tokenizer.Tokenizer` API (a
                Hugging Face tokenizer works); must define ``eos_token_id``.
            prompts: The prompt set, as :class:`Prompt` records or plain strings.
            reward_fn: A :class:`~textgen_env.rewards.RewardFunction`.
            max_new_tokens: Episode horizon L (tokens the policy may generate).
            max_prompt_tokens: Width of the prompt block of the observation.
            task_id: Name stamped on every state; states of another task are refused.
            vocab_size: Size of the action space; defaults to ``len(tokenizer)``. Set it to the
                model's ``config.vocab_size`` when that is larger (padded embeddings).
            prompt_truncation: What to do with a prompt longer than ``max_prompt_tokens``:
                ``"left"`` keeps its last tokens (nearest the generation), ``"right"`` keeps
                its first tokens, ``"error"`` raises ``ValueError``.
        """
        max_new_tokens = check_int(max_new_tokens, "max_new_tokens", minimum=1)
        max_prompt_tokens = check_int(max_prompt_tokens, "max_prompt_tokens", minimum=1)
        if not isinstance(task_id, str):
            raise TypeError(f"task_id must be a str, got {type(task_id).__name__}")
        if prompt_truncation not in ("left", "right", "error"):
            raise ValueError(
                f"prompt_truncation must be 'left', 'right' or 'error', got {prompt_truncation!r}"
            )
        if not callable(reward_fn):
            raise TypeError(f"reward_fn must be callable, got {type(reward_fn).__name__}")
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is None:
            raise ValueError("tokenizer must define eos_token_id")
        pad = getattr(tokenizer, "pad_token_id", None)
        pad = eos if pad is None else pad
        vocab = check_int(
            len(tokenizer) if vocab_size is None else vocab_size, "vocab_size", minimum=2
        )
        if not (0 <= eos < vocab and 0 <= pad < vocab):
            raise ValueError(f"eos ({eos}) and pad ({pad}) ids must be below vocab_size {vocab}")
        if isinstance(prompts, str) or len(prompts) == 0:
            raise ValueError("prompts must be a non-empty sequence of Prompt or str")
        records = tuple(p if isinstance(p, Prompt) else Prompt(p) for p in prompts)

        table = []
        for i, prompt in enumerate(records):
            ids = [int(t) for t in tokenizer.encode(prompt.text, add_special_tokens=False)]
            if not ids:
                raise ValueError(f"prompt {i} encodes to zero tokens: {prompt.text!r}")
            if len(ids) > max_prompt_tokens:
                if prompt_truncation == "error":
                    raise ValueError(
                        f"prompt {i} has {len(ids)} tokens > max_prompt_tokens={max_prompt_tokens}"
                    )
                ids = (
                    ids[-max_prompt_tokens:]
                    if prompt_truncation == "left"
                    else ids[:max_prompt_tokens]
                )
            if max(ids) >= vocab or min(ids) < 0:
                raise ValueError(f"prompt {i} has token ids outside the vocabulary [0, {vocab})")
            table.append(tuple(ids))
        return cls(
            task_id=task_id,
            tokenizer=tokenizer,
            prompts=records,
            prompt_ids=tuple(table),
            reward_fn=reward_fn,
            max_prompt_tokens=max_prompt_tokens,
            max_new_tokens=max_new_tokens,
            vocab_size=vocab,
            eos_token_id=int(eos),
            pad_token_id=int(pad),
        )

    @property
    def num_prompts(self) -> int:
        """Number of prompts in the set."""
        return len(self.prompts)

    def initial_state(self, prompt_index: int) -> TextState:
        """The start state of prompt ``prompt_index`` (nothing generated yet)."""
        i = check_int(prompt_index, "prompt_index")
        if not 0 <= i < self.num_prompts:
            raise IndexError(f"prompt_index {i} out of range [0, {self.num_prompts})")
        return TextState(self.task_id, i, self.prompt_ids[i], (), self.prompts[i].references)

    def is_terminal(self, state: TextState) -> bool:
        """Whether ``state`` ends the episode (last token is EOS, or the horizon is reached)."""
        gen = state.generated_ids
        return len(gen) >= self.max_new_tokens or (len(gen) > 0 and gen[-1] == self.eos_token_id)

    def validate_state(self, state: object, *, allow_terminal: bool = False) -> TextState:
        """Check that ``state`` belongs to this task; raise a clear error otherwise."""
        if not isinstance(state, TextState):
            raise TypeError(f"expected a TextState, got {type(state).__name__}")
        if state.task_id != self.task_id:
            raise InvalidStateError(
                f"state belongs to task {state.task_id!r}, this env runs {self.task_id!r}"
            )
        if not is_int(state.prompt_index):
            raise InvalidStateError(
                f"state prompt_index must be an int, got {type(state.prompt_index).__name__}"
            )
        if not 0 <= state.prompt_index < self.num_prompts:
            raise InvalidStateError(
                f"state prompt_index {state.prompt_index} out of range [0, {self.num_prompts})"
            )
        if state.prompt_ids != self.prompt_ids[state.prompt_index]:
            raise InvalidStateError(
                f"state prompt tokens do not match prompt {state.prompt_index} of {self.task_id!r}"
                f" (len {len(state.prompt_ids)} vs {len(self.prompt_ids[state.prompt_index])})"
            )
        if state.references != self.prompts[state.prompt_index].references:
            raise InvalidStateError(
                f"state references do not match those of prompt {state.prompt_index}"
            )
        gen = state.generated_ids
        if len(gen) > self.max_new_tokens:
            raise InvalidStateError(
                f"state has {len(gen)} generated tokens > max_new_tokens={self.max_new_tokens}"
            )
        if gen and (min(gen) < 0 or max(gen) >= self.vocab_size):
            raise InvalidStateError(
                f"state has token ids outside the vocabulary [0, {self.vocab_size})"
            )
        if self.eos_token_id in gen[:-1]:
            raise InvalidStateError("state has an EOS token before its last position")
        if not allow_terminal and self.is_terminal(state):
            raise InvalidStateError(
                "state is terminal (the episode has ended); cannot restart there"
            )
        return state

    def decode(self, sequences: Sequence[Sequence[int]]) -> list[str]:
        """Decode token id sequences to text (special tokens removed)."""
        return self.tokenizer.batch_decode([list(s) for s in sequences], skip_special_tokens=True)

    def score(self, prompt_index: np.ndarray, generated: Sequence[Sequence[int]]) -> np.ndarray:
        """Rewards of finished episodes, in one batched call of the reward function."""
        idx = [int(i) for i in prompt_index]
        completions = self.decode(generated)
        values = self.reward_fn(
            [self.prompts[i].text for i in idx],
            completions,
            [self.prompts[i].references for i in idx],
        )
        return check_rewards(values, len(idx))
