"""The table of algorithms: ``--algo`` name → what it needs to run.

This is the one place that names algorithms. An online algorithm's record
(:class:`Algorithm`) gives the config class and the three functions one iteration of the
training loop calls (:mod:`agents.trainer`): ``plan`` (who rolls in and out, β), ``score``
(rollout → batch) and ``update`` (batch → gradient steps), plus whether the run needs a guide,
and whether a demonstrator writes the episodes instead of π (BC). An offline algorithm's
record (:class:`OfflineAlgorithm`) gives its config class and its family's own loop: A-LoL's
variants learn from a data file (:mod:`agents.alol`), ReST grows its data and filters it
(:mod:`agents.rest`); :func:`agents.trainer.run` hands such a run to that loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import torch

from agents import aggrevated, alol, bc, d2lols, lols, ppo, ppo_pp, rest
from agents.config import TrainConfig
from agents.engine import Plan, Rollout
from agents.policy import ActorCritic

__all__ = ["ALGORITHMS", "Algorithm", "Batch", "OfflineAlgorithm", "config_from_dict"]


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


@dataclass(frozen=True)
class OfflineAlgorithm(Generic[C]):
    """An algorithm with its own loop over data (no plan · collect · score · update)."""

    config: type[C]
    train: Callable[..., Path]
    """(cfg, algo, *, init_from, resume, overwrite) → the run directory."""


ALGORITHMS: dict[str, Algorithm[Any, Any] | OfflineAlgorithm[Any]] = {
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
    # Offline: A-LoL's variants and baselines on a data file, and ReST.
    "alol": OfflineAlgorithm(alol.ALoLConfig, alol.train),
    "alol_seq": OfflineAlgorithm(alol.ALoLConfig, alol.train),
    "alol_ref_free": OfflineAlgorithm(alol.ALoLConfig, alol.train),
    "alol_kl": OfflineAlgorithm(alol.ALoLConfig, alol.train),
    "wbc": OfflineAlgorithm(alol.ALoLConfig, alol.train),
    "rlol": OfflineAlgorithm(alol.ALoLConfig, alol.train),
    "nll": OfflineAlgorithm(alol.ALoLConfig, alol.train),
    "rest": OfflineAlgorithm(rest.RestConfig, rest.train),
}


def config_from_dict(config: dict[str, Any]) -> TrainConfig:
    """Rebuild a run's config from a checkpoint's ``config.json`` (``"algo"`` + fields)."""
    return ALGORITHMS[config["algo"]].config.from_record(config)
