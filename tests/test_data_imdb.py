"""Sanity checks for the shipped IMDB-style review-opening data set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parent.parent / "textgen_env" / "data" / "imdb"
EXPECTED_ROWS = {"train": 200, "validation": 50, "test": 60}


def _load(split: str) -> list[dict[str, object]]:
    """Parse one split file, failing with the line number on bad JSON.

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


@pytest.mark.parametrize("split", sorted(EXPECTED_ROWS))
def test_row_count(split: str) -> None:
    """Each split has exactly the documented number of rows."""
    assert len(_load(split)) == EXPECTED_ROWS[split]


@pytest.mark.parametrize("split", sorted(EXPECTED_ROWS))
def test_fields_and_types(split: str) -> None:
    """Rows have exactly a string ``text`` and an int ``label`` in {0, 1}."""
    for index, row in enumerate(_load(split)):
        assert set(row) == {"text", "label"}, f"{split}[{index}] keys: {sorted(row)}"
        assert isinstance(row["text"], str), f"{split}[{index}] text is not a string"
        label = row["label"]
        assert type(label) is int and label in (0, 1), f"{split}[{index}] bad label {label!r}"


@pytest.mark.parametrize("split", sorted(EXPECTED_ROWS))
def test_labels_balanced(split: str) -> None:
    """Both labels occur, each making up between 35% and 65% of the split."""
    labels = [row["label"] for row in _load(split)]
    share = sum(1 for label in labels if label == 1) / len(labels)
    assert 0.35 <= share <= 0.65, f"{split}: positive share {share:.2f}"


@pytest.mark.parametrize("split", sorted(EXPECTED_ROWS))
def test_word_counts(split: str) -> None:
    """Every opening has between 5 and 80 whitespace-separated words."""
    for index, row in enumerate(_load(split)):
        words = len(str(row["text"]).split())
        assert 5 <= words <= 80, f"{split}[{index}] has {words} words"


def test_no_duplicate_texts_across_splits() -> None:
    """No text appears twice, within or across splits (whitespace/case-insensitive)."""
    seen: dict[str, str] = {}
    for split in sorted(EXPECTED_ROWS):
        for index, row in enumerate(_load(split)):
            key = " ".join(str(row["text"]).lower().split())
            where = f"{split}[{index}]"
            assert key not in seen, f"{where} duplicates {seen[key]}"
            seen[key] = where
