"""Expected errors at the ``agents.evaluate``, ``agents.export`` and ``agents.make_data``
command lines: reported as one line, ``<prog>: error: <message>``, with exit status 2
(:func:`reported_errors`; ``--debug`` re-raises to show the traceback; a damaged newest
checkpoint's warning is one line too), and raised early, before any work starts, when an
output location cannot be written (:func:`check_writable`)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from agents.checkpoint import DamagedCheckpointWarning

__all__ = ["EXPECTED_ERRORS", "add_debug_flag", "check_writable", "one_line", "reported_errors"]

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
