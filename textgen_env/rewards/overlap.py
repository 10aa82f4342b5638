"""N-gram overlap rewards against references: ROUGE-L, CIDEr-D and SPIDEr (CIDEr-D + SPICE).

CIDEr-D and SPICE come from ``pycocoevalcap``; texts are tokenized here with a simple
lowercasing, punctuation-stripping tokenizer (:func:`simple_tokenize`) instead of the Java PTB
tokenizer that the COCO evaluation scripts use, so CIDEr-D needs no Java.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pycocoevalcap.cider.cider_scorer import CiderScorer

from textgen_env._checks import check_int, check_real
from textgen_env.rewards.sentiment import check_batch

__all__ = ["CiderD", "RougeL", "SpiceScorer", "Spider", "missing_spice_files", "simple_tokenize"]

_PUNCTUATION = re.compile(r"[^\w\s]|_")

# Files SPICE needs next to pycocoevalcap/spice/spice.py; pycocoevalcap ships all but CoreNLP.
_CORENLP_ZIP = "stanford-corenlp-full-2015-12-09.zip"
_SPICE_FILES = (
    "spice-1.0.jar",
    "lib/stanford-corenlp-3.6.0.jar",
    "lib/stanford-corenlp-3.6.0-models.jar",
)


def simple_tokenize(text: str) -> str:
    """Lowercase ``text``, turn punctuation into spaces and return the words joined by spaces."""
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())


class RougeL:
    """ROUGE-L F-measure of each completion against its references (max over them), in [0, 1].

    Uses the ``rouge-score`` package (its tokenizer keeps only ``[a-z0-9]`` words, so text in
    other scripts scores 0).

    Args:
        use_stemmer: Porter-stem words before matching (as RL4LMs and most papers do).
    """

    def __init__(self, use_stemmer: bool = True) -> None:
        if not isinstance(use_stemmer, bool):
            raise TypeError(f"use_stemmer must be a bool, got {type(use_stemmer).__name__}")
        from rouge_score.rouge_scorer import RougeScorer

        self._scorer = RougeScorer(["rougeL"], use_stemmer=use_stemmer)

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[Sequence[str]],
    ) -> np.ndarray:
        """Return the best ROUGE-L F-measure of each completion as float64 ``(n,)``."""
        check_batch(prompts, completions, references, need_references=True)
        return np.array(
            [
                self._scorer.score_multi(list(refs), completion)["rougeL"].fmeasure
                for completion, refs in zip(completions, references, strict=True)
            ],
            dtype=np.float64,
        )


def _tokenized_groups(references: Sequence[Sequence[str]], name: str) -> list[list[str]]:
    if isinstance(references, str):
        raise TypeError(f"{name} must be a sequence of reference groups, not a str")
    groups = []
    for i, group in enumerate(references):
        if isinstance(group, str) or not all(isinstance(r, str) for r in group):
            raise TypeError(f"{name}[{i}] must be a sequence of str")
        if len(group) == 0:
            raise ValueError(f"{name}[{i}] is empty")
        groups.append([simple_tokenize(r) for r in group])
    return groups


class _FixedIdfCiderScorer(CiderScorer):
    """pycocoevalcap's CIDEr-D scorer with document frequencies fixed from a reference corpus.

    ``CiderScorer.compute_cider`` sets ``ref_len`` (log of the corpus size) from the items being
    scored; the read-only property below keeps the corpus value instead, so the scoring code
    itself is pycocoevalcap's, unchanged.
    """

    def __init__(self, n: int, sigma: float, document_frequency: dict, log_size: float) -> None:
        self._log_size = log_size
        super().__init__(n=n, sigma=sigma)
        self.document_frequency = document_frequency

    @property
    def ref_len(self) -> float:
        return self._log_size

    @ref_len.setter
    def ref_len(self, value: object) -> None:
        del value  # ignore: the corpus size is fixed


class _ZeroDefaultDict(dict):
    """A dict returning 0.0 for unknown keys without inserting them (so it is never mutated)."""

    def __missing__(self, key: object) -> float:
        return 0.0


class CiderD:
    """CIDEr-D (pycocoevalcap) of each completion against its references, in [0, 10].

    CIDEr-D weighs n-grams (n = 1..4) by tf-idf, where the document frequencies and the corpus
    size come from a set of reference groups. By default that set is the references of the
    batch being scored, as in the COCO evaluation: fine for evaluating a whole split, but as an
    RL reward it is noisy (a completion's reward depends on the rest of its batch, and a batch
    of one always scores 0 because every reference n-gram then has idf 0). Pass
    ``corpus_references`` (the reference groups of the whole training split) to fix the idf
    once, which makes the reward a deterministic function of (completion, references).

    Args:
        corpus_references: One group of references per item of a split, to fix the idf from.
        n: Largest n-gram order.
        sigma: Width of CIDEr-D's Gaussian length penalty.
    """

    def __init__(
        self,
        corpus_references: Sequence[Sequence[str]] | None = None,
        n: int = 4,
        sigma: float = 6.0,
    ) -> None:
        n = check_int(n, "n", minimum=1)
        self.n = n
        self.sigma = check_real(sigma, "sigma", gt=0.0)
        self._document_frequency: dict | None = None
        self._log_size = 0.0
        if corpus_references is not None:
            groups = _tokenized_groups(corpus_references, "corpus_references")
            if not groups:
                raise ValueError("corpus_references is empty")
            counter = CiderScorer(n=n, sigma=self.sigma)
            for group in groups:
                counter.cook_append(None, group)
            counter.compute_doc_freq()
            self._document_frequency = _ZeroDefaultDict(counter.document_frequency)
            self._log_size = math.log(len(groups))

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[Sequence[str]],
    ) -> np.ndarray:
        """Return the CIDEr-D score of each completion as float64 ``(n,)``."""
        check_batch(prompts, completions, references, need_references=True)
        if not completions:
            return np.zeros(0, dtype=np.float64)
        groups = _tokenized_groups(references, "references")
        if self._document_frequency is None:
            if not any(ref for group in groups for ref in group):
                return np.zeros(len(completions), dtype=np.float64)  # no n-gram to weigh
            scorer: CiderScorer = CiderScorer(n=self.n, sigma=self.sigma)
        else:
            scorer = _FixedIdfCiderScorer(
                self.n, self.sigma, self._document_frequency, self._log_size
            )
        for completion, group in zip(completions, groups, strict=True):
            scorer.cook_append(simple_tokenize(completion), group)
        if self._document_frequency is None:
            _, scores = scorer.compute_score()
        else:
            scores = scorer.compute_cider()
        return np.asarray(scores, dtype=np.float64)


class SpiceScorer(Protocol):
    """What :class:`Spider` needs from SPICE: pycocoevalcap's ``Spice.compute_score`` shape."""

    def compute_score(
        self, gts: dict[int, list[str]], res: dict[int, list[str]]
    ) -> tuple[float, list[dict[str, Any]]]:
        """Score ``res[i][0]`` against ``gts[i]``; return (mean, per-item score dicts)."""
        ...


