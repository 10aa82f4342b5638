"""The run set-up the offline families share (:mod:`agents.alol`, :mod:`agents.rest`).

:func:`start_run` does what every run does before training, in the same order and with the
same errors as the online loop (:func:`agents.trainer.run`): check the settings, claim the
output directory, load the checkpoint to resume (or the ``--init-from`` policy, which becomes
π_ref), seed, build the policy and its train envs, restore every saved state, open
TensorBoard. :meth:`OfflineRun.checkpoint` writes an atomic checkpoint holding the optimizer,
the family's own state and every RNG state.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from agents.build import build_policy, check_setup
from agents.checkpoint import load_checkpoint, save_checkpoint
from agents.config import TrainConfig
from agents.policy import ActorCritic
from agents.rundir import (
    claim_run_dir,
    load_policy_state,
    read_init_from,
    resumed_config,
    run_dir,
)
from textgen_env.vector import TextGenVectorEnv

__all__ = ["OfflineRun", "start_run"]


@dataclass
class OfflineRun:
    """A started run: its directory, config record, policy, envs, RNG and log writer."""

    out: Path
    config: dict[str, Any]
    """What ``config.json`` records (``algo``, the fields, ``init_from``, resume history)."""
    ac: ActorCritic
    tokenizer: Any
    envs: TextGenVectorEnv
    np_rng: np.random.Generator
    writer: SummaryWriter
    done: int
    """Units of work done when the run (re)started: 0, or the resumed checkpoint's."""
    state: dict[str, Any] | None
    """The resumed checkpoint's trainer state (``None`` for a new run)."""

    def checkpoint(self, done: int, optimizer: torch.optim.Optimizer, **state: Any) -> None:
        """Write checkpoint ``done``: policy, optimizer, ``state`` (tensors and plain values)
        and every RNG state."""
        trainer_state = {
            "iterations_done": done,
            "optimizer": optimizer.state_dict(),
            "np_rng": self.np_rng.bit_generator.state,
            "env_rng": self.envs.unwrapped.np_random.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            **state,
        }
        save_checkpoint(
            self.out,
            done,
            policy_state=self.ac.policy_state(),
            trainer_state=trainer_state,
            config=self.config,
        )

    def restore(self, optimizer: torch.optim.Optimizer) -> None:
        """Load the resumed checkpoint's optimizer and RNG states (nothing for a new run)."""
        if self.state is None:
            return
        optimizer.load_state_dict(self.state["optimizer"])
        self.np_rng.bit_generator.state = self.state["np_rng"]
        self.envs.unwrapped.np_random.bit_generator.state = self.state["env_rng"]
        torch.set_rng_state(self.state["torch_rng"])
        random.setstate(self.state["python_rng"])


def start_run(
    cfg: TrainConfig, algo: str, *, init_from: str | None, resume: bool, overwrite: bool
) -> OfflineRun:
    """Start (or resume) a run of ``algo`` (see the module doc).

    Raises:
        RunSetupError: Before any model loads, for settings the run cannot start with.
    """
    check_setup(cfg)
    out = run_dir(cfg, algo)
    claim_run_dir(out, resume=resume, overwrite=overwrite)
    config = {"algo": algo, **dataclasses.asdict(cfg), "init_from": init_from}
    saved = load_checkpoint(out) if resume else None
    done = 0
    if saved is not None:
        done = saved[1]["iterations_done"]
        if init_from is None:  # a resumed run keeps its reference
            config["init_from"] = init_from = saved[2].get("init_from")
        config = resumed_config(saved[2], config, done, type(cfg))
    donor = read_init_from(init_from) if init_from else None

    random.seed(cfg.seed)
    np_rng = np.random.default_rng(cfg.seed)
    ac, tokenizer, envs = build_policy(cfg)
    envs.unwrapped.reset(seed=cfg.seed)
    if donor is not None:  # start from, and stay near, the loaded policy (π_ref)
        load_policy_state(ac, donor, f"--init-from {init_from}")
        ac.sync_reference()
    if saved is not None:
        load_policy_state(ac, saved[0], f"checkpoint in {out}")
    writer = SummaryWriter(str(out / "tb"))
    writer.add_text("config", "```\n" + json.dumps(config, indent=2) + "\n```", done)
    tokenizer = tokenizer or envs.unwrapped.task.tokenizer
    state = saved[1] if saved is not None else None
    return OfflineRun(out, config, ac, tokenizer, envs, np_rng, writer, done, state)
