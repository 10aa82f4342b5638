"""Episode states and prompts: small, frozen, picklable records.

A :class:`TextState` is everything needed to restart the token MDP at a point: which prompt,
its tokens, the tokens generated so far and the references the reward may need. Because the
transition (append a token) is deterministic, ``env.reset(options={"state": s})`` followed by
the same actions reproduces the same observations and rewards exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from textgen_env._checks import is_int

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

    Token ids and ``prompt_index`` must be ints: Python ``int`` or NumPy integer scalars
    (stored as Python ints); ``bool``, floats and strings raise ``TypeError`` naming the field
    and the value, never silently truncated (``2.7`` is not token 2). Sequences (lists, arrays)
    are stored as tuples.
    """

    task_id: str
    prompt_index: int
    prompt_ids: tuple[int, ...]
    generated_ids: tuple[int, ...] = ()
    references: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.task_id, str):
            raise TypeError(f"TextState.task_id must be a str, got {type(self.task_id).__name__}")
        index = self.prompt_index
        if not is_int(index):
            raise TypeError(
                f"TextState.prompt_index must be an int, got {index!r} ({type(index).__name__})"
            )
        object.__setattr__(self, "prompt_index", int(index))
        object.__setattr__(self, "prompt_ids", _token_ids(self.prompt_ids, "prompt_ids"))
        object.__setattr__(self, "generated_ids", _token_ids(self.generated_ids, "generated_ids"))
        refs = self.references
        if isinstance(refs, str) or not isinstance(refs, Iterable):
            raise TypeError(
                f"TextState.references must be a sequence of str, got {type(refs).__name__}"
            )
        refs = tuple(refs)
        bad = [r for r in refs if not isinstance(r, str)]
        if bad:
            raise TypeError(
                f"TextState.references must hold str, got {bad[0]!r} ({type(bad[0]).__name__})"
            )
        object.__setattr__(self, "references", refs)

    @property
    def num_generated(self) -> int:
        """Number of tokens generated so far (the time step t)."""
        return len(self.generated_ids)

    def extend(self, tokens: tuple[int, ...] | list[int]) -> TextState:
        """Return the state reached by appending ``tokens`` (their type is checked as in the
        constructor; whether they fit a task is checked by the env)."""
        return TextState(
            self.task_id,
            self.prompt_index,
            self.prompt_ids,
            self.generated_ids + _token_ids(tokens, "generated_ids"),
            self.references,
        )


def _token_ids(values: object, field: str) -> tuple[int, ...]:
    """``values`` as a tuple of Python ints; ``TypeError`` naming ``field`` otherwise.

    Python ints and NumPy integer scalars are token ids; ``bool``, floats (even ``2.0``) and
    strings are not (``int(2.7)`` would silently give another token).
    """
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise TypeError(
            f"TextState.{field} must be a sequence of int token ids, got {type(values).__name__}"
        )
    out = []
    for i, t in enumerate(values):
        if type(t) is not int and not is_int(t):
            raise TypeError(
                f"TextState.{field}[{i}] must be an int token id, got {t!r} ({type(t).__name__})"
            )
        out.append(int(t))
    return tuple(out)
