"""Reward throughput (texts/s) of each reward on realistic-length texts, CPU.

Texts come from the bundled data: IMDB review snippets (sentiment rewards) and CommonGen
sentences with their references (overlap and similarity rewards), cycled to 256 per batch.
Each reward is built once (build time reported), warmed up on a few texts, then timed on the
whole batch; the figure is the median over repeats. The 1-minute load average before and after
is recorded: on a shared 2-core machine other processes can slow the model rewards severalfold.
The zero-shot judge runs the offline SmolLM2-135M-Instruct (``textgen_env.models``) on a
smaller batch, and is skipped with a note when that model cannot be loaded.

Prints a table and writes ``benchmarks/results/reward_throughput.json``.
Run: ``.venv/bin/python benchmarks/reward_throughput.py [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from transformers import DistilBertConfig, DistilBertForSequenceClassification

from textgen_env.rewards.base import check_rewards
from textgen_env.rewards.overlap import CiderD, RougeL
from textgen_env.rewards.sentiment import (
    ClassifierSentiment,
    VaderSentiment,
    ZeroShotSentimentJudge,
)
from textgen_env.rewards.similarity import SemanticSimilarity, TextEncoder

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "textgen_env" / "data"
OUT = ROOT / "benchmarks" / "results" / "reward_throughput.json"
N = 256
JUDGE_N = 32


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def reviews(n: int) -> list[str]:
    """``n`` IMDB snippets, two consecutive ones joined (about a 48-token completion)."""
    texts = [row["text"] for row in _read(DATA / "imdb" / "train.jsonl")]
    return [f"{texts[i % len(texts)]} {texts[(i + 1) % len(texts)]}" for i in range(n)]


def captions(n: int) -> tuple[list[str], list[list[str]]]:
    """``n`` CommonGen completions (a held-out reference or a neighbour's) and references."""
    rows = _read(DATA / "commongen" / "train.jsonl")
    completions, references = [], []
    for i in range(n):
        row = rows[i % len(rows)]
        refs = list(row["references"])
        if i % 2 == 0 and len(refs) > 1:  # a good completion: one held-out reference
            completions.append(refs.pop())
        else:  # a poorer one: a sentence written for the next item's concepts
            completions.append(rows[(i + 1) % len(rows)]["references"][0])
        references.append(refs)
    return completions, references


def timed(
    reward: Callable, texts: list[str], refs: list[list[str]], repeats: int
) -> tuple[float, list[float]]:
    """Median seconds of one batched call over ``repeats`` (after a small warm-up)."""
    prompts = [""] * len(texts)
    reward(prompts[:8], texts[:8], refs[:8])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        values = reward(prompts, texts, refs)
        times.append(time.perf_counter() - start)
        check_rewards(values, len(texts))
    return statistics.median(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    review_texts = reviews(N)
    caption_texts, caption_refs = captions(N)
    train_refs = [row["references"] for row in _read(DATA / "commongen" / "train.jsonl")]
    no_refs: list[list[str]] = [[] for _ in range(N)]
    minilm = TextEncoder()  # its BERT-uncased tokenizer stands in for DistilBERT's (same vocab)

    def tiny_classifier() -> ClassifierSentiment:
        config = DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64, num_labels=2)
        return ClassifierSentiment(DistilBertForSequenceClassification(config), minilm.tokenizer)

    def base_classifier() -> ClassifierSentiment:
        config = DistilBertConfig(num_labels=2)  # distilbert-base shape, as distilbert-imdb
        return ClassifierSentiment(DistilBertForSequenceClassification(config), minilm.tokenizer)

    def judge() -> ZeroShotSentimentJudge:
        from textgen_env.models import load_causal_lm

        model, tokenizer = load_causal_lm()
        return ZeroShotSentimentJudge(model, tokenizer, chat=True, batch_size=16)

    cases: list[tuple[str, Callable[[], Callable], list[str], list[list[str]]]] = [
        ("VaderSentiment", VaderSentiment, review_texts, no_refs),
        ("RougeL", RougeL, caption_texts, caption_refs),
        ("CiderD (per-batch idf)", CiderD, caption_texts, caption_refs),
        ("CiderD (idf of train split)", lambda: CiderD(train_refs), caption_texts, caption_refs),
        ("SemanticSimilarity (MiniLM)", SemanticSimilarity, caption_texts, caption_refs),
        ("ClassifierSentiment (tiny random)", tiny_classifier, review_texts, no_refs),
        ("ClassifierSentiment (distilbert-base size)", base_classifier, review_texts, no_refs),
        (
            "ZeroShotSentimentJudge (SmolLM2-135M, chat)",
            judge,
            review_texts[:JUDGE_N],
            no_refs[:JUDGE_N],
        ),
    ]
    results: dict = {
        "batch_texts": N,
        "judge_batch_texts": JUDGE_N,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1min_before": os.getloadavg()[0],
        "mean_words": {
            "reviews": float(np.mean([len(t.split()) for t in review_texts])),
            "captions": float(np.mean([len(t.split()) for t in caption_texts])),
            "references_per_caption": float(np.mean([len(r) for r in caption_refs])),
        },
        "rewards": {},
    }
    print(f"{'reward':<46}{'build s':>9}{'texts/s':>11}")
    for name, build, texts, refs in cases:
        try:
            start = time.perf_counter()
            reward = build()
            build_s = time.perf_counter() - start
        except (ImportError, OSError, RuntimeError) as err:
            results["rewards"][name] = {"skipped": f"{type(err).__name__}: {err}"}
            print(f"{name:<46}{'skipped: ' + type(err).__name__:>20}")
            continue
        median, times = timed(reward, texts, refs, args.repeats)
        results["rewards"][name] = {
            "texts": len(texts),
            "build_seconds": build_s,
            "median_seconds": median,
            "seconds": times,
            "texts_per_second": len(texts) / median,
        }
        print(f"{name:<46}{build_s:>9.2f}{len(texts) / median:>11,.1f}")
    results["load_average_1min_after"] = os.getloadavg()[0]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
