"""Atomic checkpoints: ``<output_dir>/checkpoints/iter-NNNNNN/`` plus a ``latest`` pointer.

A checkpoint directory is written under a temporary name and renamed into place, then the
``latest`` file is replaced atomically (``os.replace``), so an interrupted save never leaves
a half-written checkpoint that a later ``--resume`` or ``evaluate`` would load; the previous
checkpoint stays intact until the new one is complete. The last ``keep`` are kept.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["latest_checkpoint", "load_checkpoint", "save_checkpoint"]

POLICY = "policy.pt"
TRAINER = "trainer.pt"
CONFIG = "config.json"


def save_checkpoint(
    output_dir: str | os.PathLike,
    iteration: int,
    *,
    policy_state: dict[str, torch.Tensor],
    trainer_state: dict[str, Any],
    config: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write the checkpoint taken after ``iteration`` completed iterations atomically."""
    root = Path(output_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"iter-{iteration:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        torch.save(policy_state, tmp / POLICY)
        torch.save(trainer_state, tmp / TRAINER)
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():  # re-saving the same iteration: replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pointer = root / ".latest.tmp"
    pointer.write_text(final.name + "\n")
    os.replace(pointer, root / "latest")
    olds = sorted(p for p in root.glob("iter-*") if p.name < final.name)
    for old in olds[: max(0, len(olds) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(path: str | os.PathLike) -> Path:
    """Resolve ``path`` to a checkpoint directory.

    ``path`` may be a checkpoint directory itself, a ``checkpoints/`` folder or a run's
    output directory (then its ``latest`` checkpoint is used).
    """
    p = Path(path)
    if (p / POLICY).is_file() and (p / CONFIG).is_file():
        return p
    for root in (p / "checkpoints", p):
        latest = root / "latest"
        if latest.is_file():
            target = root / latest.read_text().strip()
            if (target / POLICY).is_file():
                return target
    raise FileNotFoundError(f"no checkpoint found at {p} (expected a run directory or iter-*)")


def load_checkpoint(path: str | os.PathLike) -> tuple[dict, dict, dict]:
    """Load ``(policy_state, trainer_state, config)`` from a checkpoint or run directory."""
    ckpt = latest_checkpoint(path)
    policy_state = torch.load(ckpt / POLICY, map_location="cpu", weights_only=True)
    trainer_state = torch.load(ckpt / TRAINER, map_location="cpu", weights_only=False)
    config = json.loads((ckpt / CONFIG).read_text())
    return policy_state, trainer_state, config
