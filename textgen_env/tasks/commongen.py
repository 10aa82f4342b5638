"""CommonGen concept-to-sentence generation (``textgen_env/CommonGen-v0``), as in the paper.

The prompt is ``"generate a sentence with: <concept> <concept> ... ."``; the policy writes a
sentence of up to 20 tokens that should use all the concepts, and the reward is CIDEr-D
against the human references (:class:`~textgen_env.rewards.overlap.CiderD`, in [0, 10]), with
the idf fixed from the references of the whole split.

Shipped rows have ``concepts`` (a list of words) and ``references`` (a list of sentences). The
hub's ``common_gen`` set has one ``target`` sentence per row and repeats the concept set; its
rows are grouped by ``concept_set_idx`` (or by the concept list when that field is missing),
in order of first appearance. Its ``test`` split has no targets: use ``validation``, or pass a
reward that needs no references.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import datasets
from gymnasium.vector import AutoresetMode

from textgen_env.env import TextGenEnv
from textgen_env.rewards.base import RewardFunction
from textgen_env.rewards.overlap import CiderD
from textgen_env.state import Prompt
from textgen_env.tasks.data import default_tokenizer, field, load_records, row_list
from textgen_env.tokenizer import Tokenizer
from textgen_env.vector import TextGenVectorEnv

__all__ = [
    "GUIDE_TEMPLATE",
    "MAX_NEW_TOKENS",
    "MAX_PROMPT_TOKENS",
    "commongen_prompts",
    "concepts_prompt",
    "default_reward",
    "make_commongen_env",
    "make_commongen_vector_env",
    "records_to_prompts",
]

MAX_NEW_TOKENS = 20
"""Episode horizon (the paper's 20 new tokens)."""

MAX_PROMPT_TOKENS = 32
"""Prompt budget; a 3-5 concept prompt takes 9-16 SmolLM2 tokens."""

PROMPT_TRUNCATION = "error"
"""A prompt over budget is an error: cutting it would silently drop concepts."""

GUIDE_TEMPLATE = (
    "{prompt}\nAnswer with one short everyday sentence that contains every one of these words."
)
"""Guide prompt (a chat user turn) for an instruct model; its reply is the sentence.

Chosen on the validation split with SmolLM2-135M-Instruct (mean CIDEr-D, 2 seeds): 0.43 vs
0.32 for the bare prompt and 0.32 for "Write one short, simple sentence that uses all of the
given words." before it (the unprompted model: 0.11)."""


def concepts_prompt(concepts: Sequence[str]) -> str:
    """The prompt text of a concept set: ``"generate a sentence with: a b c."``."""
    return "generate a sentence with: " + " ".join(concepts) + "."


def _concepts(row: Mapping[str, Any], i: int) -> tuple[str, ...]:
    concepts = field(row, "concepts", list, "CommonGen", i)
    if not concepts or not all(isinstance(c, str) and c.strip() for c in concepts):
        raise ValueError(f"CommonGen row {i} needs a non-empty list of non-empty concept words")
    return tuple(c.strip() for c in concepts)


def records_to_prompts(data: datasets.Dataset | Iterable[Mapping[str, Any]]) -> tuple[Prompt, ...]:
    """Map CommonGen rows to prompts with the concept set's references.

    Args:
        data: Rows with ``concepts`` and ``references`` (shipped), or hub ``common_gen`` rows
            with ``concepts`` and one ``target`` each (grouped by ``concept_set_idx``).

    Returns:
        One prompt per concept set, in order of first appearance. Empty targets (the hub's
        hidden test references) are dropped, so such a prompt has no references.

    Raises:
        ValueError: A row has neither ``references`` nor ``target``, or no concepts.
        TypeError: A field has the wrong type.
    """
    groups: dict[Any, tuple[tuple[str, ...], list[str]]] = {}
    for i, row in enumerate(row_list(data, "CommonGen")):
        concepts = _concepts(row, i)
        if "references" in row:
            refs = field(row, "references", list, "CommonGen", i)
            if not all(isinstance(r, str) for r in refs):
                raise TypeError(f"CommonGen row {i} references must be strings")
            key: Any = ("row", i)
        elif "target" in row:
            refs = [field(row, "target", str, "CommonGen", i)]
            key = row.get("concept_set_idx", concepts)
        else:
            raise ValueError(f"CommonGen row {i} has neither 'references' nor 'target'")
        known = groups.setdefault(key, (concepts, []))
        if known[0] != concepts:
            raise ValueError(f"CommonGen row {i}: concept_set_idx {key!r} has two concept lists")
        known[1].extend(r.strip() for r in refs if r.strip())
    return tuple(
        Prompt(concepts_prompt(concepts), references=tuple(refs))
        for concepts, refs in groups.values()
    )


def commongen_prompts(
    split: str = "train", source: str | os.PathLike[str] | None = None
) -> tuple[Prompt, ...]:
    """The prompts of one split (see :func:`~textgen_env.tasks.data.load_records`)."""
    return records_to_prompts(load_records("commongen", split, source))


def default_reward(prompts: Sequence[Prompt]) -> RewardFunction:
    """CIDEr-D with its idf fixed from the references of ``prompts`` (the split).

    Raises:
        ValueError: A prompt has no references (CIDEr-D needs them); pass another reward.
    """
    missing = [i for i, p in enumerate(prompts) if not p.references]
    if missing:
        raise ValueError(
            f"{len(missing)} CommonGen prompts have no references (e.g. prompt {missing[0]}); "
            "CIDEr-D needs them: use a split with references or pass reward_fn"
        )
    return CiderD(corpus_references=[p.references for p in prompts])


def _kwargs(
    split: str,
    tokenizer: Tokenizer | None,
    reward_fn: RewardFunction | None,
    source: str | os.PathLike[str] | None,
    max_new_tokens: int,
    max_prompt_tokens: int,
    vocab_size: int | None,
) -> dict[str, Any]:
    prompts = commongen_prompts(split, source)
    return dict(
        tokenizer=default_tokenizer() if tokenizer is None else tokenizer,
        prompts=prompts,
        reward_fn=default_reward(prompts) if reward_fn is None else reward_fn,
        max_new_tokens=max_new_tokens,
        max_prompt_tokens=max_prompt_tokens,
        task_id=f"CommonGen-v0/{split}",
        vocab_size=vocab_size,
        prompt_truncation=PROMPT_TRUNCATION,
    )


def make_commongen_env(
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
    """Entry point of ``textgen_env/CommonGen-v0``.

    Args:
        split: ``"train"``, ``"validation"`` or ``"test"`` of the shipped data (or the hub
            set's split name with ``source``); also names the task (``"CommonGen-v0/<split>"``).
        tokenizer: The policy tokenizer; ``None`` uses the shared offline SmolLM2 tokenizer.
        reward_fn: Reward function; ``None`` uses :func:`default_reward` (CIDEr-D).
        source: Hub data set name or local ``.jsonl`` file instead of the shipped data.
        max_new_tokens: Episode horizon.
        max_prompt_tokens: Prompt budget (a longer prompt raises ``ValueError``).
        vocab_size: Action-space size, if larger than ``len(tokenizer)`` (padded embeddings).
        render_mode: ``None`` or ``"ansi"``.
    """
    kwargs = _kwargs(
        split, tokenizer, reward_fn, source, max_new_tokens, max_prompt_tokens, vocab_size
    )
    return TextGenEnv(**kwargs, render_mode=render_mode)


def make_commongen_vector_env(
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
    """Vector entry point of ``textgen_env/CommonGen-v0``; arguments as
    :func:`make_commongen_env`."""
    kwargs = _kwargs(
        split, tokenizer, reward_fn, source, max_new_tokens, max_prompt_tokens, vocab_size
    )
    return TextGenVectorEnv(num_envs, **kwargs, autoreset_mode=autoreset_mode)
