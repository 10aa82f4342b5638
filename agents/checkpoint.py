"""Checkpoints: ``<output_dir>/checkpoints/iter-NNNNNN/`` holding

* ``policy.safetensors``: the policy's tensors (LM or LoRA adapters, value head);
* ``trainer.pt``: optimizer, KL controller, iteration and RNG states, only tensors and plain
  Python values, read back with ``torch.load(weights_only=True)``; the RNG states of a run of
  several processes are every process's (:func:`rng_record`, :func:`saved_rng_states`);
* ``config.json``: the run's config.

Loading a checkpoint never executes code. A checkpoint is written under a temporary name and
renamed into place, then the ``latest`` file is replaced atomically, so a killed save never
leaves a half-written ``iter-*`` folder; its temporary folder is removed at the next save or
start (:func:`remove_temporary`). A run whose losses or weights stopped being finite never
writes a checkpoint (:func:`check_finite` stops it first). The last ``keep`` checkpoints are
kept. When the newest checkpoint is damaged or incomplete, :func:`load_checkpoint` says which
file and falls back to the newest intact one. Checkpoints of the first format
(``policy.pt``) still load.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from agents.policy import ActorCritic

__all__ = [
    "CheckpointError",
    "DamagedCheckpointWarning",
    "TrainingDiverged",
    "check_finite",
    "checkpoint_dirs",
    "default_mode",
    "latest_checkpoint",
    "load_checkpoint",
    "remove_temporary",
    "restore_rng_states",
    "rng_record",
    "rng_states",
    "save_checkpoint",
    "saved_rng_states",
]

POLICY = "policy.safetensors"
LEGACY_POLICY = "policy.pt"  # the first format: a torch pickle of tensors only
TRAINER = "trainer.pt"
CONFIG = "config.json"
# What reading a damaged or truncated file raises.
_DAMAGE = (OSError, EOFError, RuntimeError, ValueError, SafetensorError)


class CheckpointError(ValueError):
    """No intact checkpoint could be read (each damaged one is named in the message)."""


class DamagedCheckpointWarning(UserWarning):
    """The newest checkpoint is damaged; an older intact one is used instead."""


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
    remove_temporary(output_dir)
    final = root / f"iter-{iteration:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        save_file(_unshared(policy_state), tmp / POLICY)
        torch.save(trainer_state, tmp / TRAINER)
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
            default_mode(f)
        default_mode(tmp)  # a checkpoint is shared like any folder the user writes
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


def default_mode(path: str | os.PathLike[str]) -> None:
    """Give ``path`` the mode a plain ``open``/``mkdir`` would (0o666/0o777 less the umask):
    ``tempfile`` makes private ones, and safetensors writes its files 0o600."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~mask)


def remove_temporary(output_dir: str | os.PathLike) -> list[Path]:
    """Remove the temporary folders that killed saves left in ``output_dir``; return them."""
    root = Path(output_dir) / "checkpoints"
    leftovers = sorted(root.glob(".tmp-*")) if root.is_dir() else []
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    return leftovers


def checkpoint_dirs(path: str | os.PathLike) -> list[Path]:
    """The checkpoint folders at ``path``, newest first: ``path`` itself if it is one, else
    the ``iter-*`` folders of a run directory or of its ``checkpoints/`` folder."""
    p = Path(path)
    if (p / CONFIG).is_file() or p.name.startswith("iter-"):
        return [p]
    for root in (p / "checkpoints", p):
        found = sorted(root.glob("iter-*"), reverse=True)
        if found:
            return found
    return []


def latest_checkpoint(path: str | os.PathLike) -> Path:
    """The newest checkpoint folder at ``path`` (see :func:`checkpoint_dirs`)."""
    found = checkpoint_dirs(path)
    if not found:
        raise FileNotFoundError(
            f"no checkpoint found at {path} (expected a run directory or iter-*)"
        )
    return found[0]


def load_checkpoint(
    path: str | os.PathLike, *, trainer: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None, dict[str, Any]]:
    """``(policy_state, trainer_state, config)`` of the newest intact checkpoint at ``path``.

    ``trainer=False`` reads only the policy and config (``trainer_state`` is then ``None``):
    what evaluation needs. A damaged newest checkpoint is named in a
    :class:`DamagedCheckpointWarning` and the next older one is tried.

    Raises:
        FileNotFoundError: There is no checkpoint at ``path``.
        CheckpointError: Every checkpoint there is damaged.
    """
    candidates = checkpoint_dirs(path)
    if not candidates:
        raise FileNotFoundError(
            f"no checkpoint found at {path} (expected a run directory or iter-*)"
        )
    problems = []
    for ckpt in candidates:
        try:
            loaded = _load_one(ckpt, trainer)
        except _DAMAGE as err:
            problems.append(f"{err}")
            continue
        if problems:
            warnings.warn(
                f"using {ckpt.name}: the newer checkpoint is damaged ({'; '.join(problems)})",
                DamagedCheckpointWarning,
                stacklevel=2,
            )
        return loaded
    raise CheckpointError(f"no intact checkpoint at {path}: {'; '.join(problems)}")


