"""What the ``agents.evaluate`` and ``agents.export`` command lines share.

* Reading a checkpoint's policy with clear errors (:func:`read_checkpoint` reads the config
  and tensors, so its settings can be checked before :func:`restore_policy` builds the LM;
  :func:`load_policy` does both).
* Checking that an output location can be written before the work starts
  (:func:`check_writable`); :func:`~agents.checkpoint.default_mode` (re-exported) gives what
  was written through a temporary name the mode a plain write would have.
* Reporting an expected error as one line, ``<prog>: error: <message>``, with exit status 2
  (:func:`reported_errors`; ``--debug`` re-raises it to show the traceback). A damaged newest
  checkpoint's warning is printed as one line too.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import torch

from agents.algorithms import ALGORITHMS, config_from_dict
from agents.build import build_policy
from agents.checkpoint import (
    CheckpointError,
    DamagedCheckpointWarning,
    default_mode,
    load_checkpoint,
)
from agents.config import TrainConfig
from agents.policy import ActorCritic

__all__ = [
    "EXPECTED_ERRORS",
    "add_debug_flag",
    "check_writable",
    "default_mode",
    "load_policy",
    "one_line",
    "read_checkpoint",
    "reported_errors",
    "restore_policy",
]

EXPECTED_ERRORS = (OSError, ValueError)
"""Errors a user can cause and fix (bad paths, settings, files); anything else is a bug and
keeps its traceback."""


def one_line(err: BaseException, limit: int | None = None) -> str:
    """``err``'s message on one line (whitespace runs become one space), cut at ``limit``."""
    text = " ".join(str(err).split()) or type(err).__name__
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--debug``: an error shows its traceback instead of one line."""
    parser.add_argument(
        "--debug", action="store_true", help="on an error, show its traceback instead of one line"
    )


@contextmanager
def reported_errors(parser: argparse.ArgumentParser, debug: bool = False) -> Iterator[None]:
    """Run the block; an :data:`EXPECTED_ERRORS` error becomes ``<prog>: error: <message>`` on
    stderr and exit status 2 (``debug``: it is re-raised). A
    :class:`~agents.checkpoint.DamagedCheckpointWarning` is shown as ``<prog>: warning: ...``.
    """
    shown = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, DamagedCheckpointWarning) and not debug:
            print(f"{parser.prog}: warning: {one_line(Warning(message))}", file=file or sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    except EXPECTED_ERRORS as err:
        if debug:
            raise
        parser.exit(2, f"{parser.prog}: error: {one_line(err)}\n")
    finally:
        warnings.showwarning = shown


def check_writable(path: str | os.PathLike[str], what: str) -> None:
    """Raise unless ``path`` (a file or folder still to be written) can be created: the
    nearest existing folder above it must be a writable directory (probed with a temporary
    file, which also catches read-only file systems). ``what`` names it in the message.

    Raises:
        NotADirectoryError: A path component above ``path`` is a file.
        PermissionError: The folder it would go into is not writable.
    """
    above = Path(path).absolute().parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise NotADirectoryError(f"cannot write {what} {path}: {above} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=above)
    except OSError as err:
        reason = err.strerror or one_line(err)
        raise PermissionError(
            f"cannot write {what} {path}: {above} is not writable ({reason})"
        ) from err
    os.close(fd)
    os.unlink(probe)


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
