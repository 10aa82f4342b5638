"""Roll-in / roll-out oracles: tokens come from the guide, returns from the env, atomic errors."""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import pytest

import textgen_env
from textgen_env.errors import GuideError
from textgen_env.oracles import roll_in, roll_out, sample_switch_points
from textgen_env.tasks.toy import ReverseReward, reverse_expert
from textgen_env.vector import TextGenVectorEnv

EOS = 1
H = 9  # the letter "h" in the Reverse tokenizer: a token the learner would rarely pick


def make_envs(n: int = 4) -> TextGenVectorEnv:
    return gym.make_vec(
        "textgen_env/Reverse-v0", num_envs=n, vectorization_mode="vector_entry_point"
    )


class SpyGuide:
    """Always proposes ``token``; records what it was asked for."""

    def __init__(self, token: int = H) -> None:
        self.token = token
        self.calls: list[tuple[list, list[int]]] = []

    def act(self, states, num_tokens, rng):
        self.calls.append((list(states), list(num_tokens)))
        return [(self.token,) * k for k in num_tokens]


class ExpertGuide:
    def act(self, states, num_tokens, rng):
        out = []
        for s, k in zip(states, num_tokens, strict=True):
            seq: list[int] = []
            while len(seq) < k and (not seq or seq[-1] != EOS):
                seq.append(reverse_expert(s.extend(seq)))
            out.append(tuple(seq))
        return out


def start_states(envs: TextGenVectorEnv, seed: int = 0):
    envs.reset(seed=seed)
    return envs.get_states()


def snapshot(envs: TextGenVectorEnv):
    obs = envs.unwrapped._episodes.observation()
    return envs.get_states(), obs["input_ids"], envs.unwrapped.done


def assert_unchanged(envs, before) -> None:
    states, ids, done = snapshot(envs)
    assert states == before[0]
    np.testing.assert_array_equal(ids, before[1])
    np.testing.assert_array_equal(done, before[2])


def test_sample_switch_points_uniform_on_1_to_L_minus_1() -> None:
    k = sample_switch_points(np.random.default_rng(0), 20_000, 8)
    assert k.min() == 1 and k.max() == 7
    counts = np.bincount(k, minlength=8)[1:]
    assert np.all(np.abs(counts / len(k) - 1 / 7) < 0.01)
    with pytest.raises(ValueError, match="horizon"):
        sample_switch_points(np.random.default_rng(0), 3, 1)


def test_roll_in_tokens_come_from_the_guide() -> None:
    envs = make_envs()
    states = start_states(envs)
    guide = SpyGuide()
    k = np.array([1, 3, 0, 5])
    new = roll_in(envs, guide, states, k)
    # The guide was asked only for the rows with k > 0, for exactly k tokens.
    ((asked_states, asked_k),) = guide.calls
    assert asked_k == [1, 3, 5]
    assert asked_states == [states[0], states[1], states[3]]
    for s0, s1, ki in zip(states, new, k, strict=True):
        assert s1.prompt_ids == s0.prompt_ids
        assert s1.generated_ids == (H,) * ki  # exactly the guide's tokens, nothing else
    # The env now holds the rolled-in states (it is the source of truth).
    assert envs.get_states()[1] == new[1]


def test_roll_in_caps_k_at_the_horizon_and_passes_terminal_states() -> None:
    envs = make_envs(2)
    s = start_states(envs)
    guide = SpyGuide()
    new = roll_in(envs, guide, s, np.array([100, 2]))
    assert len(new[0].generated_ids) == 8  # max_new_tokens
    done = new[0]
    again = roll_in(envs, guide, [done, new[1]], np.array([3, 0]))
    assert again == (done, new[1])
    assert len(guide.calls) == 1  # not asked for terminal states or k == 0


def test_roll_out_returns_match_reward_and_finish_episodes() -> None:
    envs = make_envs()
    states = start_states(envs, seed=3)
    final, returns = roll_out(envs, ExpertGuide(), states)
    assert np.allclose(returns, 1.0)  # the expert is optimal on Reverse
    for s in final:
        assert envs.unwrapped.task.is_terminal(s)
    # Returns are the task reward of the decoded text.
    texts = envs.unwrapped.task.decode([s.generated_ids for s in final])
    refs = [s.references for s in final]
    np.testing.assert_allclose(returns, ReverseReward()([""] * 4, texts, refs))


def test_roll_in_then_roll_out_restarts_from_the_roll_in_state() -> None:
    envs = make_envs()
    states = start_states(envs, seed=5)
    mid = roll_in(envs, SpyGuide(), states, np.array([2, 2, 2, 2]))
    final, returns = roll_out(envs, ExpertGuide(), mid)
    for m, f in zip(mid, final, strict=True):
        assert f.generated_ids[:2] == (H, H)
        assert f.generated_ids[: len(m.generated_ids)] == m.generated_ids
    assert np.all(returns < 1.0 + 1e-12)


def test_roll_out_scores_terminal_states_without_the_guide() -> None:
    envs = make_envs(2)
    states = start_states(envs)
    final, r1 = roll_out(envs, ExpertGuide(), states)
    spy = SpyGuide()
    again, r2 = roll_out(envs, spy, final)
    assert again == final and not spy.calls
    np.testing.assert_allclose(r1, r2)


