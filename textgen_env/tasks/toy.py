"""Two toy tasks with a tiny vocabulary, a known optimum and scripted experts.

* **Reverse** (``textgen_env/Reverse-v0``): the prompt is 3-6 letters from ``a``-``h`` and
  ``=``; the policy must write them reversed, then EOS. Reward = position-wise matches /
  max(len(completion), len(target)); optimum 1.0. Tests prompt-dependent generation.
* **Positive** (``textgen_env/Positive-v0``): continue a short movie-review opening with
  words from a small lexicon; reward = sum of word sentiment scores, each repeat of a word in
  the completion worth half the previous, divided by ``max_new_tokens``. The optimum uses the
  best distinct words (a miniature of the IMDB task).
* **Twist** (``textgen_env/Twist-v0``): the Positive prompts and words, but a review that
  pivots with "but quite" earns four times the score for every word after the pivot. The
  optimum writes the pivot first, then the best words (return 1.0); plain praise is a local
  optimum (about 0.33) that a policy exploring on its own rarely leaves, because the pivot is
  two zero-score words in a row. A task where exploration is hard but not hopeless, the
  setting in which guided roll-outs should pay (Chang et al., 2023, §1).

Each comes with an optimal expert (``reverse_expert``, ``positive_expert``, ``twist_expert``)
that the :class:`~textgen_env.guides.ScriptedGuide` turns into a guide of tunable quality
(ε-noise).
Prompts are generated deterministically by this module (no data files).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from textgen_env._checks import check_int
from textgen_env.env import TextGenEnv
from textgen_env.rewards.sentiment import check_batch
from textgen_env.state import Prompt, TextState
from textgen_env.tokenizer import ToyTokenizer
from textgen_env.vector import TextGenVectorEnv

__all__ = [
    "POSITIVE_LEXICON",
    "TWIST_PIVOT",
    "PositiveReward",
    "ReverseReward",
    "TwistReward",
    "make_positive_env",
    "make_positive_vector_env",
    "make_reverse_env",
    "make_reverse_vector_env",
    "make_twist_env",
    "make_twist_vector_env",
    "positive_expert",
    "positive_optimal_return",
    "positive_prompts",
    "positive_tokenizer",
    "reverse_expert",
    "reverse_prompts",
    "reverse_tokenizer",
    "twist_expert",
]

SPLITS = ("train", "test")
_SPLIT_SEED = {"train": 0, "test": 1}

# ----------------------------------------------------------------------------- Reverse
REVERSE_LETTERS = "abcdefgh"
REVERSE_MAX_NEW_TOKENS = 8
_REVERSE_SEP = 2 + len(REVERSE_LETTERS)  # id of "=" in reverse_tokenizer()


def reverse_tokenizer() -> ToyTokenizer:
    """Character tokenizer: ``<pad>``, ``<eos>``, ``a``-``h``, ``=`` (11 tokens)."""
    return ToyTokenizer((*REVERSE_LETTERS, "="))


def reverse_prompts(split: str = "train") -> tuple[Prompt, ...]:
    """The Reverse prompt set: 512 train / 128 test distinct strings ``"<letters>="``.

    The reference is the reversed letters. Splits are disjoint and fixed.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = np.random.default_rng(2023)
    seen: dict[str, None] = {}
    while len(seen) < 640:
        length = int(rng.integers(3, 7))
        seen["".join(rng.choice(list(REVERSE_LETTERS), size=length))] = None
    words = list(seen)
    words = words[:512] if split == "train" else words[512:]
    return tuple(Prompt(w + "=", (w[::-1],)) for w in words)


class ReverseReward:
    """Position-wise character matches / max(len(completion), len(reference)), in [0, 1]."""

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[Sequence[str]],
    ) -> np.ndarray:
        check_batch(prompts, completions, references, need_references=True)
        out = np.zeros(len(completions))
        for i, (text, refs) in enumerate(zip(completions, references, strict=True)):
            ref = refs[0]
            hits = sum(a == b for a, b in zip(text, ref, strict=False))
            out[i] = hits / max(len(text), len(ref), 1)
        return out


def reverse_expert(state: TextState, eos_token_id: int = 1) -> int:
    """The optimal next token from any state: continue the reversed prompt, then EOS."""
    if state.prompt_ids[-1] != _REVERSE_SEP:
        raise ValueError("reverse_expert needs a Reverse-v0 state (prompt ending with '=')")
    target = (*state.prompt_ids[-2::-1], eos_token_id)
    t = len(state.generated_ids)
    return target[t] if t < len(target) else eos_token_id


