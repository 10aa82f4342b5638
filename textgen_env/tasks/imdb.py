"""IMDB positive continuation (``textgen_env/IMDB-v0``), the paper's sentiment task.

The prompt is the opening of a movie review (the first ``max_prompt_tokens`` = 64 tokens: the
env truncates on the **right**, keeping the review's beginning); the policy writes up to 48
more tokens, and the reward is the sentiment of what it wrote. The paper scores with a
sentiment classifier; the offline default here is VADER's compound score of the completion in
[-1, 1] (:class:`~textgen_env.rewards.sentiment.VaderSentiment`); pass
``reward_fn=ClassifierSentiment(...)`` for the classifier.

Rows have the fields ``text`` and ``label`` (0 negative, 1 positive), as in the hub's
``imdb`` set, whose full reviews work unchanged (``source="imdb"``; its splits are ``train``,
``test`` and ``unsupervised``, where label -1 becomes ``None``). HTML line breaks
(``<br />``) in hub reviews are replaced by spaces.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import datasets
from gymnasium.vector import AutoresetMode

from textgen_env.env import TextGenEnv
from textgen_env.rewards.base import RewardFunction
from textgen_env.rewards.sentiment import VaderSentiment
from textgen_env.state import Prompt
from textgen_env.tasks.data import default_tokenizer, field, load_records, row_list
from textgen_env.tokenizer import Tokenizer
from textgen_env.vector import TextGenVectorEnv

__all__ = [
    "GUIDE_TEMPLATE",
    "MAX_NEW_TOKENS",
    "MAX_PROMPT_TOKENS",
    "default_reward",
    "imdb_prompts",
    "make_imdb_env",
    "make_imdb_vector_env",
    "records_to_prompts",
]

MAX_NEW_TOKENS = 48
"""Episode horizon (the paper's 48 new tokens)."""

MAX_PROMPT_TOKENS = 64
"""Prompt budget: the first 64 tokens of the review."""

PROMPT_TRUNCATION = "right"
"""Long reviews keep their opening (the paper continues the beginning of a review)."""

GUIDE_TEMPLATE = (
    "Continue this movie review. Make the rest of the review warm and positive, praising the "
    "film.\n\n{prompt}"
)
"""Guide prompt (a chat user turn) for an instruct model; its reply is the continuation.

Chosen on the validation split with SmolLM2-135M-Instruct (mean VADER of its continuations,
2 seeds): 0.48 vs 0.37 for "Continue this movie review so that it ends positively:" and 0.26
when also told "Write only the continuation" (the unprompted model: 0.26)."""

_BREAKS = re.compile(r"(\s*<br\s*/?>\s*)+", flags=re.IGNORECASE)


def records_to_prompts(data: datasets.Dataset | Iterable[Mapping[str, Any]]) -> tuple[Prompt, ...]:
    """Map IMDB rows (``text``, optional ``label``) to prompts ``Prompt(text, label=label)``.

    Args:
        data: A :class:`datasets.Dataset` or an iterable of dicts (shipped or hub ``imdb``).

    Returns:
        One prompt per row, in order; negative labels (unlabelled rows) become ``None``.

    Raises:
        ValueError: A row lacks ``text`` or has an empty text.
        TypeError: A field has the wrong type.
    """
    prompts = []
    for i, row in enumerate(row_list(data, "IMDB")):
        text = _BREAKS.sub(" ", field(row, "text", str, "IMDB", i)).strip()
        if not text:
            raise ValueError(f"IMDB row {i} has an empty text")
        label = row.get("label")
        if label is not None:
            label = field(row, "label", int, "IMDB", i)
            label = None if label < 0 else label
        prompts.append(Prompt(text, label=label))
    return tuple(prompts)


def imdb_prompts(
    split: str = "train", source: str | os.PathLike[str] | None = None
) -> tuple[Prompt, ...]:
    """The prompts of one split (see :func:`~textgen_env.tasks.data.load_records`)."""
    return records_to_prompts(load_records("imdb", split, source))


def default_reward() -> RewardFunction:
    """The offline default reward: VADER compound sentiment of the completion, in [-1, 1]."""
    return VaderSentiment()


def _kwargs(
    split: str,
    tokenizer: Tokenizer | None,
    reward_fn: RewardFunction | None,
    source: str | os.PathLike[str] | None,
    max_new_tokens: int,
    max_prompt_tokens: int,
    vocab_size: int | None,
) -> dict[str, Any]:
    return dict(
        tokenizer=default_tokenizer() if tokenizer is None else tokenizer,
        prompts=imdb_prompts(split, source),
        reward_fn=default_reward() if reward_fn is None else reward_fn,
        max_new_tokens=max_new_tokens,
        max_prompt_tokens=max_prompt_tokens,
        task_id=f"IMDB-v0/{split}",
        vocab_size=vocab_size,
        prompt_truncation=PROMPT_TRUNCATION,
    )


def make_imdb_env(
    split: str = "train",
    *,
    tokenizer: Tokenizer | None = None,
    reward_fn: RewardFunction | None = None,
    source: str | os.PathLike[str] | None = None,
    max_new_tokens: int = MAX_NEW_TOKENS,
    max_prompt_tokens: int = MAX_PROMPT_TOKENS,
    vocab_size: int | None = None,
    render_mode: str | None = None,
) -> TextGenEnv:
    """Entry point of ``textgen_env/IMDB-v0``.

    Args:
        split: ``"train"``, ``"validation"`` or ``"test"`` of the shipped data (or the hub
            set's split name with ``source``); also names the task (``"IMDB-v0/<split>"``).
        tokenizer: The policy tokenizer; ``None`` uses the shared offline SmolLM2 tokenizer.
        reward_fn: Reward function; ``None`` uses :func:`default_reward` (VADER).
        source: Hub data set name or local ``.jsonl`` file instead of the shipped data.
        max_new_tokens: Episode horizon.
        max_prompt_tokens: Prompt budget (longer reviews keep their first tokens).
        vocab_size: Action-space size, if larger than ``len(tokenizer)`` (padded embeddings).
        render_mode: ``None`` or ``"ansi"``.
    """
    kwargs = _kwargs(
        split, tokenizer, reward_fn, source, max_new_tokens, max_prompt_tokens, vocab_size
    )
    return TextGenEnv(**kwargs, render_mode=render_mode)


def make_imdb_vector_env(
    num_envs: int,
    split: str = "train",
    *,
    tokenizer: Tokenizer | None = None,
    reward_fn: RewardFunction | None = None,
    source: str | os.PathLike[str] | None = None,
    max_new_tokens: int = MAX_NEW_TOKENS,
    max_prompt_tokens: int = MAX_PROMPT_TOKENS,
    vocab_size: int | None = None,
    autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
) -> TextGenVectorEnv:
    """Vector entry point of ``textgen_env/IMDB-v0``; arguments as :func:`make_imdb_env`."""
    kwargs = _kwargs(
        split, tokenizer, reward_fn, source, max_new_tokens, max_prompt_tokens, vocab_size
    )
    return TextGenVectorEnv(num_envs, **kwargs, autoreset_mode=autoreset_mode)
