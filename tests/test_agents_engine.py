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
from agents.aggrevated import guide_roll_out
from agents.build import TOY_MODEL, build_learner
from agents.config import TrainConfig
from agents.engine import Actor, Plan, Rollout, collect
from agents.policy import ActorCritic
from agents.ppo_pp import guide_roll_in
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


PPO, PPO_PP, AGGREVATED = Plan(), guide_roll_in(0.5), guide_roll_out(0.5, 0.95)


class EndingGuide:
    """Writes ``length - 1`` times "h" then EOS, whatever it is asked for (cut to the ask)."""

    def __init__(self, length: int) -> None:
        self.length = length

    def act(
        self, states: Sequence[TextState], num_tokens: Sequence[int], rng: np.random.Generator
    ) -> list[tuple[int, ...]]:
        full = (H,) * (self.length - 1) + (EOS,)
        return [full if k >= self.length else (H,) * int(k) for k in num_tokens]


def rows(r: Rollout) -> list[tuple[list[int], list[int], int, bool]]:
    """Per row: generated tokens, learner mask over them, k, guided."""
    out = []
    for i in range(r.tokens.shape[0]):
        n = int(r.gen_mask[i].sum())
        out.append(
            (
                r.tokens[i, :n].tolist(),
                r.learner_mask[i, :n].int().tolist(),
                int(r.switch_point[i]),
                bool(r.guided[i]),
            )
        )
    return out


def check_layout(r: Rollout, n: int) -> None:
    """Shapes, masks nested, padding after the generated tokens."""
    assert r.input_ids.shape == (n, P + L) and r.attention_mask.shape == (n, P + L)
    assert r.prompt_width == P and r.tokens.shape == (n, L)
    assert r.gen_mask.shape == r.learner_mask.shape == (n, L)
    assert r.gen_mask.dtype == r.learner_mask.dtype == torch.bool
    assert r.task_rewards.shape == r.guided.shape == r.switch_point.shape == (n,)
    assert bool((r.learner_mask <= r.gen_mask).all())
    assert torch.equal(r.guide_mask, r.gen_mask & ~r.learner_mask)
    assert torch.equal(r.attention_mask[:, P:].bool(), r.gen_mask)
    lengths = r.gen_mask.sum(1)
    assert torch.equal(r.gen_mask, torch.arange(L)[None] < lengths[:, None])
    assert r.generation_seconds >= 0 and r.reward_seconds >= 0


def check_rewards(envs: TextGenVectorEnv, r: Rollout) -> None:
    """task_rewards are the Reverse reward of the rows' prompts and completions."""
    task = envs.unwrapped.task
    n = r.gen_mask.sum(1).tolist()
    texts = task.decode([r.tokens[i, : n[i]].tolist() for i in range(len(n))])
    prompts = [task.prompts[int(i)] for i in r.prompt_index]
    expected = ReverseReward()([p.text for p in prompts], texts, [p.references for p in prompts])
    np.testing.assert_allclose(r.task_rewards.numpy(), expected, atol=1e-6)
    prompt_ids = [
        tuple(ids[m].tolist())
        for ids, m in zip(r.input_ids[:, :P], r.attention_mask[:, :P].bool(), strict=True)
    ]
    assert prompt_ids == [task.prompt_ids[int(i)] for i in r.prompt_index]


def test_guide_roll_in_ppo_pp() -> None:
    n = 64
    envs, guide = make_envs(n), SpyGuide()
    r = collect(envs, CoinLearner(), guide, PPO_PP, np.random.default_rng(0))
    check_layout(r, n)
    check_rewards(envs, r)
    assert 0 < int(r.guided.sum()) < n and r.roll_in_resampled == 0
    for toks, lmask, k, guided in rows(r):
        assert len(toks) == L  # neither policy ends early
        if guided:
            assert 1 <= k <= L - 1
            assert toks == [H] * k + [A] * (L - k)  # guide's prefix, then π
            assert lmask == [0] * k + [1] * (L - k)  # exactly π's roll-out tokens
        else:
            assert k == 0 and toks == [A] * L and lmask == [1] * L
    # The guide was asked for exactly the k of each guided row, and nothing else.
    assert sorted(guide.asked) == sorted(r.switch_point[r.guided].tolist())


