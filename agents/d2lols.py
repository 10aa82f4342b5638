"""D2LOLS (Chang et al., 2023, §4.4): AggreVaTeD for the first τ iterations, PPO++ after.

Early on the guide's roll-outs teach π which prefixes are good (AggreVaTeD); once π is
competent, guide roll-ins keep it exploring from good states (PPO++). τ = 20 iterations is
the paper's IMDB setting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents import aggrevated, ppo_pp
from agents.config import _unit
from agents.ppo import Plan, PPOConfig

__all__ = ["D2LOLSConfig", "plan"]


@dataclass
class D2LOLSConfig(PPOConfig):
    """D2LOLS settings."""

    tau: int = 20
    """Iterations of AggreVaTeD before switching to PPO++ (paper, IMDB: 20)."""
    ppo_pp_beta: float = 0.2
    """β of the PPO++ phase (guide roll-in probability)."""
    aggrevated_beta: float = 0.8
    """β of the AggreVaTeD phase (guide roll-out probability)."""
    guide_epsilon: float = 0.3
    """Toy tasks only: ε-noise of the scripted guide (0 = optimal expert)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tau < 0:
            raise ValueError(f"tau must be >= 0 iterations, got {self.tau}")
        _unit(self, "ppo_pp_beta", "aggrevated_beta", "guide_epsilon")


def plan(cfg: D2LOLSConfig, iteration: int, rng: np.random.Generator) -> Plan:
    """AggreVaTeD while ``iteration < τ``, PPO++ afterwards."""
    if iteration < cfg.tau:
        return aggrevated.plan(
            aggrevated.AggreVaTeDConfig(beta=cfg.aggrevated_beta), iteration, rng
        )
    return ppo_pp.plan(ppo_pp.PPOPPConfig(beta=cfg.ppo_pp_beta), iteration, rng)
