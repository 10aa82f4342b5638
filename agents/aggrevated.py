"""AggreVaTeD (Sun et al., 2017; Chang et al., 2023, §4.2): π roll-in, guide roll-out.

With probability β a sample is **rolled in by π** for k ~ U{1..L-1} tokens and **rolled out
by the guide**: the guide's completion tells π how good its prefix was. π is updated only on
its own roll-in tokens, with GAE advantages that bootstrap from a value estimate of the
guide's policy, trained on the guide's tokens. Otherwise the sample is a plain π episode
(PPO on all its tokens). The KL penalty applies to π's tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.config import _unit
from agents.engine import RollIn
from agents.ppo import Plan, PPOConfig

__all__ = ["AggreVaTeDConfig", "plan"]


@dataclass
class AggreVaTeDConfig(PPOConfig):
    """AggreVaTeD settings."""

    beta: float = 0.8
    """Probability β that a sample is rolled out by the guide (paper: 0.8)."""
    guide_epsilon: float = 0.3
    """Toy tasks only: ε-noise of the scripted guide (0 = optimal expert)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _unit(self, "beta", "guide_epsilon")


def plan(cfg: AggreVaTeDConfig, iteration: int, rng: np.random.Generator) -> Plan:
    """Guided samples are rolled in by π and rolled out by the guide."""
    return Plan(roll_in_by=RollIn.LEARNER, beta=cfg.beta, value_on_guide_tokens=True)
