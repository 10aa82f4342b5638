"""The roll-in / roll-out engine (`agents.engine.collect`) on ``textgen_env/Reverse-v0``.

The guide always writes the letter "h" and the learner writes "a" (or, for the stochastic
learner, sometimes EOS), so every generated token says who produced it.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import pytest
import torch

import textgen_env  # noqa: F401  (registers the ids)
from agents.build import TOY_MODEL, learner_policy
from agents.config import TrainConfig
from agents.engine import RollIn, Rollout, collect
from agents.policy import ActorCritic
from textgen_env.guides import ScriptedGuide
from textgen_env.models import tiny_causal_lm
from textgen_env.state import TextState
from textgen_env.tasks.toy import ReverseReward, reverse_expert
from textgen_env.vector import TextGenVectorEnv

EOS, A, H = 1, 2, 9  # ids of <eos>, "a" and "h" in the Reverse tokenizer
L = 8  # Reverse-v0 max_new_tokens
P = 8  # Reverse-v0 max_prompt_tokens


def make_envs(n: int, seed: int = 0) -> TextGenVectorEnv:
    envs = gym.make_vec(
        "textgen_env/Reverse-v0", num_envs=n, vectorization_mode="vector_entry_point"
    )
    envs.reset(seed=seed)
    return envs


class SpyGuide:
    """Always proposes ``token`` (never EOS); records the token counts it was asked for."""

    def __init__(self, token: int = H) -> None:
        self.token = token
        self.asked: list[int] = []

    def act(
        self, states: Sequence[TextState], num_tokens: Sequence[int], rng: np.random.Generator
    ) -> list[tuple[int, ...]]:
        self.asked.extend(int(k) for k in num_tokens)
        return [(self.token,) * int(k) for k in num_tokens]


class CoinLearner:
    """Writes "a", but each token is EOS with probability ``p_eos`` (drawn from ``rng``)."""

    def __init__(self, p_eos: float = 0.0) -> None:
        self.p_eos = p_eos

    def act(
        self, states: Sequence[TextState], num_tokens: Sequence[int], rng: np.random.Generator
    ) -> list[tuple[int, ...]]:
        out = []
        for k in num_tokens:
            toks: list[int] = []
            while len(toks) < k and (not toks or toks[-1] != EOS):
                toks.append(EOS if rng.random() < self.p_eos else A)
            out.append(tuple(toks))
        return out


def rows(r: Rollout) -> list[tuple[list[int], list[int], int, bool]]:
    """Per row: generated tokens, learner mask over them, k, guided."""
    out = []
    for i in range(r.tokens.shape[0]):
        n = int(r.gen_mask[i].sum())
        out.append(
            (
                r.tokens[i, :n].tolist(),
                r.learner_mask[i, :n].int().tolist(),
                int(r.switch[i]),
                bool(r.guided[i]),
            )
        )
    return out


def check_layout(r: Rollout, n: int) -> None:
    """Shapes, masks nested, padding after the generated tokens, states match the tokens."""
    assert r.input_ids.shape == (n, P + L) and r.attention_mask.shape == (n, P + L)
    assert r.prompt_width == P and r.tokens.shape == (n, L)
    assert r.gen_mask.shape == r.learner_mask.shape == (n, L)
    assert r.task_rewards.shape == r.guided.shape == r.switch.shape == (n,)
    assert bool((r.learner_mask <= r.gen_mask).all())
    torch.testing.assert_close(r.guide_mask, r.gen_mask - r.learner_mask)
    torch.testing.assert_close(r.attention_mask[:, P:].float(), r.gen_mask)
    lengths = r.gen_mask.sum(1)
    assert bool((r.gen_mask == (torch.arange(L)[None] < lengths[:, None]).float()).all())
    for i, s in enumerate(r.states):
        assert list(s.generated_ids) == r.tokens[i, : int(lengths[i])].tolist()
    assert r.generation_seconds >= 0 and r.reward_seconds >= 0


def check_rewards(envs: TextGenVectorEnv, r: Rollout) -> None:
    """task_rewards are the Reverse reward of the final states' completions."""
    task = envs.unwrapped.task
    texts = task.decode([s.generated_ids for s in r.states])
    prompts = [task.prompts[s.prompt_index].text for s in r.states]
    expected = ReverseReward()(prompts, texts, [s.references for s in r.states])
    np.testing.assert_allclose(r.task_rewards.numpy(), expected, atol=1e-6)


