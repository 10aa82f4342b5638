"""D2LOLS (Chang et al., 2023, §4.4): AggreVaTeD for the first τ iterations, PPO++ after.

Early on the guide's roll-outs teach π which prefixes are good (AggreVaTeD); once π is
competent, guide roll-ins keep it exploring from good states (PPO++). τ = 20 iterations is
the paper's IMDB setting. The two phases are the plans of :mod:`agents.aggrevated` and
:mod:`agents.ppo_pp`; scoring and update are PPO's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.aggrevated import guide_roll_out
from agents.config import check_unit
from agents.engine import Plan
from agents.ppo import PPOConfig
from agents.ppo_pp import guide_roll_in

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
    aggrevated_gae_lambda: float = 0.95
    """GAE λ of the AggreVaTeD phase's guided rows (see agents.aggrevated)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tau < 0:
            raise ValueError(f"tau must be >= 0 iterations, got {self.tau}")
        check_unit(self, "ppo_pp_beta", "aggrevated_beta", "aggrevated_gae_lambda")


def plan(cfg: D2LOLSConfig, iteration: int, rng: np.random.Generator) -> Plan:
    """AggreVaTeD while ``iteration < τ``, PPO++ afterwards."""
    if iteration < cfg.tau:
        return guide_roll_out(cfg.aggrevated_beta, cfg.aggrevated_gae_lambda)
    return guide_roll_in(cfg.ppo_pp_beta)
