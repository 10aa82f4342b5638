"""LOLS (Chang et al., 2015; 2023 §4.3): each iteration is PPO++ with probability τ, else
AggreVaTeD.

The coin is drawn once per iteration from the run's seeded generator, so a run (and its
resume) is reproducible. The two branches are the plans of :mod:`agents.ppo_pp` and
:mod:`agents.aggrevated`; scoring and update are PPO's. No inheritance between algorithms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.aggrevated import guide_roll_out
from agents.config import check_unit
from agents.engine import Plan
from agents.ppo import PPOConfig
from agents.ppo_pp import guide_roll_in

__all__ = ["LOLSConfig", "plan"]


@dataclass
class LOLSConfig(PPOConfig):
    """LOLS settings."""

    tau: float = 0.8
    """Probability τ that an iteration runs PPO++ (else AggreVaTeD)."""
    ppo_pp_beta: float = 0.2
    """β of the PPO++ iterations (guide roll-in probability)."""
    aggrevated_beta: float = 0.8
    """β of the AggreVaTeD iterations (guide roll-out probability)."""
    aggrevated_gae_lambda: float = 0.95
    """GAE λ of the AggreVaTeD iterations' guided rows (see agents.aggrevated)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_unit(self, "tau", "ppo_pp_beta", "aggrevated_beta", "aggrevated_gae_lambda")


def plan(cfg: LOLSConfig, iteration: int, rng: np.random.Generator) -> Plan:
    """PPO++ with probability τ, else AggreVaTeD (one coin per iteration)."""
    if rng.random() < cfg.tau:
        return guide_roll_in(cfg.ppo_pp_beta)
    return guide_roll_out(cfg.aggrevated_beta, cfg.aggrevated_gae_lambda)
