"""Integrity checks for the shipped CommonGen-style data set (stdlib ``json`` only)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

DATA_DIR = Path(__file__).resolve().parents[1] / "textgen_env" / "data" / "commongen"
EXPECTED_ROWS = {"train": 150, "validation": 30, "test": 40}
SPLITS = tuple(EXPECTED_ROWS)


@cache
def _load(split: str) -> tuple[dict[str, Any], ...]:
    """Parse one split file, one JSON object per non-empty line.

    Args:
        split: Split name, e.g. ``"train"``.

    Returns:
        The parsed rows in file order.
    """
    path = DATA_DIR / f"{split}.jsonl"
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            assert line.strip(), f"{path.name}:{number} is blank"
            row = json.loads(line)
            assert isinstance(row, dict), f"{path.name}:{number} is not a JSON object"
            rows.append(row)
    return tuple(rows)


def _rows(split: str) -> list[tuple[str, dict[str, Any]]]:
    """Return ``(location, row)`` pairs so assertion messages name the offending line."""
    return [(f"{split}.jsonl:{i}", row) for i, row in enumerate(_load(split), start=1)]


@pytest.mark.parametrize("split", SPLITS)
def test_split_parses_with_expected_row_count(split: str) -> None:
    assert len(_load(split)) == EXPECTED_ROWS[split]


@pytest.mark.parametrize("split", SPLITS)
def test_fields_and_types(split: str) -> None:
    for where, row in _rows(split):
        assert set(row) == {"concepts", "references"}, f"{where}: keys {sorted(row)}"
        concepts, references = row["concepts"], row["references"]
        assert isinstance(concepts, list), f"{where}: concepts is not a list"
        assert isinstance(references, list), f"{where}: references is not a list"
        assert all(isinstance(c, str) for c in concepts), f"{where}: non-string concept"
        assert all(isinstance(r, str) for r in references), f"{where}: non-string reference"


@pytest.mark.parametrize("split", SPLITS)
def test_concepts_are_3_to_5_distinct_lowercase_words(split: str) -> None:
    for where, row in _rows(split):
        concepts = row["concepts"]
        assert 3 <= len(concepts) <= 5, f"{where}: {len(concepts)} concepts"
        assert len(set(concepts)) == len(concepts), f"{where}: repeated concept {concepts}"
        for concept in concepts:
            assert concept.isalpha() and concept.islower(), f"{where}: bad concept {concept!r}"


@pytest.mark.parametrize("split", SPLITS)
def test_references_are_2_to_4_distinct_sentences(split: str) -> None:
    for where, row in _rows(split):
        references = row["references"]
        assert 2 <= len(references) <= 4, f"{where}: {len(references)} references"
        assert len(set(references)) == len(references), f"{where}: repeated reference"
        for ref in references:
            assert ref == ref.strip(), f"{where}: surrounding whitespace in {ref!r}"
            assert 6 <= len(ref.split()) <= 25, f"{where}: {len(ref.split())} words in {ref!r}"
            assert ref[0].isupper() and ref[-1] in ".!?", f"{where}: not a sentence: {ref!r}"


@pytest.mark.parametrize("split", SPLITS)
def test_every_reference_mentions_every_concept(split: str) -> None:
    for where, row in _rows(split):
        for ref in row["references"]:
            lowered = ref.lower()
            for concept in row["concepts"]:
                stem = concept[:3]
                assert stem in lowered, f"{where}: {concept!r} ({stem!r}) missing from {ref!r}"


def test_no_duplicate_concept_sets_across_splits() -> None:
    seen: dict[frozenset[str], str] = {}
    for split in SPLITS:
        for where, row in _rows(split):
            key = frozenset(row["concepts"])
            assert key not in seen, f"{where}: concept set {sorted(key)} repeats {seen[key]}"
            seen[key] = where
    assert len(seen) == sum(EXPECTED_ROWS.values())
