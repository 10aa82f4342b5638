"""PPO++ (Chang et al., 2023, §4.1): guide roll-in, π roll-out.

With probability β a sample is **rolled in by the guide** for k ~ U{1..L-1} tokens, the env
restarts there and **π rolls out** to the end; otherwise it is a plain π episode. The guide's
prefix acts as a better restart distribution. Policy and value losses use only π's tokens
(the KL penalty too); everything else is PPO (:mod:`agents.ppo`).

β defaults to 0.2, the value in the paper's hyper-parameter table for IMDB; TRIL's released
config uses 0.6. We follow the paper because its reported numbers are what users compare to;
pass ``--beta 0.6`` to reproduce TRIL's runs. The choice matters where exploration is hard:
on Twist-v0 (``benchmarks/learning_toy.py``) β = 0.2 leaves π at the plain-praise local
optimum, because too few samples restart where the guide has begun the pivot, while β = 0.6
learns it on 4 of 5 seeds within 50 iterations. PPO++ only changes where π starts; π must
still find the rewarding tokens itself from there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.config import _unit
from agents.engine import RollIn
from agents.ppo import Plan, PPOConfig

__all__ = ["PPOPPConfig", "plan"]


@dataclass
class PPOPPConfig(PPOConfig):
    """PPO++ settings."""

    beta: float = 0.2
    """Probability β that a sample is rolled in by the guide (paper: 0.2; TRIL: 0.6)."""
    guide_epsilon: float = 0.3
    """Toy tasks only: ε-noise of the scripted guide (0 = optimal expert)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _unit(self, "beta", "guide_epsilon")


def plan(cfg: PPOPPConfig, iteration: int, rng: np.random.Generator) -> Plan:
    """Guided samples are rolled in by the guide and rolled out by π."""
    return Plan(roll_in_by=RollIn.GUIDE, beta=cfg.beta)