def _reverse_kwargs(split: str) -> dict[str, Any]:
    return dict(
        tokenizer=reverse_tokenizer(),
        prompts=reverse_prompts(split),
        reward_fn=ReverseReward(),
        max_new_tokens=REVERSE_MAX_NEW_TOKENS,
        max_prompt_tokens=8,
        task_id=f"Reverse-v0/{split}",
        prompt_truncation="error",
    )


def make_reverse_env(split: str = "train", render_mode: str | None = None) -> TextGenEnv:
    """Entry point of ``textgen_env/Reverse-v0``."""
    return TextGenEnv(**_reverse_kwargs(split), render_mode=render_mode)


def make_reverse_vector_env(num_envs: int, split: str = "train", **kwargs: Any) -> TextGenVectorEnv:
    """Vector entry point of ``textgen_env/Reverse-v0`` (``kwargs``: ``autoreset_mode``)."""
    return TextGenVectorEnv(num_envs, **_reverse_kwargs(split), **kwargs)


# ---------------------------------------------------------------------------- Positive
POSITIVE_LEXICON: dict[str, float] = {
    "wonderful": 1.0, "brilliant": 0.9, "great": 0.8, "moving": 0.7, "funny": 0.6,
    "good": 0.5, "fine": 0.2, "the": 0.0, "movie": 0.0, "film": 0.0, "plot": 0.0,
    "acting": 0.0, "story": 0.0, "ending": 0.0, "was": 0.0, "is": 0.0, "and": 0.0,
    "but": 0.0, "quite": 0.0, "very": 0.0, "slow": -0.4, "dull": -0.6, "bad": -0.7,
    "boring": -0.8, "awful": -1.0,
}  # fmt: skip
POSITIVE_MAX_NEW_TOKENS = 6
_OPENERS = ("the movie", "the film", "the plot", "the acting", "the story", "the ending")
_LINKS = ("was", "is", "was quite", "is very", "was very")
_TAILS = ("", "slow and", "dull but", "bad and", "boring but", "fine but", "awful and", "good and")


def positive_tokenizer() -> ToyTokenizer:
    """Word tokenizer over :data:`POSITIVE_LEXICON` (27 tokens)."""
    return ToyTokenizer(tuple(POSITIVE_LEXICON), separator=" ")


def positive_prompts(split: str = "train") -> tuple[Prompt, ...]:
    """All opener × link × tail openings (240), split 192 train / 48 test by a fixed shuffle."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    texts = [" ".join(filter(None, p)) for p in itertools.product(_OPENERS, _LINKS, _TAILS)]
    order = np.random.default_rng(7).permutation(len(texts))
    cut = order[:192] if split == "train" else order[192:]
    return tuple(Prompt(texts[i]) for i in sorted(cut))


class PositiveReward:
    """Sum of lexicon scores of the completion's words, the k-th repeat of a word counting
    ``0.5**k``, divided by ``max_new_tokens``. Range about [-1, 1]."""

    def __init__(self, max_new_tokens: int = POSITIVE_MAX_NEW_TOKENS) -> None:
        self.max_new_tokens = check_int(max_new_tokens, "max_new_tokens", minimum=1)

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[Sequence[str]],
    ) -> np.ndarray:
        check_batch(prompts, completions, references)
        totals = [sum(_word_scores(text.split())) for text in completions]
        return np.asarray(totals, dtype=float) / self.max_new_tokens


def _word_scores(words: Sequence[str]) -> list[float]:
    """Each word's lexicon score, the k-th repeat of a word counting ``0.5**k``."""
    seen: dict[str, int] = {}
    scores = []
    for word in words:
        scores.append(POSITIVE_LEXICON.get(word, 0.0) * 0.5 ** seen.get(word, 0))
        seen[word] = seen.get(word, 0) + 1
    return scores


def positive_optimal_return(max_new_tokens: int = POSITIVE_MAX_NEW_TOKENS) -> float:
    """The optimal return: greedily the best remaining (discounted-by-repeat) word each step."""
    max_new_tokens = check_int(max_new_tokens, "max_new_tokens", minimum=1)
    return _greedy_total({}, max_new_tokens) / max_new_tokens


def _greedy_total(counts: dict[str, int], n: int) -> float:
    """The most n more words can add after words used ``counts`` times: greedy, since each
    word's next repeat is worth half its last."""
    counts, total = dict(counts), 0.0
    for _ in range(max(n, 0)):
        word = max(POSITIVE_LEXICON, key=lambda w: POSITIVE_LEXICON[w] * 0.5 ** counts.get(w, 0))
        total += POSITIVE_LEXICON[word] * 0.5 ** counts.get(word, 0)
        counts[word] = counts.get(word, 0) + 1
    return total


_POS_IDS = {w: i + 2 for i, w in enumerate(POSITIVE_LEXICON)}  # ToyTokenizer: 0 pad, 1 eos


