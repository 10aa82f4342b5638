"""LOLS (Chang et al., 2015; 2023 §4.3): each iteration is PPO++ with probability τ, else
AggreVaTeD.

The coin is drawn once per iteration from the run's seeded generator, so a run (and its
resume) is reproducible. Both branches reuse the plans of :mod:`agents.ppo_pp` and
:mod:`agents.aggrevated`; there is no inheritance between the algorithms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents import aggrevated, ppo_pp
from agents.config import _unit
from agents.ppo import Plan, PPOConfig

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
    guide_epsilon: float = 0.3
    """Toy tasks only: ε-noise of the scripted guide (0 = optimal expert)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _unit(self, "tau", "ppo_pp_beta", "aggrevated_beta", "guide_epsilon")


def plan(cfg: LOLSConfig, iteration: int, rng: np.random.Generator) -> Plan:
    """PPO++ with probability τ, else AggreVaTeD (one coin per iteration)."""
    if rng.random() < cfg.tau:
        return ppo_pp.plan(ppo_pp.PPOPPConfig(beta=cfg.ppo_pp_beta), iteration, rng)
    return aggrevated.plan(aggrevated.AggreVaTeDConfig(beta=cfg.aggrevated_beta), iteration, rng)
