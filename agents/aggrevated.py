"""AggreVaTeD (Sun et al., 2017; Chang et al., 2023, §4.2): π roll-in, guide roll-out.

With probability β a sample is **rolled in by π** for k ~ U{1..L-1} tokens and **rolled out
by the guide**: the guide's completion tells π how good its prefix was. π is updated only on
its own roll-in tokens, with GAE advantages whose baseline is V^g, the value of letting the
guide finish from a state: the ``GUIDE`` output of the value head
(:mod:`agents.policy`), trained on the guide's tokens. With λ = 0 the advantage of π's token
a_t is ``γ V^g(s_{t+1}) - V^g(s_t)``, AggreVaTeD's cost-to-go difference; the default λ
trades that bias for the Monte Carlo return of the guide's completion. Otherwise the sample
is a plain π episode (PPO on all its tokens, baseline V^π). The KL penalty applies to π's
tokens only.

Why two value outputs: one state has a high value when the guide finishes it and a low one
when an untrained π does. A single head trained on both would hand π's own samples a
baseline inflated by the guide's returns, and every token π sampled there would be pushed
down whatever its quality.
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
