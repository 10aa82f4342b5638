"""The run set-up the offline families share (:mod:`agents.alol`, :mod:`agents.rest`).

:func:`start_run` does what every run does before training, in the same order and with the
same errors as the online loop (:func:`agents.trainer.run`): check the settings, join the
processes a launcher started (:mod:`agents.distributed`), claim the output directory (the main
process), load the checkpoint to resume (or the ``--init-from`` policy, which becomes π_ref),
seed, build the policy, its optimizer and its train envs, restore every saved state.
TensorBoard opens at the first logged value (the main process), once the family has checked
its data. :meth:`OfflineRun.checkpoint` writes an atomic checkpoint (the main process)
holding the optimizer (in torch's AdamW layout, also under DeepSpeed ZeRO), the family's own
state and every process's RNG states.

Randomness with N processes: the run's generator ``np_rng`` (which rows a step draws) is
seeded from the run's seed in every process, so every process draws the same global
minibatch; torch's, Python's and the env's generators are seeded per process
(:func:`~agents.distributed.process_seed`, the seed itself in process 0). ``--resume`` with
the number of processes the run had restores every process's states; with another number,
``np_rng`` (the same in every process) still continues exactly, and the others start new
streams.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from agents.build import build_policy, check_setup
from agents.checkpoint import (
    load_checkpoint,
    restore_rng_states,
    rng_record,
    rng_states,
    save_checkpoint,
    saved_rng_states,
)
from agents.config import TrainConfig
from agents.distributed import Processes, join_processes
from agents.policy import ActorCritic
from agents.replicas import ReplicatedPolicy
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
    """A started run: its directory, config record, processes, policy, envs, RNG and log
    writer."""

    out: Path
    config: dict[str, Any]
    """What ``config.json`` records (``algo``, the fields, ``init_from``, resume history)."""
    procs: Processes
    """This process among the run's (one without a launcher)."""
    ac: ActorCritic
    policy: ActorCritic | ReplicatedPolicy
    """π as the gradient steps call it: through DDP's wrapper or DeepSpeed's engine with
    several processes (:meth:`~agents.distributed.Processes.prepare`)."""
    optimizer: torch.optim.Optimizer
    """AdamW over π's trainable parameters (accelerate's wrapper of DeepSpeed's under ZeRO)."""
    learning_rate: float
    tokenizer: Any
    envs: TextGenVectorEnv
    """``batch_size`` sub-envs in every process (replaying rows, sampling whole chunks)."""
    np_rng: np.random.Generator
    """The run's generator, the same stream in every process."""
    writer: SummaryWriter | None
    """TensorBoard, opened by the main process's first :meth:`log` (``None`` until then, and
    in the others): a run refused while it checks its data leaves no log behind, so the
    directory does not hold a run that never trained (a rerun needs no ``--overwrite``)."""
    done: int
    """Units of work done when the run (re)started: 0, or the resumed checkpoint's."""
    state: dict[str, Any] | None
    """The resumed checkpoint's trainer state (``None`` for a new run)."""
    rngs: dict[str, Any] | None
    """This process's saved RNG states (``None``: a new run, or one saved by another number
    of processes)."""

    def log(self, name: str, value: float, step: int) -> None:
        """Log a scalar (the main process; values are the whole run's, the same in every one)."""
        if not self.procs.main:
            return
        if self.writer is None:
            self.writer = SummaryWriter(str(self.out / "tb"))
            text = "```\n" + json.dumps(self.config, indent=2) + "\n```"
            self.writer.add_text("config", text, self.done)
        self.writer.add_scalar(name, value, step)

    def checkpoint(self, done: int, **state: Any) -> None:
        """Write checkpoint ``done``: policy, optimizer, ``state`` (tensors and plain values)
        and every process's RNG states. Every process calls it; the main one writes."""
        every = self.procs.gather(rng_states(self.np_rng, self.envs.unwrapped.np_random))
        optimizer = self.procs.optimizer_state(self.optimizer, self.ac)  # every process
        trainer_state = {
            "iterations_done": done,
            "optimizer": optimizer,
            **rng_record(every),
            **state,
        }
        with self.procs.whole(self.ac):  # (every process: ZeRO-3 gathers π's weights)
            if self.procs.main:
                save_checkpoint(
                    self.out,
                    done,
                    policy_state=self.ac.policy_state(),
                    trainer_state=trainer_state,
                    config=self.config,
                )

    def fresh_optimizer(self) -> None:
        """Start the optimizer afresh (ReST's Improve steps): AdamW with no state, as at the
        start of the run."""
        self.optimizer = self.procs.fresh_optimizer(self.optimizer, self.ac, self.learning_rate)

    def restore(self) -> None:
        """Load the resumed checkpoint's optimizer and RNG states (nothing for a new run)."""
        if self.state is None:
            return
        self.procs.load_optimizer_state(self.optimizer, self.ac, self.state["optimizer"])
        if self.rngs is not None:
            restore_rng_states(self.rngs, self.np_rng, self.envs.unwrapped.np_random)
        else:  # saved by another number of processes: the shared stream only (process 0's)
            self.np_rng.bit_generator.state = self.state["np_rng"]

    def finish(self) -> None:
        """Close the log and end the run in every process together (after the main one's
        last checkpoint)."""
        if self.writer is not None:
            self.writer.close()
        self.procs.finish()


def start_run(
    cfg: TrainConfig, algo: str, *, init_from: str | None, resume: bool, overwrite: bool
) -> OfflineRun:
    """Start (or resume) a run of ``algo`` (see the module doc).

    Raises:
        RunSetupError: Before any model loads, for settings the run cannot start with.
    """
    check_setup(cfg, processes=True)
    procs = join_processes(cfg)  # this process among those a launcher started (or alone)
    out = run_dir(cfg, algo)
    procs.first_on_main(partial(claim_run_dir, out, resume=resume, overwrite=overwrite))
    config = {"algo": algo, **dataclasses.asdict(cfg), "init_from": init_from}
    saved = load_checkpoint(out) if resume else None
    done = 0
    if saved is not None:
        done = saved[1]["iterations_done"]
        if init_from is None:  # a resumed run keeps its reference
            config["init_from"] = init_from = saved[2].get("init_from")
        config = resumed_config(saved[2], config, done, type(cfg))
    donor = read_init_from(init_from) if init_from else None
    rngs = saved_rng_states(saved[1], procs.rank, procs.world) if saved is not None else None
    seed = procs.seed(cfg.seed, restart=done if saved is not None and rngs is None else 0)

    random.seed(seed)
    np_rng = np.random.default_rng(cfg.seed)  # the same stream in every process
    ac, tokenizer, envs = build_policy(procs.placed(cfg))  # the same initial π everywhere
    if seed != cfg.seed:  # torch's stream too, once π is built
        torch.manual_seed(seed)
    envs.unwrapped.reset(seed=seed)
    if donor is not None:  # start from, and stay near, the loaded policy (π_ref)
        load_policy_state(ac, donor, f"--init-from {init_from}")
        ac.sync_reference()
    if saved is not None:
        load_policy_state(ac, saved[0], f"checkpoint in {out}")
    tokenizer = tokenizer or envs.unwrapped.task.tokenizer
    state = saved[1] if saved is not None else None
    # π as the steps call it, through DDP or DeepSpeed's engine with several processes
    policy, optimizer = procs.prepare(ac, ac.optimizer(cfg.learning_rate))
    return OfflineRun(
        out, config, procs, ac, policy, optimizer, cfg.learning_rate, tokenizer, envs, np_rng,
        None, done, state, rngs,
    )  # fmt: skip