def test_fewer_states_than_envs_uses_the_first_sub_envs() -> None:
    envs = make_envs(4)
    states = start_states(envs)
    before = envs.get_states()
    new = roll_in(envs, SpyGuide(), states[:2], np.array([1, 1]))
    after = envs.get_states()
    assert after[:2] == new and after[2:] == before[2:]


class BadGuide:
    def __init__(self, fn) -> None:
        self.fn = fn

    def act(self, states, num_tokens, rng):
        return self.fn(states, num_tokens)


def _raise(states, k):
    raise RuntimeError("API down")


def _sleepy(states, k):
    time.sleep(0)
    raise TimeoutError("took too long")


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (_raise, "raised RuntimeError: API down"),
        (_sleepy, "raised TimeoutError"),
        (lambda s, k: [(H,) * x for x in k][:-1], "must return"),
        (lambda s, k: "abc", "must return"),
        (lambda s, k: [(H,) * (x + 1) for x in k], "asked for"),
        (lambda s, k: [(H,) * (x - 1) for x in k], "asked for"),
        (lambda s, k: [(99,) * x for x in k], "outside"),
        (lambda s, k: [(-1,) * x for x in k], "outside"),
        (lambda s, k: [(1.5,) * x for x in k], "not token ids"),
        (lambda s, k: [(EOS,) + (H,) * (x - 1) for x in k], "after EOS"),
    ],
)
def test_bad_guides_raise_guide_error_and_leave_env_unchanged(fn, match) -> None:
    envs = make_envs(3)
    states = start_states(envs)
    envs.step(np.array([2, 3, 4]))  # move the env somewhere else than `states`
    before = snapshot(envs)
    for call in (
        lambda: roll_in(envs, BadGuide(fn), states, np.array([2, 3, 2])),
        lambda: roll_out(envs, BadGuide(fn), states),
    ):
        with pytest.raises(GuideError, match=match):
            call()
        assert_unchanged(envs, before)


def test_failing_reward_during_roll_out_leaves_env_unchanged() -> None:
    from textgen_env.tasks.toy import _reverse_kwargs

    calls = {"n": 0}

    def flaky_reward(prompts, completions, references):
        calls["n"] += 1
        raise RuntimeError("reward server down")

    kwargs = _reverse_kwargs("train") | {"reward_fn": flaky_reward}
    envs = TextGenVectorEnv(2, **kwargs)
    envs.reset(seed=0)
    envs.step(np.array([2, 3]))
    before = snapshot(envs)
    states = before[0]
    with pytest.raises(RuntimeError, match="reward server down"):
        roll_out(envs, ExpertGuide(), states)
    assert calls["n"] == 1
    assert_unchanged(envs, before)


def test_bad_states_are_rejected_before_the_guide_is_called() -> None:
    envs = make_envs(2)
    states = start_states(envs)
    spy = SpyGuide()
    other = gym.make_vec(
        "textgen_env/Positive-v0", num_envs=2, vectorization_mode="vector_entry_point"
    )
    other.reset(seed=0)
    with pytest.raises(textgen_env.InvalidStateError, match="task"):
        roll_in(envs, spy, other.get_states(), np.array([1, 1]))
    with pytest.raises(ValueError, match="num_tokens"):
        roll_in(envs, spy, states, np.array([1, -1]))
    with pytest.raises(ValueError, match="num_tokens"):
        roll_in(envs, spy, states, [1.0, 2.0])
    with pytest.raises(ValueError, match="states"):
        roll_out(envs, spy, list(states) * 2)
    with pytest.raises(TypeError, match="TextGenVectorEnv"):
        roll_out(gym.make("textgen_env/Reverse-v0"), spy, states)
    assert not spy.calls


def test_oracles_are_reproducible_with_a_seeded_rng() -> None:
    class RandomGuide:
        def act(self, states, num_tokens, rng):
            return [tuple(int(t) for t in rng.integers(2, 10, size=k)) for k in num_tokens]

    envs = make_envs()
    states = start_states(envs)
    a = roll_out(envs, RandomGuide(), states, np.random.default_rng(1))
    b = roll_out(envs, RandomGuide(), states, np.random.default_rng(1))
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])


def test_roll_out_reuses_the_reward_of_episodes_that_ended_in_the_roll_in() -> None:
    """π finishing during its roll-in (AggreVaTeD's unguided samples) is scored once."""
    from textgen_env.tasks.toy import _reverse_kwargs

    texts: list[str] = []

    def counting_reward(prompts, completions, references):
        texts.extend(completions)
        return ReverseReward()(prompts, completions, references)

    envs = TextGenVectorEnv(4, **(_reverse_kwargs("train") | {"reward_fn": counting_reward}))
    envs.reset(seed=0)
    starts = envs.get_states()
    ended = roll_in(envs, ExpertGuide(), starts, np.array([8, 8, 1, 1]))  # rows 0, 1 finish
    assert len(texts) == 2
    final, returns = roll_out(envs, ExpertGuide(), ended)
    assert len(texts) == 4  # only rows 2 and 3 were scored again
    np.testing.assert_allclose(returns, 1.0)
    # A terminal state the env does not hold (another row's) is still scored.
    _, again = roll_out(envs, ExpertGuide(), [final[1], final[0]])
    assert len(texts) == 6
    np.testing.assert_allclose(again, 1.0)
