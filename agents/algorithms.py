"""The table of algorithms: ``--algo`` name → what the training loop needs to run it.

This is the one place that names algorithms. Each record gives the config class and the
three functions one iteration calls (:mod:`agents.trainer`): ``plan`` (who rolls in and out,
β), ``score`` (rollout → batch) and ``update`` (batch → gradient steps), plus whether the run
needs a guide, and whether a demonstrator writes the episodes instead of π (BC).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import torch

from agents import aggrevated, bc, d2lols, lols, ppo, ppo_pp
from agents.config import TrainConfig
from agents.engine import Plan, Rollout
from agents.policy import ActorCritic

__all__ = ["ALGORITHMS", "Algorithm", "Batch", "config_from_dict"]


class Batch(Protocol):
    """What :func:`score` returns, as far as the loop is concerned."""

    kl: float | None
    """Mean KL(π ‖ π_ref) per π token before the update (None: not measured, β_KL = 0)."""
    stats: dict[str, float]
    """Scalars to log."""


C = TypeVar("C", bound=TrainConfig)
B = TypeVar("B", bound=Batch)


@dataclass(frozen=True)
class Algorithm(Generic[C, B]):
    """One algorithm, as the training loop runs it."""

    config: type[C]
    plan: Callable[[C, int, np.random.Generator], Plan]
    """(cfg, iteration, rng) → how this iteration collects its samples."""
    score: Callable[[ActorCritic, Rollout, C, float], B]
    """(policy, rollout, cfg, β_KL) → the batch the update trains on."""
    update: Callable[[ActorCritic, torch.optim.Optimizer, B, C, np.random.Generator], dict]
    """(policy, optimizer, batch, cfg, rng) → scalars to log, after the gradient steps."""
    needs_guide: bool
    """The run builds the task's guide (scripted for toy tasks, the prompted LM otherwise)."""
    demonstrator: bool = False
    """A demonstrator writes every episode instead of π (behaviour cloning)."""


ALGORITHMS: dict[str, Algorithm[Any, Any]] = {
    "ppo": Algorithm(ppo.PPOConfig, ppo.plan, ppo.score, ppo.update, needs_guide=False),
    "ppo_pp": Algorithm(ppo_pp.PPOPPConfig, ppo_pp.plan, ppo.score, ppo.update, needs_guide=True),
    "aggrevated": Algorithm(
        aggrevated.AggreVaTeDConfig, aggrevated.plan, ppo.score, ppo.update, needs_guide=True
    ),
    "lols": Algorithm(lols.LOLSConfig, lols.plan, ppo.score, ppo.update, needs_guide=True),
    "d2lols": Algorithm(d2lols.D2LOLSConfig, d2lols.plan, ppo.score, ppo.update, needs_guide=True),
    "bc": Algorithm(
        bc.BCConfig, bc.plan, bc.score, bc.update, needs_guide=False, demonstrator=True
    ),
}


def config_from_dict(config: dict[str, Any]) -> TrainConfig:
    """Rebuild a run's config from a checkpoint's ``config.json`` (``"algo"`` + fields)."""
    cls = ALGORITHMS[config["algo"]].config
    if "target_kl" in config and "adaptive_kl_target" not in config:
        # Runs written before issue #8 named the adaptive β_KL target "target_kl".
        config = {**config, "adaptive_kl_target": config["target_kl"], "target_kl": None}
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in config.items() if k in names})
