"""Stable-Baselines3 PPO learns the Positive toy task through the registered Gymnasium id."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
from stable_baselines3 import PPO

import textgen_env  # noqa: F401  (registers the ids)
from textgen_env.tasks.toy import positive_optimal_return

ENV_ID = "textgen_env/Positive-v0"
EVAL_EPISODES = 50


def mean_return(policy: Callable[[dict[str, np.ndarray]], int], seed: int) -> float:
    """Mean return of ``policy`` over :data:`EVAL_EPISODES` seeded episodes.

    Args:
        policy: Maps an observation to a token id.
        seed: Episode ``k`` is reset with ``seed + k``.

    Returns:
        The average undiscounted episode return.
    """
    env = gym.make(ENV_ID)
    returns = []
    for k in range(EVAL_EPISODES):
        obs, _ = env.reset(seed=seed + k)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def test_ppo_beats_random_policy() -> None:
    """Brief PPO training (4096 steps) clearly beats a seeded uniform random policy.

    Over PPO seeds 0-9 (same settings, single-threaded, 3-4 s each) the deterministic policy
    scored 0.32-0.59 (optimum 0.75) against -0.01-0.04 for the random policy, so a margin of
    0.15 leaves room while still meaning "learned something".
    """
    model = PPO(
        "MultiInputPolicy",
        gym.make(ENV_ID),
        seed=0,
        n_steps=256,
        batch_size=64,
        n_epochs=4,
        learning_rate=3e-3,
        gamma=1.0,
        device="cpu",
        verbose=0,
    )
    model.learn(total_timesteps=4096)

    action_space = gym.make(ENV_ID).action_space
    action_space.seed(0)
    random_score = mean_return(lambda _obs: int(action_space.sample()), seed=1000)
    ppo_score = mean_return(lambda obs: int(model.predict(obs, deterministic=True)[0]), seed=1000)
    assert random_score < 0.2
    assert ppo_score > random_score + 0.15, (ppo_score, random_score)
    assert ppo_score <= positive_optimal_return() + 1e-9