def test_guide_roll_in_with_early_eos() -> None:
    n = 64
    r = collect(make_envs(n), CoinLearner(p_eos=0.25), SpyGuide(), PPO_PP, np.random.default_rng(1))
    check_layout(r, n)
    assert any(len(t) < L for t, *_ in rows(r))  # some episodes ended early
    for toks, lmask, k, guided in rows(r):
        head = k if guided else 0
        assert toks[:head] == [H] * head and lmask[:head] == [0] * head
        assert set(toks[head:]) <= {A, EOS} and lmask[head:] == [1] * (len(toks) - head)
        assert len(toks) == L or toks[-1] == EOS


@pytest.mark.parametrize("length", [1, 2, 3])
def test_guide_roll_in_that_ends_the_episode_gets_a_shorter_k(length: int) -> None:
    """PPO++ edge case (issue #8): the guide writes EOS before k. The row restarts from the
    guide's own prefix, k' ~ U{1..len-1}, and π finishes it; with only EOS (length 1) it is
    π's own episode. No row is left without π tokens."""
    n = 64
    plan = guide_roll_in(1.0)
    r = collect(make_envs(n), CoinLearner(), EndingGuide(length), plan, np.random.default_rng(2))
    check_layout(r, n)
    assert bool(r.learner_mask.any(1).all())  # every slot trains π
    assert r.roll_in_resampled > 0
    for toks, lmask, k, guided in rows(r):
        assert EOS not in toks  # the guide's EOS never survives
        assert k < length and guided == (k > 0)
        assert toks == [H] * k + [A] * (L - k) and lmask == [0] * k + [1] * (L - k)
    if length == 1:
        assert r.roll_in_resampled == n and not r.guided.any()


def test_learner_roll_in_aggrevated() -> None:
    n = 64
    envs, guide = make_envs(n), SpyGuide()
    r = collect(envs, CoinLearner(p_eos=0.1), guide, AGGREVATED, np.random.default_rng(2))
    check_layout(r, n)
    check_rewards(envs, r)
    assert 0 < int(r.guided.sum()) < n
    for toks, lmask, k, guided in rows(r):
        if not guided:  # π's own episode (unguided, or π ended its roll-in itself)
            assert k == 0 and set(toks) <= {A, EOS} and lmask == [1] * len(toks)
            continue
        assert 1 <= k <= L - 1  # π's k roll-in tokens, then the guide's roll-out
        assert toks == [A] * k + [H] * (L - k)
        assert lmask == [1] * k + [0] * (L - k)
    # The guide finished exactly the guided rows.
    assert sorted(guide.asked) == sorted(L - k for _, _, k, g in rows(r) if g)


def test_learner_roll_in_that_ends_the_episode_is_pis_own() -> None:
    """AggreVaTeD edge case (issue #8): π writes EOS first, the guide writes nothing, so the
    row is π's own episode (V^π baseline), not a guided one."""
    guide = SpyGuide()
    r = collect(make_envs(16), CoinLearner(p_eos=1.0), guide, guide_roll_out(1.0, 0.95),
                np.random.default_rng(3))  # fmt: skip
    assert not r.guided.any() and not r.switch_point.any() and guide.asked == []
    assert torch.equal(r.learner_mask, r.gen_mask) and bool((r.tokens[:, 0] == EOS).all())


def test_no_roll_in_ppo_is_pure_learner() -> None:
    n = 16
    guide = SpyGuide()
    r = collect(make_envs(n), CoinLearner(p_eos=0.2), guide, PPO, np.random.default_rng(3))
    check_layout(r, n)
    assert not r.guided.any() and not r.switch_point.any() and guide.asked == []
    assert torch.equal(r.learner_mask, r.gen_mask)
    # and PPO's plan needs no guide
    r = collect(make_envs(n), CoinLearner(), None, PPO, np.random.default_rng(3))
    assert torch.equal(r.learner_mask, r.gen_mask)


