"""Episode states and prompts: small, frozen, picklable records.

A :class:`TextState` is everything needed to restart the token MDP at a point: which prompt,
its tokens, the tokens generated so far and the references the reward may need. Because the
transition (append a token) is deterministic, ``env.reset(options={"state": s})`` followed by
the same actions reproduces the same observations and rewards exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Prompt", "TextState"]


@dataclass(frozen=True)
class Prompt:
    """One row of a task's prompt set.

    Attributes:
        text: The prompt as text (what the policy conditions on).
        references: Reference completions (may be empty); rewards and metrics compare to them,
            and :class:`~textgen_env.guides.ReferenceGuide` replays the first one.
        label: Optional class label kept from the data set (e.g. IMDB sentiment); not used by
            the env itself.
    """

    text: str
    references: tuple[str, ...] = ()
    label: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"Prompt.text must be str, got {type(self.text).__name__}")
        if isinstance(self.references, str) or not all(isinstance(r, str) for r in self.references):
            raise TypeError("Prompt.references must be a tuple of str")
        object.__setattr__(self, "references", tuple(self.references))


@dataclass(frozen=True)
class TextState:
    """A restartable point of a text-generation episode.

    Attributes:
        task_id: Identifier of the task the state belongs to; an env refuses states of
            another task.
        prompt_index: Index of the prompt in the task's prompt set.
        prompt_ids: Token ids of the (possibly truncated) prompt, as the env tokenized it.
        generated_ids: Token ids generated so far (may end with EOS for a finished episode).
        references: The prompt's reference completions, for rewards and reference guides.
    """

    task_id: str
    prompt_index: int
    prompt_ids: tuple[int, ...]
    generated_ids: tuple[int, ...] = ()
    references: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt_ids", tuple(int(t) for t in self.prompt_ids))
        object.__setattr__(self, "generated_ids", tuple(int(t) for t in self.generated_ids))
        object.__setattr__(self, "references", tuple(self.references))

    @property
    def num_generated(self) -> int:
        """Number of tokens generated so far (the time step t)."""
        return len(self.generated_ids)

    def extend(self, tokens: tuple[int, ...] | list[int]) -> TextState:
        """Return the state reached by appending ``tokens`` (no validation; the env validates)."""
        return TextState(
            self.task_id,
            self.prompt_index,
            self.prompt_ids,
            self.generated_ids + tuple(int(t) for t in tokens),
            self.references,
        )
