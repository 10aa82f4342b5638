"""PPO++ (Chang et al., 2023, §4.1): the guide rolls in, π rolls out.

With probability β a sample is **rolled in by the guide** for k ~ U{1..L-1} tokens, the env
restarts there and **π rolls out** to the end; otherwise it is π's own episode. The guide's
prefix is a better restart distribution. Policy and value losses (and the KL penalty) use
only π's tokens; scoring and update are PPO's (:func:`agents.ppo.score`,
:func:`agents.ppo.update`). When the guide's roll-in ends the episode before k, the row gets
a shorter k on the guide's own tokens (:mod:`agents.engine`), so no batch slot is lost.

β defaults to 0.2, the value in the paper's hyper-parameter table for IMDB; TRIL's released
config uses 0.6. We follow the paper because its reported numbers are what users compare to;
pass ``--beta 0.6`` to reproduce TRIL's runs. The choice matters where exploration is hard:
on Twist-v0 (``benchmarks/learning_toy.py``) β = 0.2 leaves π at the plain-praise local
optimum, because too few samples restart where the guide has begun the pivot, while β = 0.6
learns it on most seeds within 50 iterations. PPO++ only changes where π starts; π must
still find the rewarding tokens itself from there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.config import check_unit
from agents.engine import Actor, Plan
from agents.ppo import PPOConfig

__all__ = ["PPOPPConfig", "guide_roll_in", "plan"]


@dataclass
class PPOPPConfig(PPOConfig):
    """PPO++ settings."""

    beta: float = 0.2
    """Probability β that a sample is rolled in by the guide (paper: 0.2; TRIL: 0.6)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_unit(self, "beta")


def plan(cfg: PPOPPConfig, iteration: int, rng: np.random.Generator) -> Plan:
    """Every iteration: guide roll-in with probability β."""
    return guide_roll_in(cfg.beta)


def guide_roll_in(beta: float) -> Plan:
    """PPO++'s plan: the guide rolls in k tokens w.p. β, π rolls out; baseline V^π."""
    return Plan(roll_in=Actor.GUIDE, roll_out=Actor.LEARNER, beta=beta)
