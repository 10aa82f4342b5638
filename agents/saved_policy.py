"""A trained policy from its checkpoint, with clear errors: :func:`read_checkpoint` reads the
config and tensors (so a command line can check the settings before any LM loads),
:func:`restore_policy` builds the LM and loads them, :func:`load_policy` does both."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from agents.algorithms import ALGORITHMS, config_from_dict
from agents.build import build_policy
from agents.checkpoint import CheckpointError, load_checkpoint
from agents.cli_errors import one_line
from agents.config import TrainConfig
from agents.policy import ActorCritic

__all__ = ["load_policy", "read_checkpoint", "restore_policy"]


def read_checkpoint(
    path: str | os.PathLike[str],
) -> tuple[dict[str, torch.Tensor], dict[str, Any], TrainConfig]:
    """``(policy_state, config, cfg)`` of the newest intact checkpoint at ``path`` (a run
    directory or an ``iter-*`` folder): the tensors, ``config.json`` and the run's config.

    Raises:
        FileNotFoundError: ``path`` does not exist or holds no checkpoint.
        CheckpointError: Every checkpoint there is damaged, or its config is not one this
            version can rebuild.
    """
    if not Path(path).exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    policy_state, _, config = load_checkpoint(path, trainer=False)
    algo = config["algo"]
    if algo not in ALGORITHMS:
        raise CheckpointError(
            f"checkpoint {path} was written by an unknown algorithm {algo!r} "
            f"(known: {', '.join(sorted(ALGORITHMS))})"
        )
    try:
        cfg = config_from_dict(config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {path} holds a config this version cannot use: {one_line(err)}"
        ) from err
    return policy_state, config, cfg


def restore_policy(
    cfg: TrainConfig, policy_state: dict[str, torch.Tensor], path: str | os.PathLike[str]
) -> tuple[ActorCritic, Any]:
    """Build the policy that ``cfg`` describes, load ``policy_state`` (read from ``path``)
    into it and return it in eval mode with its tokenizer.

    Raises:
        CheckpointError: The tensors do not fit the policy the config describes.
        OSError: The run's model (``cfg.model``) cannot be loaded.
    """
    ac, tokenizer, _ = build_policy(cfg)
    try:
        ac.load_policy_state(policy_state)
    except (RuntimeError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {path} does not fit the policy its config describes: "
            f"{one_line(err, limit=300)}"
        ) from err
    return ac.eval(), tokenizer


def load_policy(path: str | os.PathLike[str]) -> tuple[ActorCritic, Any, dict[str, Any]]:
    """The policy of the newest intact checkpoint at ``path`` in eval mode, its tokenizer and
    its ``config.json`` (:func:`read_checkpoint` then :func:`restore_policy`)."""
    policy_state, config, cfg = read_checkpoint(path)
    ac, tokenizer = restore_policy(cfg, policy_state, path)
    return ac, tokenizer, config
