"""Sanity checks for the shipped TL;DR-style post summarization data set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parent.parent / "textgen_env" / "data" / "tldr"
EXPECTED_ROWS = {"train": 70, "validation": 20, "test": 30}
FIELDS = {"subreddit", "title", "post", "summary"}
POST_WORDS = (40, 200)
SUMMARY_WORDS = (5, 45)


def _load(split: str) -> list[dict[str, object]]:
    """Parse one split file, failing with the line number on a blank line or bad JSON.

    Args:
        split: Split name, e.g. ``"train"``.

    Returns:
        The parsed rows in file order.
    """
    path = DATA_DIR / f"{split}.jsonl"
    rows: list[dict[str, object]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            assert line.strip(), f"{path.name}:{number} is blank"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                pytest.fail(f"{path.name}:{number} is not valid JSON: {err}")
            assert isinstance(row, dict), f"{path.name}:{number} is not a JSON object"
            rows.append(row)
    return rows


def _words(text: object) -> int:
    """Count whitespace-separated words in a field value.

    Args:
        text: A field value expected to be a string.

    Returns:
        The number of words.
    """
    assert isinstance(text, str), f"expected a string, got {type(text).__name__}"
    return len(text.split())


@pytest.mark.parametrize("split", sorted(EXPECTED_ROWS))
def test_row_count(split: str) -> None:
    """Each split has exactly the documented number of rows."""
    assert len(_load(split)) == EXPECTED_ROWS[split]


@pytest.mark.parametrize("split", sorted(EXPECTED_ROWS))
def test_fields_and_types(split: str) -> None:
    """Rows have exactly the four fields, each a non-empty string."""
    for index, row in enumerate(_load(split)):
        assert set(row) == FIELDS, f"{split}[{index}] keys: {sorted(row)}"
        for field in sorted(FIELDS):
            value = row[field]
            assert isinstance(value, str), f"{split}[{index}].{field} is not a string"
            assert value.strip(), f"{split}[{index}].{field} is empty"


@pytest.mark.parametrize("split", sorted(EXPECTED_ROWS))
def test_lengths(split: str) -> None:
    """Posts and summaries stay in their word ranges and each summary is shorter than its post."""
    for index, row in enumerate(_load(split)):
        post, summary = _words(row["post"]), _words(row["summary"])
        assert POST_WORDS[0] <= post <= POST_WORDS[1], f"{split}[{index}] post has {post} words"
        low, high = SUMMARY_WORDS
        assert low <= summary <= high, f"{split}[{index}] summary has {summary} words"
        assert summary < post, f"{split}[{index}] summary ({summary}) >= post ({post}) words"


def test_no_duplicate_posts_across_splits() -> None:
    """No post text appears twice, within a split or across splits (whitespace-insensitive)."""
    seen: dict[str, str] = {}
    for split in sorted(EXPECTED_ROWS):
        for index, row in enumerate(_load(split)):
            key = " ".join(str(row["post"]).split()).lower()
            where = f"{split}[{index}]"
            assert key not in seen, f"{where} duplicates {seen[key]}"
            seen[key] = where
