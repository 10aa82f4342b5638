"""Every registered ``textgen_env/`` id: API checkers, vector entry point, seeding, restarts.

The ids are read from the Gymnasium registry, so environments registered later are covered
automatically. Warnings raised by the Gymnasium and Stable-Baselines3 checkers are turned into
errors: a registered env is expected to pass both without a single complaint.
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.vector import AutoresetMode, VectorEnv
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import textgen_env  # noqa: F401  (registers the ids)
from textgen_env.env import TextGenEnv
from textgen_env.vector import TextGenVectorEnv

ENV_IDS = [k for k in gym.registry if k.startswith("textgen_env/")]


def rollout_record(env: gym.Env, seed: int, actions: np.ndarray) -> list[Any]:
    """Reset with ``seed`` once, then play ``actions``, resetting (unseeded) after each episode.

    Args:
        env: The env to drive.
        seed: Seed of the first reset.
        actions: The token sequence to play.

    Returns:
        A flat record of every observation, reward and flag, comparable with ``==``.
    """
    obs, info = env.reset(seed=seed)
    record: list[Any] = [obs["input_ids"].tolist(), obs["attention_mask"].tolist(), info]
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(int(a))
        record += [obs["input_ids"].tolist(), float(reward), terminated, truncated]
        if terminated or truncated:
            obs, info = env.reset()
            record += [obs["input_ids"].tolist(), info]
    return record


def non_eos_actions(env: gym.Env, n: int, seed: int) -> list[int]:
    """``n`` random token ids that are not EOS (so an episode does not end early)."""
    task = env.unwrapped.task
    rng = np.random.default_rng(seed)
    tokens = rng.integers(task.vocab_size, size=4 * n + 8)
    return [int(t) for t in tokens if t != task.eos_token_id][:n]


def test_toy_ids_are_registered() -> None:
    """The two toy tasks are in the registry with a native vector entry point."""
    assert {"textgen_env/Reverse-v0", "textgen_env/Positive-v0"} <= set(ENV_IDS)
    for env_id in ENV_IDS:
        assert gym.spec(env_id).vector_entry_point is not None


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_env_checker(env_id: str) -> None:
    """``gymnasium.utils.env_checker.check_env`` passes on the unwrapped env, warning-free."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make(env_id)
        gym_check_env(env.unwrapped)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sb3_env_checker(env_id: str) -> None:
    """Stable-Baselines3's ``check_env`` passes on the made env, warning-free."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(gym.make(env_id))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_make_vec_vector_entry_point(env_id: str) -> None:
    """``make_vec(..., "vector_entry_point")`` builds a native vector env matching the single."""
    single = gym.make(env_id)
    envs = gym.make_vec(env_id, num_envs=4, vectorization_mode="vector_entry_point")
    assert isinstance(envs, VectorEnv) and isinstance(envs.unwrapped, TextGenVectorEnv)
    assert envs.num_envs == 4
    assert envs.single_action_space == single.action_space
    assert envs.single_observation_space == single.observation_space
    obs, info = envs.reset(seed=0)
    assert obs in envs.observation_space
    assert info["prompt_index"].shape == (4,)
    envs.action_space.seed(0)
    for _ in range(12):
        obs, rewards, terminated, truncated, _ = envs.step(envs.action_space.sample())
        assert obs in envs.observation_space
        assert rewards.shape == terminated.shape == truncated.shape == (4,)
    envs.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_make_vec_autoreset_mode_kwarg(env_id: str) -> None:
    """Keyword arguments reach the vector entry point (here ``autoreset_mode``)."""
    envs = gym.make_vec(
        env_id,
        num_envs=2,
        vectorization_mode="vector_entry_point",
        autoreset_mode=AutoresetMode.DISABLED,
    )
    assert envs.metadata["autoreset_mode"] == AutoresetMode.DISABLED


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_seeded_rollouts_are_reproducible(env_id: str) -> None:
    """Same seed and actions give the same observations, rewards and flags; seeds differ."""
    env = gym.make(env_id)
    actions = np.random.default_rng(1).integers(env.action_space.n, size=60)
    first = rollout_record(env, 7, actions)
    assert rollout_record(env, 7, actions) == first
    assert rollout_record(gym.make(env_id), 7, actions) == first  # a fresh instance too
    prompts = {gym.make(env_id).reset(seed=s)[1]["prompt_index"] for s in range(10)}
    assert len(prompts) > 1, "ten different seeds all drew the same prompt"


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_seeded_vector_rollouts_are_reproducible(env_id: str) -> None:
    """The native vector env is reproducible under a seed, autoresets included."""

    def record(seed: int) -> list[Any]:
        envs = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point")
        actions = np.random.default_rng(2).integers(envs.single_action_space.n, size=(30, 3))
        obs, info = envs.reset(seed=seed)
        out: list[Any] = [obs["input_ids"].tolist(), info["prompt_index"].tolist()]
        for a in actions:
            obs, rewards, terminated, truncated, _ = envs.step(a)
            out += [obs["input_ids"].tolist(), rewards.tolist(), terminated.tolist()]
            out += [truncated.tolist()]
        return out

    assert record(3) == record(3)
    assert record(3) != record(4)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_restart_from_mid_episode_state(env_id: str) -> None:
    """``reset(options={"state": s})`` then the same actions replays the episode exactly."""
    env = gym.make(env_id)
    unwrapped: TextGenEnv = env.unwrapped
    horizon = unwrapped.task.max_new_tokens
    for trial in range(5):
        env.reset(seed=trial)
        prefix = non_eos_actions(env, min(2, horizon - 1), seed=trial)
        obs = None
        for a in prefix:
            obs, *_ = env.step(a)
        state = unwrapped.get_state()
        rng = np.random.default_rng(100 + trial)
        actions = rng.integers(unwrapped.task.vocab_size, size=horizon)

        def play(actions: np.ndarray) -> list[Any]:
            out: list[Any] = []
            for a in actions:
                o, r, term, trunc, _ = env.step(int(a))
                out += [o["input_ids"].tolist(), o["attention_mask"].tolist(), r, term, trunc]
                if term or trunc:
                    return out
            raise AssertionError("episode did not end within max_new_tokens steps")

        first = play(actions)
        restarted, _ = env.reset(options={"state": state})
        assert unwrapped.get_state() == state
        if obs is not None:
            np.testing.assert_array_equal(restarted["input_ids"], obs["input_ids"])
            np.testing.assert_array_equal(restarted["attention_mask"], obs["attention_mask"])
        assert play(actions) == first


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_prompt_index_option(env_id: str) -> None:
    """``reset(options={"prompt_index": i})`` starts prompt ``i`` with nothing generated."""
    env = gym.make(env_id)
    task = env.unwrapped.task
    for i in sorted({0, 1, task.num_prompts // 2, task.num_prompts - 1}):
        obs, info = env.reset(options={"prompt_index": i})
        state = env.unwrapped.get_state()
        assert info["prompt_index"] == state.prompt_index == i
        assert state.generated_ids == ()
        assert state.prompt_ids == task.prompt_ids[i]
        n = len(task.prompt_ids[i])
        width = task.max_prompt_tokens
        assert obs["input_ids"][width - n : width].tolist() == list(task.prompt_ids[i])
