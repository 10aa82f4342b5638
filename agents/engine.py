"""The shared roll-in / roll-out engine (Chang et al., 2023, Alg. 1-3).

One batched routine collects every algorithm's data over the vector env:

1. start states: one fresh prompt per sub-env (``envs.reset()``);
2. per sample, a coin with probability β decides whether it is *guided*; a guided sample
   gets a switch point k ~ U{1..L-1} (:func:`~textgen_env.oracles.sample_switch_points`);
3. the roll-in policy acts for k tokens (:func:`~textgen_env.oracles.roll_in`), the env
   restarts there and the roll-out policy finishes the episode
   (:func:`~textgen_env.oracles.roll_out`); unguided samples are plain π episodes;
4. the env returns final states and task rewards; we keep a mask of the tokens π produced.

``RollIn.GUIDE`` (PPO++): guide rolls in, π rolls out. ``RollIn.LEARNER`` (AggreVaTeD): π
rolls in, the guide rolls out. ``RollIn.NONE`` (PPO): π does everything. π acts through the
same :class:`~textgen_env.guides.GuidePolicy` interface as the guide (an
:class:`~textgen_env.guides.HFGuide` over the policy model: KV-cached sampling, one prefill
per restart, only the tokens asked for).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch

from textgen_env.episodes import states_to_arrays
from textgen_env.guides.base import GuidePolicy
from textgen_env.oracles import roll_in, roll_out, sample_switch_points
from textgen_env.state import TextState
from textgen_env.vector import TextGenVectorEnv

__all__ = ["RollIn", "Rollout", "collect"]


class RollIn(Enum):
    """Who rolls in on a guided sample."""

    NONE = "none"  # PPO: no guided samples
    GUIDE = "guide"  # PPO++: guide rolls in k tokens, π rolls out
    LEARNER = "learner"  # AggreVaTeD: π rolls in k tokens, guide rolls out


@dataclass
class Rollout:
    """A batch of finished episodes, as padded tensors in the env's layout."""

    states: tuple[TextState, ...]
    input_ids: torch.Tensor  # (B, P+G) prompt block left-padded, generation right-padded
    attention_mask: torch.Tensor  # (B, P+G)
    prompt_width: int  # P
    gen_mask: torch.Tensor  # (B, G) 1 on generated tokens
    learner_mask: torch.Tensor  # (B, G) 1 on tokens π produced
    task_rewards: torch.Tensor  # (B,)
    guided: torch.Tensor  # (B,) bool
    switch: torch.Tensor  # (B,) k of guided samples, 0 otherwise
    generation_seconds: float
    reward_seconds: float

    @property
    def tokens(self) -> torch.Tensor:
        """Generated token ids ``(B, G)`` (pad where ``gen_mask`` is 0)."""
        return self.input_ids[:, self.prompt_width :]

    @property
    def guide_mask(self) -> torch.Tensor:
        """``(B, G)`` 1 on tokens the guide produced."""
        return self.gen_mask * (1 - self.learner_mask)


def collect(
    envs: TextGenVectorEnv,
    learner: GuidePolicy,
    guide: GuidePolicy | None,
    *,
    roll_in_by: RollIn,
    beta: float,
    rng: np.random.Generator,
) -> Rollout:
    """Collect ``envs.num_envs`` episodes with the given roll-in choice (see module doc)."""
    if roll_in_by is not RollIn.NONE and guide is None:
        raise ValueError(f"roll-in by {roll_in_by.value} needs a guide")
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    venv = envs.unwrapped
    task = venv.task
    n, horizon = venv.num_envs, task.max_new_tokens
    reward_before = venv.reward_seconds
    t0 = time.perf_counter()

    venv.reset()
    starts = venv.get_states()
    guided = np.zeros(n, dtype=bool) if roll_in_by is RollIn.NONE else rng.random(n) < beta
    k = np.where(guided, sample_switch_points(rng, n, horizon), 0)  # (B,)

    if roll_in_by is RollIn.GUIDE:
        mid = roll_in(venv, guide, starts, k, rng)  # type: ignore[arg-type]
        final, returns = roll_out(venv, learner, mid, rng)
    elif roll_in_by is RollIn.LEARNER:
        # π acts for k tokens on guided samples and for the whole episode otherwise.
        mid = roll_in(venv, learner, starts, np.where(guided, k, horizon), rng)
        final, returns = roll_out(venv, guide, mid, rng)  # type: ignore[arg-type]
    else:
        mid = starts
        final, returns = roll_out(venv, learner, starts, rng)

    arrays = states_to_arrays(task, list(final))
    gen_len = np.array([len(s.generated_ids) for s in final])  # (B,)
    mid_len = np.array([len(s.generated_ids) for s in mid])  # (B,)
    cols = np.arange(horizon)[None, :]  # (1, G)
    gen_mask = cols < gen_len[:, None]  # (B, G)
    if roll_in_by is RollIn.LEARNER:
        learner_mask = cols < mid_len[:, None]  # π's roll-in tokens
    else:
        learner_mask = gen_mask & (cols >= mid_len[:, None])  # π's roll-out tokens
    elapsed = time.perf_counter() - t0
    reward_seconds = venv.reward_seconds - reward_before
    return Rollout(
        states=final,
        input_ids=torch.from_numpy(arrays["input_ids"]),
        attention_mask=torch.from_numpy(arrays["attention_mask"]),
        prompt_width=task.max_prompt_tokens,
        gen_mask=torch.from_numpy(gen_mask.astype(np.float32)),
        learner_mask=torch.from_numpy(learner_mask.astype(np.float32)),
        task_rewards=torch.from_numpy(returns.astype(np.float32)),
        guided=torch.from_numpy(guided),
        switch=torch.from_numpy(k),
        generation_seconds=elapsed - reward_seconds,
        reward_seconds=reward_seconds,
    )