def test_guide_roll_in_ppo_pp() -> None:
    n = 64
    envs, guide = make_envs(n), SpyGuide()
    r = collect(
        envs, CoinLearner(), guide, roll_in_by=RollIn.GUIDE, beta=0.5, rng=np.random.default_rng(0)
    )
    check_layout(r, n)
    check_rewards(envs, r)
    assert 0 < int(r.guided.sum()) < n
    for toks, lmask, k, guided in rows(r):
        assert len(toks) == L  # neither policy ends early
        if guided:
            assert 1 <= k <= L - 1
            assert toks == [H] * k + [A] * (L - k)  # guide's prefix, then π
            assert lmask == [0] * k + [1] * (L - k)  # exactly π's roll-out tokens
        else:
            assert k == 0 and toks == [A] * L and lmask == [1] * L
    # The guide was asked for exactly the k of each guided row, and nothing else.
    assert sorted(guide.asked) == sorted(r.switch[r.guided].tolist())


def test_guide_roll_in_with_early_eos() -> None:
    n = 64
    r = collect(
        make_envs(n), CoinLearner(p_eos=0.25), SpyGuide(), roll_in_by=RollIn.GUIDE, beta=0.5,
        rng=np.random.default_rng(1),
    )  # fmt: skip
    check_layout(r, n)
    assert any(len(t) < L for t, *_ in rows(r))  # some episodes ended early
    for toks, lmask, k, guided in rows(r):
        head = k if guided else 0
        assert toks[:head] == [H] * head and lmask[:head] == [0] * head
        assert set(toks[head:]) <= {A, EOS} and lmask[head:] == [1] * (len(toks) - head)
        assert len(toks) == L or toks[-1] == EOS


def test_learner_roll_in_aggrevated() -> None:
    n = 64
    envs, guide = make_envs(n), SpyGuide()
    r = collect(
        envs, CoinLearner(p_eos=0.1), guide, roll_in_by=RollIn.LEARNER, beta=0.5,
        rng=np.random.default_rng(2),
    )  # fmt: skip
    check_layout(r, n)
    check_rewards(envs, r)
    assert 0 < int(r.guided.sum()) < n
    ended_early = 0
    for toks, lmask, k, guided in rows(r):
        if not guided:  # a plain π episode
            assert k == 0 and set(toks) <= {A, EOS} and lmask == [1] * len(toks)
            continue
        assert 1 <= k <= L - 1
        if EOS in toks[:k]:  # π ended its roll-in: no guide token
            ended_early += 1
            assert toks[-1] == EOS and len(toks) <= k and lmask == [1] * len(toks)
        else:  # π's k roll-in tokens, then the guide's roll-out to the horizon
            assert toks == [A] * k + [H] * (L - k)
            assert lmask == [1] * k + [0] * (L - k)
    assert ended_early > 0
    # The guide finished exactly the guided rows whose roll-in did not end the episode.
    expected = [L - k for toks, _, k, g in rows(r) if g and EOS not in toks[:k]]
    assert sorted(guide.asked) == sorted(expected)


def test_no_roll_in_ppo_is_pure_learner() -> None:
    n = 16
    guide = SpyGuide()
    r = collect(
        make_envs(n), CoinLearner(p_eos=0.2), guide, roll_in_by=RollIn.NONE, beta=1.0,
        rng=np.random.default_rng(3),
    )  # fmt: skip
    check_layout(r, n)
    assert not r.guided.any() and not r.switch.any() and guide.asked == []
    torch.testing.assert_close(r.learner_mask, r.gen_mask)
    # and RollIn.NONE needs no guide
    r = collect(
        make_envs(n), CoinLearner(), None, roll_in_by=RollIn.NONE, beta=0.5,
        rng=np.random.default_rng(3),
    )  # fmt: skip
    torch.testing.assert_close(r.learner_mask, r.gen_mask)


