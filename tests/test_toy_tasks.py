"""The toy tasks: prompt sets, hand-computed rewards, optimal experts and the random baseline."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest

from textgen_env.env import TextGenEnv
from textgen_env.state import TextState
from textgen_env.tasks.toy import (
    POSITIVE_LEXICON,
    PositiveReward,
    ReverseReward,
    TwistReward,
    make_positive_env,
    make_reverse_env,
    make_twist_env,
    positive_expert,
    positive_optimal_return,
    positive_prompts,
    positive_tokenizer,
    reverse_expert,
    reverse_prompts,
    reverse_tokenizer,
    twist_expert,
)

SPLITS = ("train", "test")


def rollout(env: TextGenEnv, policy: Callable[[TextState], int], prompt_index: int) -> float:
    """Play one episode of ``env`` from prompt ``prompt_index`` and return its total reward.

    Args:
        env: An unwrapped single env.
        policy: Maps the current state to the next token.
        prompt_index: Which prompt to start from.

    Returns:
        The sum of the step rewards.
    """
    env.reset(options={"prompt_index": prompt_index})
    total, done = 0.0, False
    while not done:
        _, reward, terminated, truncated, _ = env.step(policy(env.get_state()))
        total += float(reward)
        done = terminated or truncated
    return total


# ------------------------------------------------------------------------ tokenizers, prompts
def test_toy_tokenizers_have_documented_vocabularies() -> None:
    """Reverse is 11 character tokens, Positive 27 word tokens; pad 0, EOS 1; round trips."""
    rev, pos = reverse_tokenizer(), positive_tokenizer()
    assert len(rev) == 11 and len(pos) == 27
    assert (rev.pad_token_id, rev.eos_token_id) == (0, 1) == (pos.pad_token_id, pos.eos_token_id)
    assert rev.batch_decode([[*rev.encode("hgab="), 1]]) == ["hgab="]
    assert pos.batch_decode([[*pos.encode("the movie was great"), 1]]) == ["the movie was great"]
    assert pos.encode("wonderful awful") == [2, 26]


def test_reverse_prompts_are_fixed_disjoint_and_well_formed() -> None:
    """512 train / 128 test distinct prompts ``letters=`` with the reversed letters as reference."""
    train, test = reverse_prompts("train"), reverse_prompts("test")
    assert (len(train), len(test)) == (512, 128)
    assert train == reverse_prompts("train")  # deterministic
    texts = [p.text for p in train + test]
    assert len(set(texts)) == 640
    for p in train + test:
        letters = p.text[:-1]
        assert p.text.endswith("=") and 3 <= len(letters) <= 6
        assert set(letters) <= set("abcdefgh")
        assert p.references == (letters[::-1],)


def test_positive_prompts_are_fixed_and_disjoint() -> None:
    """192 train / 48 test distinct openings, built from lexicon words only."""
    train, test = positive_prompts("train"), positive_prompts("test")
    assert (len(train), len(test)) == (192, 48)
    assert train == positive_prompts("train")
    assert len({p.text for p in train + test}) == 240
    assert all(set(p.text.split()) <= set(POSITIVE_LEXICON) for p in train + test)


@pytest.mark.parametrize("make", [reverse_prompts, positive_prompts])
def test_unknown_split_is_rejected(make: Callable[[str], object]) -> None:
    """A split other than train/test raises ValueError."""
    with pytest.raises(ValueError, match="split"):
        make("validation")


@pytest.mark.parametrize("factory", [make_reverse_env, make_positive_env])
@pytest.mark.parametrize("split", SPLITS)
def test_split_argument_selects_the_prompt_set(
    factory: Callable[..., TextGenEnv], split: str
) -> None:
    """The env factories load the requested split."""
    env = factory(split)
    expected = reverse_prompts(split) if factory is make_reverse_env else positive_prompts(split)
    assert env.task.prompts == expected


# -------------------------------------------------------------------------------- rewards
@pytest.mark.parametrize(
    ("completion", "reference", "expected"),
    [
        ("cba", "cba", 1.0),
        ("cb", "cba", 2 / 3),
        ("cbaa", "cba", 3 / 4),
        ("abc", "cba", 1 / 3),
        ("", "cba", 0.0),
        ("hhh", "cba", 0.0),
        ("", "", 0.0),
    ],
)
def test_reverse_reward_values(completion: str, reference: str, expected: float) -> None:
    """Position-wise matches divided by the longer of completion and reference."""
    out = ReverseReward()(["abc="], [completion], [(reference,)])
    assert out.shape == (1,)
    assert out[0] == pytest.approx(expected)


def test_reverse_reward_is_batched_and_uses_first_reference() -> None:
    """One call scores many texts; only the first reference counts."""
    out = ReverseReward()(["ab=", "abc="], ["ba", "cbx"], [("ba", "zz"), ("cba",)])
    np.testing.assert_allclose(out, [1.0, 2 / 3])


@pytest.mark.parametrize(
    ("completion", "expected_sum"),
    [
        ("wonderful", 1.0),
        ("wonderful wonderful", 1.5),
        ("great great great", 0.8 * 1.75),
        ("awful good", -0.5),
        ("the movie was dull", -0.6),
        ("", 0.0),
        ("brilliant wonderful brilliant", 0.9 * 1.5 + 1.0),
    ],
)
def test_positive_reward_values(completion: str, expected_sum: float) -> None:
    """Sum of lexicon scores, each repeat worth half the previous, over max_new_tokens (6)."""
    out = PositiveReward()(["the movie was"], [completion], [()])
    assert out.shape == (1,)
    assert out[0] == pytest.approx(expected_sum / 6)


def test_positive_reward_scales_with_horizon() -> None:
    """``max_new_tokens`` is the normaliser; unknown words score 0."""
    out = PositiveReward(max_new_tokens=2)(["x", "x"], ["wonderful", "zzz"], [(), ()])
    np.testing.assert_allclose(out, [0.5, 0.0])


def test_positive_optimal_return_values() -> None:
    """The greedy optimum: best distinct words first (1.0+0.9+0.8+0.7+0.6+0.5)/6 = 0.75."""
    assert positive_optimal_return() == pytest.approx(0.75)
    assert positive_optimal_return(2) == pytest.approx(0.95)
    assert positive_optimal_return(7) == pytest.approx(5.0 / 7)  # 7th word: a 0.5 tie


# -------------------------------------------------------------------------------- experts
@pytest.mark.parametrize("split", SPLITS)
def test_reverse_expert_is_optimal_on_every_prompt(split: str) -> None:
    """The scripted expert writes the reversed prompt then EOS: return 1.0 on every prompt."""
    env = make_reverse_env(split)
    returns = [rollout(env, reverse_expert, i) for i in range(env.task.num_prompts)]
    np.testing.assert_allclose(returns, 1.0)


@pytest.mark.parametrize("split", SPLITS)
def test_positive_expert_is_optimal_on_every_prompt(split: str) -> None:
    """The scripted expert reaches :func:`positive_optimal_return` on every prompt."""
    env = make_positive_env(split)
    returns = [rollout(env, positive_expert, i) for i in range(env.task.num_prompts)]
    np.testing.assert_allclose(returns, positive_optimal_return())


@pytest.mark.parametrize("split", SPLITS)
def test_twist_expert_is_optimal_on_every_prompt(split: str) -> None:
    """The expert writes the pivot, then the four best words: return 1.0 on every prompt."""
    env = make_twist_env(split)
    returns = [rollout(env, twist_expert, i) for i in range(env.task.num_prompts)]
    np.testing.assert_allclose(returns, 1.0)


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("but quite wonderful brilliant great moving", 13.6),  # the optimum: 4 * 3.4
        ("wonderful brilliant great moving funny good", 4.5),  # plain praise: local optimum
        ("but quite", 0.0),
        ("great but quite good wonderful", 0.8 + 4 * (0.5 + 1.0)),
        ("quite but wonderful", 1.0),  # the pivot is "but quite", in that order
        ("but quite awful but quite bad", 4 * (-1.0 - 0.7)),  # repeated pivot: no extra bonus
        ("good but quite good", 0.5 + 4 * 0.25),  # the repeat discount still applies
    ],
)
def test_twist_reward_values(completion: str, expected: float) -> None:
    """Words after the first "but quite" count 4x; divided by the optimum 13.6."""
    out = TwistReward()(["the plot was dull but"], [completion], [()])
    assert out[0] == pytest.approx(expected / 13.6)


def test_twist_expert_beats_every_three_token_ending() -> None:
    """From random states with three tokens left (some ending in "but"), no completion scores
    more than the expert's (brute force over all 25**3 word triples)."""
    env = make_twist_env()
    words = list(POSITIVE_LEXICON)
    ids = {w: i + 2 for i, w in enumerate(words)}
    reward, rng = TwistReward(), np.random.default_rng(0)
    endings = [" ".join(t) for t in itertools.product(words, repeat=3)]
    for trial in range(12):
        prefix = list(rng.choice(words, size=3))
        if trial % 3 == 0:
            prefix[-1] = "but"
        env.reset(options={"prompt_index": 0})
        for w in prefix:
            env.step(ids[w])
        expert_text = " ".join(prefix)
        for _ in range(3):
            token = twist_expert(env.get_state())
            env.step(token)
            expert_text += " " + words[token - 2]
        best = reward([""] * len(endings), [" ".join(prefix) + " " + e for e in endings],
                      [()] * len(endings)).max()  # fmt: skip
        assert reward([""], [expert_text], [()])[0] == pytest.approx(best), prefix


@pytest.mark.parametrize(
    ("factory", "optimum"),
    [(make_reverse_env, 1.0), (make_positive_env, positive_optimal_return()),
     (make_twist_env, 1.0)],
)  # fmt: skip
def test_random_policy_is_far_below_optimum(
    factory: Callable[..., TextGenEnv], optimum: float
) -> None:
    """A uniform random policy scores well under half of the optimum on average."""
    env = factory()
    rng = np.random.default_rng(0)
    returns = [
        rollout(env, lambda _s: int(rng.integers(env.task.vocab_size)), i % env.task.num_prompts)
        for i in range(300)
    ]
    assert np.mean(returns) < 0.25 * optimum


@pytest.mark.parametrize("reward", [ReverseReward(), PositiveReward(), TwistReward()])
def test_toy_rewards_reject_bad_batches(reward) -> None:
    """Mismatched lengths and non-str texts are clear errors, not silent partial scores."""
    with pytest.raises(ValueError, match="same length"):
        reward(["p"], ["good", "bad"], [("x",)])
    with pytest.raises(TypeError, match=r"completions\[0\] must be a str"):
        reward(["p"], [3], [("x",)])