def _default_spice_dir() -> Path:
    import pycocoevalcap.spice.spice as spice_module

    return Path(spice_module.__file__).resolve().parent


def missing_spice_files(spice_dir: Path | None = None) -> list[str]:
    """List what SPICE needs but cannot find: Java on PATH and the jars in pycocoevalcap.

    Args:
        spice_dir: The folder of ``pycocoevalcap/spice/spice.py`` (found when ``None``).

    Returns:
        Human-readable descriptions of the missing pieces; empty when SPICE can run.
    """
    spice_dir = _default_spice_dir() if spice_dir is None else Path(spice_dir)
    missing = [str(spice_dir / name) for name in _SPICE_FILES if not (spice_dir / name).is_file()]
    if shutil.which("java") is None:
        missing.append("java (a Java runtime on PATH)")
    if spice_dir.is_dir() and not os.access(spice_dir, os.W_OK):
        missing.append(f"write access to {spice_dir} (SPICE writes its tmp/ and cache/ there)")
    return missing


class Spider:
    """SPIDEr: the mean of CIDEr-D (in [0, 10]) and SPICE F-score (in [0, 1]) per completion.

    SPICE runs pycocoevalcap's Java SPICE, which needs Java and the Stanford CoreNLP 3.6.0 jars
    that pycocoevalcap does not ship (it tries to download them on first use). The constructor
    checks for them and raises ``RuntimeError`` naming what is missing, rather than failing in
    the middle of training.

    Args:
        corpus_references: Passed to :class:`CiderD` to fix its idf (recommended for RL).
        spice: A SPICE scorer; default pycocoevalcap's ``Spice`` after the check above.
    """

    def __init__(
        self,
        corpus_references: Sequence[Sequence[str]] | None = None,
        spice: SpiceScorer | None = None,
    ) -> None:
        self.cider = CiderD(corpus_references=corpus_references)
        if spice is None:
            spice_dir = _default_spice_dir()
            missing = missing_spice_files(spice_dir)
            if missing:
                raise RuntimeError(
                    "SPICE cannot run; missing: "
                    + "; ".join(missing)
                    + f". Get {_CORENLP_ZIP} from the Stanford NLP site and copy its "
                    "stanford-corenlp-3.6.0.jar and stanford-corenlp-3.6.0-models.jar into "
                    f'{spice_dir / "lib"} (or, with internet access, run `python -c "from '
                    "pycocoevalcap.spice.get_stanford_models import get_stanford_models; "
                    'get_stanford_models()"`).'
                )
            from pycocoevalcap.spice.spice import Spice

            spice = Spice()
        elif not callable(getattr(spice, "compute_score", None)):
            raise TypeError(f"spice must have a compute_score method, got {type(spice).__name__}")
        self.spice = spice

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[Sequence[str]],
    ) -> np.ndarray:
        """Return (CIDEr-D + SPICE) / 2 for each completion as float64 ``(n,)``."""
        cider = self.cider(prompts, completions, references)
        if not completions:
            return cider
        groups = _tokenized_groups(references, "references")
        res = {i: [simple_tokenize(c)] for i, c in enumerate(completions)}
        gts = dict(enumerate(groups))
        _, per_item = self.spice.compute_score(gts, res)
        spice = np.array([float(item["All"]["f"]) for item in per_item], dtype=np.float64)
        if spice.shape != cider.shape:
            raise RuntimeError(f"SPICE returned {spice.size} scores for {cider.size} completions")
        return (cider + np.nan_to_num(spice, nan=0.0)) / 2.0
