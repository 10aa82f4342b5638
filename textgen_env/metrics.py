"""Evaluation metrics for a set of generations: fluency, sentiment, overlap and diversity.

:func:`compute_metrics` returns one flat ``dict[str, float]``. Scales: ``bleu_4`` is in
[0, 100] (sacrebleu), ``cider_d`` in [0, 10], the other overlap scores and ``distinct_*`` in
[0, 1], ``sentiment_vader`` in [-1, 1].
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from typing import Any

import numpy as np

from textgen_env._checks import check_int
from textgen_env.rewards.overlap import CiderD, simple_tokenize
from textgen_env.rewards.sentiment import VaderSentiment, _check_hf_pair, _model_max_length
from textgen_env.rewards.similarity import TextEncoder

__all__ = ["bertscore_f1", "compute_metrics", "distinct_n", "perplexity"]

_PERPLEXITY_BATCH = 8


def distinct_n(generations: Sequence[str], n: int) -> float:
    """Corpus-level distinct-n: unique n-grams / total n-grams over all generations.

    Words are whitespace-separated and compared as they are (case-sensitive). Returns 0.0
    when the generations hold no n-gram at all.
    """
    n = check_int(n, "n", minimum=1)
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in generations:
        words = text.split()
        for i in range(len(words) - n + 1):
            seen.add(tuple(words[i : i + n]))
            total += 1
    return len(seen) / total if total else 0.0


def perplexity(
    model: Any,
    tokenizer: Any,
    generations: Sequence[str],
    prompts: Sequence[str] | None = None,
) -> float:
    """Token-weighted perplexity of ``generations`` under a causal LM.

    ``exp(total negative log-likelihood / total scored tokens)`` over all generations. With
    ``prompts``, each generation is scored conditioned on its prompt (prompt tokens are not
    scored); without them, on the tokenizer's BOS token if it has one (else the first token of
    each generation is context only). Sequences longer than the model's window keep their end.

    Raises:
        TypeError: ``model`` or ``tokenizer`` is not a Hugging Face one.
        ValueError: Lengths disagree, or no token could be scored (e.g. all generations empty).
    """
    import torch

    _check_hf_pair(model, tokenizer)
    if prompts is not None and len(prompts) != len(generations):
        raise ValueError(f"got {len(prompts)} prompts for {len(generations)} generations")
    bos = getattr(tokenizer, "bos_token_id", None)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    window = _model_max_length(model, tokenizer, default=1024)
    device = next(model.parameters()).device
    rows: list[tuple[list[int], int]] = []  # (ids, number of leading context tokens)
    for i, text in enumerate(generations):
        gen_ids = list(tokenizer.encode(text, add_special_tokens=False))
        if prompts is not None:
            context = list(tokenizer.encode(prompts[i], add_special_tokens=False))
        else:
            context = [] if bos is None else [bos]
        ids = (context + gen_ids)[-window:]
        rows.append((ids, max(1, len(ids) - len(gen_ids))))
    total_nll, total_tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(rows), _PERPLEXITY_BATCH):
            chunk = [r for r in rows[start : start + _PERPLEXITY_BATCH] if len(r[0]) > r[1]]
            if not chunk:
                continue
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            attention = torch.zeros((len(chunk), width), dtype=torch.long)
            scored = torch.zeros((len(chunk), width), dtype=torch.bool)
            for j, (row, n_context) in enumerate(chunk):
                ids[j, : len(row)] = torch.as_tensor(row)
                attention[j, : len(row)] = 1
                scored[j, n_context : len(row)] = True
            logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            target_logp = logp.gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
            mask = scored[:, 1:].to(device)
            total_nll -= float(target_logp[mask].sum())
            total_tokens += int(mask.sum())
    if total_tokens == 0:
        raise ValueError("perplexity: the generations hold no token to score")
    return math.exp(total_nll / total_tokens)


def bertscore_f1(
    encoder: TextEncoder, generations: Sequence[str], references: Sequence[Sequence[str]]
) -> np.ndarray:
    """BERTScore-style F1 per generation: greedy matching of contextual token embeddings.

    Precision averages, over generation tokens, the best cosine similarity with a reference
    token; recall the same from the reference side; F1 is their harmonic mean, and the best
    reference counts. No idf weighting and no baseline rescaling; an empty side scores 0.
    """
    unique: dict[str, int] = {}
    for text in [*generations, *(r for group in references for r in group)]:
        unique.setdefault(text, len(unique))
    tokens = encoder.token_embeddings(list(unique))
    scores = np.zeros(len(generations), dtype=np.float64)
    for i, (text, group) in enumerate(zip(generations, references, strict=True)):
        cand = tokens[unique[text]]
        for ref_text in group:
            ref = tokens[unique[ref_text]]
            if cand.shape[0] == 0 or ref.shape[0] == 0:
                continue
            sim = cand @ ref.T
            precision = float(sim.max(dim=1).values.mean())
            recall = float(sim.max(dim=0).values.mean())
            if precision + recall > 0:
                scores[i] = max(scores[i], 2 * precision * recall / (precision + recall))
    return scores


def _meteor(generations: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    if shutil.which("java") is None:
        raise RuntimeError(
            "METEOR needs a Java runtime on PATH (e.g. apt-get install default-jre-headless); "
            "pass meteor=False to skip it"
        )
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = Meteor()
    try:
        res = {i: [simple_tokenize(g)] for i, g in enumerate(generations)}
        gts = {i: [simple_tokenize(r) for r in group] for i, group in enumerate(references)}
        score, _ = scorer.compute_score(gts, res)
    finally:
        # Meteor.__del__ stops Java but takes the lock first, which an exception inside
        # compute_score leaves held: release it so the cleanup cannot deadlock.
        if scorer.lock.locked():
            scorer.lock.release()
        del scorer
    return float(score)


def _check_texts(texts: object, name: str) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"{name} must be a sequence of str")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(text).__name__}")
    return list(texts)


def compute_metrics(
    generations: Sequence[str],
    references: Sequence[Sequence[str]] | None = None,
    prompts: Sequence[str] | None = None,
    *,
    sentiment: bool = False,
    perplexity_model: Any | None = None,
    perplexity_tokenizer: Any | None = None,
    bertscore: bool = False,
    bertscore_encoder: TextEncoder | None = None,
    cider: bool = True,
    meteor: bool = True,
) -> dict[str, float]:
    """Compute the evaluation metrics of a set of generations.

    Always: ``distinct_1``, ``distinct_2`` (corpus-level unique / total n-grams, whitespace
    words) and ``mean_length`` (whitespace words). With ``references``: ``bleu_4`` (sacrebleu
    corpus BLEU, 0-100), ``rouge_1``, ``rouge_2``, ``rouge_l`` (rouge-score, stemmed, mean of
    the per-generation F-measure of the best reference), and as flagged ``cider_d``
    (pycocoevalcap CIDEr-D, idf from these references, mean over generations), ``meteor``
    (pycocoevalcap METEOR 1.5 corpus score; needs Java) and ``bertscore_minilm_f1``. The
    ``cider`` and ``meteor`` flags are ignored without references.

    ``bertscore_minilm_f1`` is BERTScore-style greedy token matching with the last layer of
    all-MiniLM-L6-v2 (no idf, no rescaling); it is *not* the standard roberta-large
    BERTScore, so compare it only with itself.

    Args:
        generations: The generated texts.
        references: One non-empty group of reference texts per generation.
        prompts: One prompt per generation; perplexity is then conditioned on it.
        sentiment: Add ``sentiment_vader``, the mean VADER compound score of the generations.
        perplexity_model: A causal LM; with ``perplexity_tokenizer`` adds ``perplexity``
            (token-weighted over all generations, see :func:`perplexity`).
        perplexity_tokenizer: The tokenizer of ``perplexity_model``.
        bertscore: Add ``bertscore_minilm_f1`` (needs references).
        bertscore_encoder: Encoder to use for it (default: the packaged MiniLM, loaded here).
        cider: Add ``cider_d`` when references are given.
        meteor: Add ``meteor`` when references are given.

    Returns:
        A flat dict of metric name to float.

    Raises:
        TypeError: A text or reference group has the wrong type.
        ValueError: Lengths disagree, a reference group is empty, ``generations`` is empty,
            only one of the perplexity model/tokenizer is given, or ``bertscore`` is set
            without references.
        RuntimeError: METEOR was asked for (with references) but Java is missing.
    """
    generations = _check_texts(generations, "generations")
    if not generations:
        raise ValueError("generations is empty")
    n = len(generations)
    if prompts is not None:
        prompts = _check_texts(prompts, "prompts")
        if len(prompts) != n:
            raise ValueError(f"got {len(prompts)} prompts for {n} generations")
    refs: list[list[str]] | None = None
    if references is not None:
        if isinstance(references, str) or len(references) != n:
            raise ValueError(f"references must hold one group per generation ({n})")
        refs = [_check_texts(group, f"references[{i}]") for i, group in enumerate(references)]
        if any(not group for group in refs):
            raise ValueError("every generation needs at least one reference")
    if (perplexity_model is None) != (perplexity_tokenizer is None):
        raise ValueError("pass both perplexity_model and perplexity_tokenizer, or neither")
    if bertscore and refs is None:
        raise ValueError("bertscore=True needs references")

    out: dict[str, float] = {
        "distinct_1": distinct_n(generations, 1),
        "distinct_2": distinct_n(generations, 2),
        "mean_length": float(np.mean([len(g.split()) for g in generations])),
    }
    if sentiment:
        empty = [""] * n
        vader = VaderSentiment()(empty, generations, [()] * n)
        out["sentiment_vader"] = float(vader.mean())
    if perplexity_model is not None:
        out["perplexity"] = perplexity(perplexity_model, perplexity_tokenizer, generations, prompts)
    if refs is None:
        return out

    import sacrebleu
    from rouge_score.rouge_scorer import RougeScorer

    width = max(len(group) for group in refs)
    streams = [[group[k] if k < len(group) else None for group in refs] for k in range(width)]
    out["bleu_4"] = float(sacrebleu.corpus_bleu(generations, streams).score)
    rouge = RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    per_item = [rouge.score_multi(group, g) for g, group in zip(generations, refs, strict=True)]
    for key, name in (("rouge1", "rouge_1"), ("rouge2", "rouge_2"), ("rougeL", "rouge_l")):
        out[name] = float(np.mean([s[key].fmeasure for s in per_item]))
    if cider:
        out["cider_d"] = float(CiderD()([""] * n, generations, refs).mean())
    if meteor:
        out["meteor"] = _meteor(generations, refs)
    if bertscore:
        encoder = TextEncoder() if bertscore_encoder is None else bertscore_encoder
        out["bertscore_minilm_f1"] = float(bertscore_f1(encoder, generations, refs).mean())
    return out
