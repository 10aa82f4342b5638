"""The roll-in / roll-out engine: who writes which tokens of each episode (Chang et al., 2023,
Alg. 1-3), and the :class:`Rollout` the update trains on.

A :class:`Plan` says, for one iteration, who **rolls in** and who **rolls out** a guided
sample, the probability β that a sample is guided, and which value output is the baseline of
guided rows. :func:`collect` then runs one batch over the vector env:

1. start states: a fresh prompt per sub-env;
2. a coin with probability β marks each sample guided; a guided sample gets a switch point
   k ~ U{1..L-1} (:func:`~textgen_env.oracles.sample_switch_points`);
3. roll-in: the roll-in policy writes the first k tokens (:func:`~textgen_env.oracles.roll_in`);
4. roll-out: the env restarts there and the roll-out policy finishes the episode
   (:func:`~textgen_env.oracles.roll_out`); an unguided sample is π's alone;
5. the finished episodes are read from the env's arrays (already the training layout), with
   a mask of the tokens π wrote and the env's task rewards.

PPO: π rolls in and out (β = 0). PPO++: the guide rolls in, π rolls out. AggreVaTeD: π rolls
in, the guide rolls out. Edge cases (issue #8): when the *guide's* roll-in ends the episode
(EOS before k), π would get no token; the row's switch point is resampled on the guide's own
tokens, k' ~ U{1..len-1} (the guide's first k' tokens are a k'-token roll-in of the guide, so
no new guide call is needed), or the row becomes π's own episode when the guide wrote only
EOS. Such rows are counted in :attr:`Rollout.roll_in_resampled`. When *π's* roll-in ends the
episode, the guide writes nothing: the row is π's own episode and uses V^π.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch

from agents.policy import GUIDE, PI
from textgen_env.guides.base import GuidePolicy
from textgen_env.oracles import roll_in, roll_out, sample_switch_points
from textgen_env.vector import TextGenVectorEnv

__all__ = ["Actor", "Plan", "Rollout", "collect"]


class Actor(Enum):
    """Who writes a stretch of an episode."""

    LEARNER = "learner"  # π, the policy being trained
    GUIDE = "guide"  # the guide policy


@dataclass(frozen=True)
class Plan:
    """How one iteration collects its samples (see the module doc)."""

    roll_in: Actor = Actor.LEARNER
    """Who writes the first k tokens of a guided sample."""
    roll_out: Actor = Actor.LEARNER
    """Who finishes a guided sample after the switch point k."""
    beta: float = 0.0
    """Probability β that a sample is guided (the others are π's own episodes)."""
    guided_baseline: int = PI
    """Value output that is the GAE baseline of guided rows, and that their guide-written
    tokens train: ``PI`` (V^π) or ``GUIDE`` (V^g, AggreVaTeD). π's own rows always use V^π."""
    guided_gae_lambda: float | None = None
    """GAE λ of guided rows (``None``: the config's ``gae_lambda``)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {self.beta!r}")
        if self.roll_in is Actor.GUIDE and self.roll_out is Actor.GUIDE:
            raise ValueError("a plan where the guide rolls in and out leaves π no token")
        if self.guided_baseline not in (PI, GUIDE):
            raise ValueError(f"guided_baseline must be PI or GUIDE, got {self.guided_baseline!r}")
        if self.guided_gae_lambda is not None and not 0.0 <= self.guided_gae_lambda <= 1.0:
            raise ValueError(f"guided_gae_lambda must be in [0, 1], got {self.guided_gae_lambda}")

    @property
    def uses_guide(self) -> bool:
        """Whether the guide writes any part of a guided sample."""
        return Actor.GUIDE in (self.roll_in, self.roll_out)


@dataclass
class Rollout:
    """A batch of finished episodes in the env's layout (CPU tensors)."""

    plan: Plan
    """The plan the batch was collected under."""
    input_ids: torch.Tensor  # (B, P+G) prompt block left-padded, generation block right-padded
    attention_mask: torch.Tensor  # (B, P+G)
    prompt_width: int  # P
    gen_mask: torch.Tensor  # (B, G) bool: generated tokens
    learner_mask: torch.Tensor  # (B, G) bool: tokens π wrote
    task_rewards: torch.Tensor  # (B,) float32, from the env
    switch_point: torch.Tensor  # (B,) int64: k where the writer changed, 0 if π wrote all
    prompt_index: np.ndarray  # (B,) the task prompt of each row
    roll_in_resampled: int
    """Guided rows whose guide roll-in ended the episode and got a shorter k (or none)."""
    generation_seconds: float
    reward_seconds: float

    @property
    def tokens(self) -> torch.Tensor:
        """Generated token ids ``(B, G)`` (padding where ``gen_mask`` is 0)."""
        return self.input_ids[:, self.prompt_width :]

    @property
    def guide_mask(self) -> torch.Tensor:
        """``(B, G)`` bool: tokens the guide wrote."""
        return self.gen_mask & ~self.learner_mask

    @property
    def guided(self) -> torch.Tensor:
        """``(B,)`` bool: rows the guide wrote part of."""
        return self.guide_mask.any(dim=1)


def collect(
    envs: TextGenVectorEnv,
    learner: GuidePolicy,
    guide: GuidePolicy | None,
    plan: Plan,
    rng: np.random.Generator,
) -> Rollout:
    """Collect ``envs.num_envs`` episodes under ``plan`` (see the module doc).

    ``learner`` writes π's tokens (for behaviour cloning: the demonstrator); ``guide`` the
    guide's, and may be ``None`` when the plan never asks it.
    """
    if plan.uses_guide and guide is None:
        raise ValueError(f"a plan where the guide rolls {_guide_role(plan)} needs a guide")
    venv = envs.unwrapped
    task = venv.task
    n, horizon, width = venv.num_envs, task.max_new_tokens, task.max_prompt_tokens
    writers = {Actor.LEARNER: learner, Actor.GUIDE: guide}
    reward_before = venv.reward_seconds
    t0 = time.perf_counter()

    # 1. start states: one fresh prompt per sub-env
    venv.reset()
    starts = venv.get_states()
    # 2. guided samples (coin β) and their switch points k ~ U{1..L-1}
    guided = rng.random(n) < plan.beta if plan.uses_guide else np.zeros(n, dtype=bool)
    k = np.where(guided, sample_switch_points(rng, n, horizon), 0)  # (B,)
    resampled = 0
    if plan.uses_guide:
        # 3. roll-in: k tokens on guided rows; π writes unguided rows whole when it rolls in
        roll_in_k = np.where(guided, k, 0 if plan.roll_in is Actor.GUIDE else horizon)
        mid = list(roll_in(venv, writers[plan.roll_in], starts, roll_in_k, rng))
        if plan.roll_in is Actor.GUIDE:  # the guide's roll-in ended the episode: shorter k
            ended = [i for i in np.flatnonzero(guided) if task.is_terminal(mid[i])]
            for i in ended:
                written = mid[i].generated_ids
                k_new = int(rng.integers(1, len(written))) if len(written) > 1 else 0
                mid[i] = dataclasses.replace(mid[i], generated_ids=written[:k_new])
            resampled = len(ended)
    else:
        mid = list(starts)
    # 4. roll-out: the roll-out policy finishes every episode
    final, returns = roll_out(venv, writers[plan.roll_out], mid, rng)

    # 5. the finished episodes, from the env's arrays
    obs = venv.observation()
    gen_mask = obs["attention_mask"][:, width:].astype(bool)  # (B, G)
    if not np.array_equal(gen_mask.sum(1), [len(s.generated_ids) for s in final]):
        raise RuntimeError("the env's sub-envs do not hold the rolled-out episodes")
    mid_len = np.array([len(s.generated_ids) for s in mid])  # (B,)
    before_switch = np.arange(horizon)[None, :] < mid_len[:, None]  # (B, G)
    by_learner = np.where(
        before_switch, plan.roll_in is Actor.LEARNER, plan.roll_out is Actor.LEARNER
    )  # (B, G)
    learner_mask = gen_mask & by_learner  # (B, G)
    switch_point = np.where((gen_mask & ~learner_mask).any(1), mid_len, 0)  # (B,)
    reward_seconds = venv.reward_seconds - reward_before
    return Rollout(
        plan=plan,
        input_ids=torch.from_numpy(obs["input_ids"]),
        attention_mask=torch.from_numpy(obs["attention_mask"]),
        prompt_width=width,
        gen_mask=torch.from_numpy(gen_mask),
        learner_mask=torch.from_numpy(learner_mask),
        task_rewards=torch.from_numpy(returns.astype(np.float32)),
        switch_point=torch.from_numpy(switch_point),
        prompt_index=np.array([s.prompt_index for s in final]),
        roll_in_resampled=resampled,
        generation_seconds=time.perf_counter() - t0 - reward_seconds,
        reward_seconds=reward_seconds,
    )


def _guide_role(plan: Plan) -> str:
    return "in" if plan.roll_in is Actor.GUIDE else "out"
