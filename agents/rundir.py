"""The run directory: its default name, claiming it for a new run (never over an existing
one unless asked), checking that ``--resume`` continues the same run, and loading the policy a
run starts from (``--init-from``, or its own checkpoint) with errors that name the source.

A run's meaning is its config. A resumed run may change only :data:`RESUMABLE` fields (how
long it runs, how often it saves and logs, where it lives); every other difference is refused
with a list of them. Allowed changes are recorded in the config's ``"resumed"`` history, so
``config.json`` never claims the run was something it was not.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from agents.checkpoint import CheckpointError, checkpoint_dirs, load_checkpoint, remove_temporary
from agents.config import TrainConfig
from agents.policy import ActorCritic

__all__ = [
    "RESUMABLE",
    "RunSetupError",
    "claim_run_dir",
    "load_policy_state",
    "read_init_from",
    "resumed_config",
    "run_dir",
]

RESUMABLE = (
    "total_iterations", "checkpoint_every", "log_samples_every", "output_dir", "device",
    # where the served guide is and how the client waits for it (a server that came back on
    # another port): not which model answers or how it samples
    "guide_api_base", "guide_api_timeout_s", "guide_api_max_retries", "guide_api_concurrency",
    "guide_api_cache_dir",
)  # fmt: skip
"""Config fields that may differ on ``--resume``: they do not change what the run computes."""


class RunSetupError(ValueError):
    """A run cannot start with these settings (raised before any training)."""


def run_dir(cfg: TrainConfig, algo: str) -> Path:
    """The run's output directory: ``cfg.output_dir`` or ``runs/<algo>-<env>-s<seed>``."""
    return Path(cfg.output_dir or f"runs/{algo}-{cfg.env_id.split('/')[-1]}-s{cfg.seed}")


def claim_run_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Make ``out`` ready for this run, or raise :class:`RunSetupError`.

    A new run refuses a directory that holds a run (checkpoints or TensorBoard logs) unless
    ``overwrite``, which deletes it first; ``resume`` needs a checkpoint there. Leftovers of
    killed checkpoint saves are removed.
    """
    if out.exists() and not out.is_dir():
        raise RunSetupError(f"output directory {out} is a file")
    holds_run = bool(checkpoint_dirs(out)) or (out / "tb").exists()
    if resume and not checkpoint_dirs(out):
        raise RunSetupError(f"--resume: no checkpoint in {out}")
    if not resume and holds_run:
        if not overwrite:
            raise RunSetupError(
                f"{out} already holds a run; pass --resume to continue it, --overwrite to "
                "replace it, or --output-dir for a new one"
            )
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunSetupError(f"cannot create output directory {out}: {err.strerror}") from err
    if not os.access(out, os.W_OK | os.X_OK):
        raise RunSetupError(f"output directory {out} is not writable")
    remove_temporary(out)


def resumed_config(
    saved: dict[str, Any], config: dict[str, Any], done: int, cls: type[TrainConfig]
) -> dict[str, Any]:
    """The config a resumed run records: ``config`` plus the saved ``"resumed"`` history and
    this resume's changes; raises :class:`RunSetupError` when a field outside
    :data:`RESUMABLE` differs, or when ``total_iterations`` is below the ``done`` iterations.
    """
    before = {
        "algo": saved["algo"],
        **dataclasses.asdict(cls.from_record(saved)),  # old names mapped to current ones
        "init_from": saved.get("init_from"),
    }
    differ = {
        k: (before.get(k), v) for k, v in config.items() if k != "resumed" and before.get(k) != v
    }
    refused = {k: d for k, d in differ.items() if k not in RESUMABLE}
    if refused:
        listed = "; ".join(
            f"{k}: {old!r} in the run, {new!r} now" for k, (old, new) in refused.items()
        )
        raise RunSetupError(
            f"--resume would change what the run is ({listed}); only {', '.join(RESUMABLE)} "
            "may change on resume"
        )
    if config["total_iterations"] < done:
        raise RunSetupError(
            f"--resume: the run has done {done} iterations; total_iterations "
            f"{config['total_iterations']} is below that"
        )
    history = list(saved.get("resumed", []))
    if differ:
        history.append({"at_iteration": done, "changed": {k: list(d) for k, d in differ.items()}})
    return {**config, "resumed": history}


def read_init_from(path: str) -> dict[str, torch.Tensor]:
    """The policy tensors of ``--init-from path`` (a checkpoint or run directory);
    :class:`RunSetupError` naming the path if there is none or it is damaged."""
    try:
        return load_checkpoint(path, trainer=False)[0]
    except (FileNotFoundError, CheckpointError) as err:
        raise RunSetupError(f"--init-from {path}: {err}") from err


def load_policy_state(ac: ActorCritic, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``ac``; :class:`RunSetupError` naming ``source`` if it does not fit
    (another model's tensors)."""
    try:
        ac.load_policy_state(state)
    except (RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0]
        raise RunSetupError(f"{source} does not fit this policy: {first}") from err
