"""Loading the rows of the paper's three tasks: shipped JSONL by default, hub or file on request.

The package ships small IMDB, CommonGen and TL;DR splits under ``textgen_env/data`` so that
everything runs offline. Users with hub access can load the full data sets instead by name
(``source="imdb"``, ``"common_gen"``, ``"CarperAI/openai_summarize_tldr"``), and any local
``.jsonl``/``.json`` file with the same fields works too. The task modules turn the rows into
:class:`~textgen_env.state.Prompt` records.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import datasets

from textgen_env._checks import is_int
from textgen_env.tokenizer import Tokenizer

__all__ = [
    "DATA_DIR",
    "SPLITS",
    "TASKS",
    "default_tokenizer",
    "field",
    "load_records",
    "row_list",
    "shipped_path",
]

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
"""Folder of the shipped data: ``<task>/<split>.jsonl``."""

TASKS = ("imdb", "commongen", "tldr")
"""Task names accepted by :func:`load_records`."""

SPLITS = ("train", "validation", "test")
"""Splits of the shipped data."""

_LOCAL_SUFFIXES = (".jsonl", ".json")


def shipped_path(task: str, split: str) -> Path:
    """Path of a shipped split file.

    Args:
        task: One of :data:`TASKS`.
        split: One of :data:`SPLITS`.

    Returns:
        The path (checked to exist).

    Raises:
        ValueError: Unknown task or split.
        FileNotFoundError: The file is missing from the installation.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} of the shipped {task} data; use one of {SPLITS}")
    path = DATA_DIR / task / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"shipped data file is missing: {path} (reinstall textgen-env)")
    return path


def _is_local(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` names a local file rather than a hub data set."""
    return (
        isinstance(source, os.PathLike)
        or source.endswith(_LOCAL_SUFFIXES)
        or Path(source).is_file()
    )


def _load_file(path: Path, task: str) -> tuple[datasets.Dataset, str]:
    """Load a local JSON/JSONL file (``datasets``' json loader); refuse a file without data."""
    with path.open(encoding="utf-8") as handle:
        if not any(line.strip() for line in handle):
            raise ValueError(f"{task} data file {path} is empty")
    return datasets.load_dataset("json", data_files=str(path), split="train"), str(path)


def load_records(
    task: str, split: str = "train", source: str | os.PathLike[str] | None = None
) -> datasets.Dataset:
    """Load the rows of one split of a task as a :class:`datasets.Dataset`.

    Args:
        task: One of :data:`TASKS` (``"imdb"``, ``"commongen"``, ``"tldr"``).
        split: Split name. For the shipped data and hub sets it selects the split (hub sets
            use their own names, e.g. ``"valid"`` for CarperAI's TL;DR, and ``imdb`` has no
            validation split); for a local file it is ignored (the file is the split).
        source: ``None`` for the shipped JSONL (nothing is downloaded); a path to a local
            ``.jsonl``/``.json`` file; or a Hugging Face hub data set name, loaded with
            ``datasets.load_dataset(source, split=split)`` (needs hub access).

    Returns:
        The rows, with the data set's own field names.

    Raises:
        ValueError: Unknown task or split of the shipped data, or an empty data set.
        FileNotFoundError: A local file that does not exist.
        TypeError: ``source`` is not a str or path.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a non-empty str, got {split!r}")
    if source is None:
        rows, where = _load_file(shipped_path(task, split), task)
    elif not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be None, a hub name or a path, got {type(source).__name__}")
    elif _is_local(source):
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{task} data file does not exist: {path}")
        rows, where = _load_file(path, task)
    else:
        if not source.strip():
            raise ValueError("source must not be an empty string")
        rows = datasets.load_dataset(source, split=split)
        where = f"{source} [{split}]"
    if not isinstance(rows, datasets.Dataset):
        raise TypeError(f"{where} did not load as a single datasets.Dataset")
    if len(rows) == 0:
        raise ValueError(f"{task} data {where} has no rows")
    return rows


@functools.cache
def default_tokenizer() -> Tokenizer:
    """The offline default SmolLM2 tokenizer, loaded once per process and shared.

    The task entry points use it when no tokenizer is given, so that making many envs does not
    reload it each time. Treat it as read-only; for a private copy call
    :func:`textgen_env.models.load_tokenizer`.
    """
    from textgen_env.models import load_tokenizer

    return load_tokenizer()


def row_list(data: datasets.Dataset | Iterable[Mapping[str, Any]], task: str) -> list[Mapping]:
    """The rows of a :class:`datasets.Dataset` or an iterable of dicts, as a list of mappings.

    Raises:
        TypeError: ``data`` is a string/bytes, not iterable, or holds a non-mapping row.
        ValueError: There are no rows.
    """
    if isinstance(data, (str, bytes, Mapping)) or not isinstance(data, Iterable):
        raise TypeError(
            f"{task} rows must be a datasets.Dataset or an iterable of dicts, "
            f"got {type(data).__name__}"
        )
    rows = list(data)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"{task} row {i} must be a dict, got {type(row).__name__}")
    if not rows:
        raise ValueError(f"no {task} rows given")
    return rows


def field(row: Mapping[str, Any], name: str, kind: type, task: str, index: int) -> Any:
    """``row[name]``, checked to exist and be of type ``kind`` (clear errors naming the row)."""
    if name not in row:
        raise ValueError(f"{task} row {index} has no field {name!r} (fields: {sorted(row)})")
    value = row[name]
    if kind is int and is_int(value):
        return int(value)  # NumPy integers too (a pandas-backed data set gives those)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(
            f"{task} row {index} field {name!r} must be {kind.__name__}, got {type(value).__name__}"
        )
    return value
