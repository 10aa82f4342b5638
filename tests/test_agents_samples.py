"""The TensorBoard table of sample completions (agents.samples)."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np

import textgen_env  # noqa: F401  (registers the ids)
from agents.engine import Plan, collect
from agents.ppo_pp import guide_roll_in
from agents.samples import samples_table
from textgen_env.state import TextState

A, H = 2, 9  # "a" and "h" in the Reverse tokenizer


class Const:
    def __init__(self, token: int) -> None:
        self.token = token

    def act(
        self, states: Sequence[TextState], num_tokens: Sequence[int], rng: np.random.Generator
    ) -> list[tuple[int, ...]]:
        return [(self.token,) * int(k) for k in num_tokens]


def test_samples_table_names_who_wrote_what() -> None:
    envs = gym.make_vec(
        "textgen_env/Reverse-v0", num_envs=8, vectorization_mode="vector_entry_point"
    )
    envs.reset(seed=0)
    r = collect(envs, Const(A), Const(H), guide_roll_in(0.5), np.random.default_rng(0))
    table = samples_table(envs.unwrapped.task, r, num_rows=8).splitlines()
    assert table[0].startswith("| prompt |") and len(table) == 2 + 8
    task = envs.unwrapped.task
    for row, line in enumerate(table[2:]):
        k = int(r.switch_point[row])
        prompt = task.prompts[int(r.prompt_index[row])].text
        assert line.startswith(f"| {prompt} |")
        if k:  # the guide's "h" × k, then π's "a"s
            assert f"**guide**: {'h' * k} ‖ **π**: {'a' * (8 - k)} | {k} |" in line
        else:
            assert f"**π**: {'a' * 8} | — |" in line
    assert samples_table(task, collect(envs, Const(A), None, Plan(), np.random.default_rng(0)), 3)