def _load_one(
    ckpt: Path, trainer: bool
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None, dict[str, Any]]:
    """Read one checkpoint folder; any damage raises, naming the file."""
    config_file = ckpt / CONFIG
    policy_file = ckpt / POLICY if (ckpt / POLICY).exists() else ckpt / LEGACY_POLICY
    try:
        config = json.loads(config_file.read_text())
    except _DAMAGE as err:
        raise ValueError(f"{config_file}: {err}") from err
    if not isinstance(config, dict) or "algo" not in config:
        raise ValueError(f"{config_file}: not a run config (no 'algo')")
    try:
        if policy_file.name == POLICY:
            policy_state = load_file(policy_file)
        else:
            policy_state = torch.load(policy_file, map_location="cpu", weights_only=True)
    except _DAMAGE as err:
        raise ValueError(f"{policy_file}: {err}") from err
    trainer_state = None
    if trainer:
        try:
            trainer_state = torch.load(ckpt / TRAINER, map_location="cpu", weights_only=True)
        except _DAMAGE as err:
            raise ValueError(f"{ckpt / TRAINER}: {err}") from err
        except Exception as err:  # weights_only refuses a pickle that would run code
            raise ValueError(f"{ckpt / TRAINER}: not a plain-data checkpoint ({err})") from err
    return policy_state, trainer_state, config


def rng_states(np_rng: np.random.Generator, env_rng: np.random.Generator) -> dict[str, Any]:
    """One process's RNG states as a checkpoint holds them: the run's generator ``np_rng``, the
    vector env's ``env_rng``, torch's and Python's global ones."""
    return {
        "np_rng": np_rng.bit_generator.state,
        "env_rng": env_rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "python_rng": random.getstate(),
    }


def restore_rng_states(
    states: dict[str, Any], np_rng: np.random.Generator, env_rng: np.random.Generator
) -> None:
    """Put the :func:`rng_states` ``states`` back into the generators they came from."""
    np_rng.bit_generator.state = states["np_rng"]
    env_rng.bit_generator.state = states["env_rng"]
    torch.set_rng_state(states["torch_rng"])
    random.setstate(states["python_rng"])


def rng_record(every: list[dict[str, Any]]) -> dict[str, Any]:
    """The trainer-state entries of every process's :func:`rng_states` (in rank order):
    process 0's at the top level (where a single-process checkpoint has them), the number of
    processes as ``world_size`` and the others' as ``process_rngs``."""
    return {**every[0], "world_size": len(every), "process_rngs": every[1:]}


def saved_rng_states(state: dict[str, Any], rank: int, world: int) -> dict[str, Any] | None:
    """Process ``rank``'s RNG states in the trainer state ``state`` when ``world`` processes
    wrote it (checkpoints without ``world_size`` come from one), else ``None``."""
    if state.get("world_size", 1) != world:
        return None
    return state if rank == 0 else state["process_rngs"][rank - 1]


def _unshared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous tensors, none sharing memory (safetensors refuses tied weights)."""
    seen: set[int] = set()
    out = {}
    for name, tensor in state.items():
        tensor = tensor.detach().contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        out[name] = tensor.clone() if ptr in seen else tensor
        seen.add(ptr)
    return out


class TrainingDiverged(RuntimeError):
    """A loss, gradient norm or parameter became NaN or infinite."""


def check_finite(ac: ActorCritic, scalars: dict[str, float], iteration: int, out: Path) -> None:
    """Raise :class:`TrainingDiverged` on a non-finite scalar or parameter of iteration
    ``iteration`` of the run in ``out``, before that iteration writes a checkpoint (issue #13)."""
    bad = [name for name, value in scalars.items() if not math.isfinite(value)]
    params = ac.trainable_parameters()
    if not torch.stack([p.isfinite().all() for p in params]).all():
        bad.append("parameters")
    if bad:
        kept = latest_checkpoint(out).name if checkpoint_dirs(out) else "none yet"
        raise TrainingDiverged(
            f"training diverged at iteration {iteration}: {', '.join(bad)} not finite; stopped "
            f"before writing a checkpoint (the last good one, {kept}, stays latest)"
        )