@pytest.mark.parametrize("mode", [RollIn.GUIDE, RollIn.LEARNER])
def test_beta_extremes(mode: RollIn) -> None:
    n = 32
    guide = SpyGuide()
    r0 = collect(
        make_envs(n), CoinLearner(), guide, roll_in_by=mode, beta=0.0, rng=np.random.default_rng(4)
    )
    assert not r0.guided.any() and not r0.switch.any() and guide.asked == []
    torch.testing.assert_close(r0.learner_mask, r0.gen_mask)
    assert bool((r0.tokens == A).all())
    r1 = collect(
        make_envs(n), CoinLearner(), guide, roll_in_by=mode, beta=1.0, rng=np.random.default_rng(4)
    )
    assert r1.guided.all()
    assert bool(((r1.switch >= 1) & (r1.switch <= L - 1)).all())
    lead = r1.tokens[:, 0]  # first token: the roll-in policy's
    assert bool((lead == (H if mode is RollIn.GUIDE else A)).all())


def test_switch_points_cover_1_to_L_minus_1() -> None:
    r = collect(
        make_envs(256), CoinLearner(), SpyGuide(), roll_in_by=RollIn.GUIDE, beta=1.0,
        rng=np.random.default_rng(5),
    )  # fmt: skip
    assert set(r.switch.tolist()) == set(range(1, L))
    counts = np.bincount(r.switch.numpy(), minlength=L)[1:]
    assert counts.min() > 256 / (L - 1) / 3  # roughly uniform, no value starved
    # the number of guide tokens of each row is its k
    torch.testing.assert_close(r.guide_mask.sum(1), r.switch.float())


def tiny_lm_learner(envs: TextGenVectorEnv) -> object:
    ac = ActorCritic(tiny_causal_lm(11, seed=0, **TOY_MODEL))
    return learner_policy(ac, envs.unwrapped.task.tokenizer, TrainConfig(top_k=0))


@pytest.mark.parametrize("mode", [RollIn.NONE, RollIn.GUIDE, RollIn.LEARNER])
def test_reproducible_with_same_seed(mode: RollIn) -> None:
    """A tiny-LM learner and an ε-noisy scripted guide: same seeds, same batch."""

    def once(rng_seed: int) -> Rollout:
        envs = make_envs(16, seed=7)
        learner = tiny_lm_learner(envs)
        guide = ScriptedGuide(reverse_expert, vocab_size=11, epsilon=0.3)
        return collect(
            envs, learner, guide, roll_in_by=mode, beta=0.5, rng=np.random.default_rng(rng_seed)
        )

    a, b, c = once(11), once(11), once(12)
    for name in (
        "input_ids",
        "attention_mask",
        "gen_mask",
        "learner_mask",
        "task_rewards",
        "guided",
        "switch",
    ):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.states == b.states
    assert not torch.equal(a.input_ids, c.input_ids)


def test_expert_guide_roll_in_writes_the_reference_prefix() -> None:
    """With a real LM learner and the ε=0 expert, guided prefixes are the reversed prompt."""
    envs = make_envs(16)
    guide = ScriptedGuide(reverse_expert, vocab_size=11, epsilon=0.0)
    r = collect(
        envs,
        tiny_lm_learner(envs),
        guide,
        roll_in_by=RollIn.GUIDE,
        beta=1.0,
        rng=np.random.default_rng(0),
    )
    check_rewards(envs, r)
    for s, toks, k in zip(r.states, r.tokens, r.switch, strict=True):
        target = [*s.prompt_ids[-2::-1], EOS]  # reversed letters, then EOS
        n = min(int(k), len(target))
        assert toks[:n].tolist() == target[:n]


@pytest.mark.parametrize("mode", [RollIn.GUIDE, RollIn.LEARNER])
def test_guided_modes_need_a_guide(mode: RollIn) -> None:
    with pytest.raises(ValueError, match="needs a guide"):
        collect(
            make_envs(2),
            CoinLearner(),
            None,
            roll_in_by=mode,
            beta=0.5,
            rng=np.random.default_rng(0),
        )


@pytest.mark.parametrize("beta", [-0.1, 1.5, float("nan")])
def test_bad_beta(beta: float) -> None:
    with pytest.raises(ValueError, match="beta must be in"):
        collect(
            make_envs(2),
            CoinLearner(),
            SpyGuide(),
            roll_in_by=RollIn.GUIDE,
            beta=beta,
            rng=np.random.default_rng(0),
        )