@pytest.mark.parametrize("roll_in", [Actor.GUIDE, Actor.LEARNER])
def test_beta_extremes(roll_in: Actor) -> None:
    n = 32
    guide = SpyGuide()
    plan = guide_roll_in if roll_in is Actor.GUIDE else lambda b: guide_roll_out(b, 0.95)
    r0 = collect(make_envs(n), CoinLearner(), guide, plan(0.0), np.random.default_rng(4))
    assert not r0.guided.any() and not r0.switch_point.any() and guide.asked == []
    assert torch.equal(r0.learner_mask, r0.gen_mask)
    assert bool((r0.tokens == A).all())
    r1 = collect(make_envs(n), CoinLearner(), guide, plan(1.0), np.random.default_rng(4))
    assert r1.guided.all()
    assert bool(((r1.switch_point >= 1) & (r1.switch_point <= L - 1)).all())
    lead = r1.tokens[:, 0]  # first token: the roll-in policy's
    assert bool((lead == (H if roll_in is Actor.GUIDE else A)).all())


def test_switch_points_cover_1_to_L_minus_1() -> None:
    r = collect(make_envs(256), CoinLearner(), SpyGuide(), guide_roll_in(1.0),
                np.random.default_rng(5))  # fmt: skip
    assert set(r.switch_point.tolist()) == set(range(1, L))
    counts = np.bincount(r.switch_point.numpy(), minlength=L)[1:]
    assert counts.min() > 256 / (L - 1) / 3  # roughly uniform, no value starved
    # the number of guide tokens of each row is its k
    assert torch.equal(r.guide_mask.sum(1), r.switch_point)


def tiny_lm_learner(envs: TextGenVectorEnv) -> object:
    ac = ActorCritic(tiny_causal_lm(11, seed=0, **TOY_MODEL))
    return build_learner(ac, envs.unwrapped.task.tokenizer, TrainConfig(top_k=0))


@pytest.mark.parametrize("plan", [PPO, PPO_PP, AGGREVATED])
def test_reproducible_with_same_seed(plan: Plan) -> None:
    """A tiny-LM learner and an ε-noisy scripted guide: same seeds, same batch."""

    def once(rng_seed: int) -> Rollout:
        envs = make_envs(16, seed=7)
        learner = tiny_lm_learner(envs)
        guide = ScriptedGuide(reverse_expert, vocab_size=11, epsilon=0.3)
        return collect(envs, learner, guide, plan, np.random.default_rng(rng_seed))

    a, b, c = once(11), once(11), once(12)
    for name in ("input_ids", "attention_mask", "gen_mask", "learner_mask", "task_rewards",
                 "switch_point"):  # fmt: skip
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert np.array_equal(a.prompt_index, b.prompt_index)
    assert not torch.equal(a.input_ids, c.input_ids)


def test_expert_guide_roll_in_writes_the_reference_prefix() -> None:
    """With a real LM learner and the ε=0 expert, guided prefixes are the reversed prompt."""
    envs = make_envs(16)
    guide = ScriptedGuide(reverse_expert, vocab_size=11, epsilon=0.0)
    r = collect(envs, tiny_lm_learner(envs), guide, guide_roll_in(1.0), np.random.default_rng(0))
    check_rewards(envs, r)
    task = envs.unwrapped.task
    for i, toks, k in zip(r.prompt_index, r.tokens, r.switch_point, strict=True):
        target = [*task.prompt_ids[int(i)][-2::-1], EOS]  # reversed letters, then EOS
        n = min(int(k), len(target))
        assert toks[:n].tolist() == target[:n]


@pytest.mark.parametrize("plan", [PPO_PP, AGGREVATED])
def test_guided_plans_need_a_guide(plan: Plan) -> None:
    with pytest.raises(ValueError, match="needs a guide"):
        collect(make_envs(2), CoinLearner(), None, plan, np.random.default_rng(0))


@pytest.mark.parametrize("beta", [-0.1, 1.5, float("nan")])
def test_bad_beta(beta: float) -> None:
    with pytest.raises(ValueError, match="beta must be in"):
        guide_roll_in(beta)


def test_a_plan_leaves_pi_tokens() -> None:
    with pytest.raises(ValueError, match="leaves π no token"):
        Plan(roll_in=Actor.GUIDE, roll_out=Actor.GUIDE, beta=0.5)