def positive_expert(state: TextState) -> int:
    """The optimal next token: the word with the highest repeat-discounted score (never EOS:
    every word still adds a positive score until the horizon)."""
    counts: dict[int, int] = {}
    for t in state.generated_ids:
        counts[t] = counts.get(t, 0) + 1
    best = max(_POS_IDS, key=lambda w: POSITIVE_LEXICON[w] * 0.5 ** counts.get(_POS_IDS[w], 0))
    return _POS_IDS[best]


def _positive_kwargs(split: str) -> dict[str, Any]:
    return dict(
        tokenizer=positive_tokenizer(),
        prompts=positive_prompts(split),
        reward_fn=PositiveReward(POSITIVE_MAX_NEW_TOKENS),
        max_new_tokens=POSITIVE_MAX_NEW_TOKENS,
        max_prompt_tokens=8,
        task_id=f"Positive-v0/{split}",
        prompt_truncation="error",
    )


def make_positive_env(split: str = "train", render_mode: str | None = None) -> TextGenEnv:
    """Entry point of ``textgen_env/Positive-v0``."""
    return TextGenEnv(**_positive_kwargs(split), render_mode=render_mode)


def make_positive_vector_env(
    num_envs: int, split: str = "train", **kwargs: Any
) -> TextGenVectorEnv:
    """Vector entry point of ``textgen_env/Positive-v0`` (``kwargs``: ``autoreset_mode``)."""
    return TextGenVectorEnv(num_envs, **_positive_kwargs(split), **kwargs)


# ------------------------------------------------------------------------------- Twist
TWIST_PIVOT = ("but", "quite")
TWIST_BONUS = 4.0  # every word after the pivot scores this many times its lexicon score


_TWIST_OPTIMUM = TWIST_BONUS * _greedy_total({}, POSITIVE_MAX_NEW_TOKENS - len(TWIST_PIVOT))


def _pivot_at(words: Sequence[str]) -> int | None:
    """Index of the first word after the first pivot in ``words``, or None."""
    for j in range(len(TWIST_PIVOT), len(words) + 1):
        if tuple(words[j - len(TWIST_PIVOT) : j]) == TWIST_PIVOT:
            return j
    return None


class TwistReward:
    """Positive's repeat-discounted lexicon score, words after the first "but quite" of the
    completion counting :data:`TWIST_BONUS` times, divided by the optimum (so it is 1.0).
    The prompt does not count: the pivot must be in the completion."""

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[Sequence[str]],
    ) -> np.ndarray:
        check_batch(prompts, completions, references)
        out = np.zeros(len(completions))
        for i, text in enumerate(completions):
            words = text.split()
            pivot = _pivot_at(words)
            pivot = len(words) if pivot is None else pivot
            scores = _word_scores(words)
            out[i] = sum(scores[:pivot]) + TWIST_BONUS * sum(scores[pivot:])
        return out / _TWIST_OPTIMUM


def twist_expert(state: TextState) -> int:
    """The optimal next token: finish the pivot as soon as the words it leaves room for,
    at 4x, beat plain praise (always, with 3+ tokens left), otherwise the best word."""
    words = [_POS_WORDS.get(t, "") for t in state.generated_ids]
    counts: dict[str, int] = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    best = max(POSITIVE_LEXICON, key=lambda w: POSITIVE_LEXICON[w] * 0.5 ** counts.get(w, 0))
    if _pivot_at(words) is None:
        left = POSITIVE_MAX_NEW_TOKENS - len(words)
        started = bool(words) and words[-1] == TWIST_PIVOT[0]
        need = len(TWIST_PIVOT) - started  # tokens still needed to complete the pivot
        if TWIST_BONUS * _greedy_total(counts, left - need) > _greedy_total(counts, left):
            return _POS_IDS[TWIST_PIVOT[started]]
    return _POS_IDS[best]


_POS_WORDS = {i: w for w, i in _POS_IDS.items()}


def _twist_kwargs(split: str) -> dict[str, Any]:
    return _positive_kwargs(split) | {"reward_fn": TwistReward(), "task_id": f"Twist-v0/{split}"}


def make_twist_env(split: str = "train", render_mode: str | None = None) -> TextGenEnv:
    """Entry point of ``textgen_env/Twist-v0``."""
    return TextGenEnv(**_twist_kwargs(split), render_mode=render_mode)


def make_twist_vector_env(num_envs: int, split: str = "train", **kwargs: Any) -> TextGenVectorEnv:
    """Vector entry point of ``textgen_env/Twist-v0`` (``kwargs``: ``autoreset_mode``)."""
    return TextGenVectorEnv(num_envs, **_twist_kwargs(split), **kwargs)
