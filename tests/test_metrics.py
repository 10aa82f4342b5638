"""Tests of compute_metrics on hand-computable examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import textgen_env.metrics as metrics
from textgen_env.metrics import compute_metrics, distinct_n, perplexity

VOCAB_TEXT = "the cat sat on mat dog ran away a movie was great bad"
WORDS = VOCAB_TEXT.split()


@pytest.fixture(scope="module")
def lm_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[BOS]": 2}
    for word in WORDS:
        vocab[word] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]"
    )


def tiny_lm(vocab_size: int, zero: bool = False):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=vocab_size,
        n_layer=1,
        n_embd=16,
        n_head=2,
        n_positions=64,
        bos_token_id=2,
        eos_token_id=2,
        pad_token_id=0,
    )
    model = GPT2LMHeadModel(config).eval()
    if zero:
        with torch.no_grad():
            for param in model.parameters():
                param.zero_()
    return model


def test_reference_free_metrics_by_hand():
    out = compute_metrics(["a b a b", "a b"])
    assert set(out) == {"distinct_1", "distinct_2", "mean_length"}
    assert out["distinct_1"] == pytest.approx(2 / 6)  # {a, b} over 6 words
    assert out["distinct_2"] == pytest.approx(2 / 4)  # {ab, ba} over ab, ba, ab, ab
    assert out["mean_length"] == pytest.approx(3.0)
    assert distinct_n(["one"], 2) == 0.0
    assert all(isinstance(v, float) for v in out.values())


def test_identical_generation_and_reference():
    gens = ["the cat sat on the mat", "a dog ran far away from home"]
    refs = [[gens[0]], ["a quick reference", gens[1]]]
    out = compute_metrics(gens, refs, meteor=False)
    assert out["bleu_4"] == pytest.approx(100.0)
    for key in ("rouge_1", "rouge_2", "rouge_l"):
        assert out[key] == pytest.approx(1.0)
    # CIDEr-D averages over references; with one each and disjoint items (idf log 2): 10
    single = compute_metrics(gens, [[g] for g in gens], meteor=False)
    assert single["cider_d"] == pytest.approx(10.0)
    assert out["cider_d"] < single["cider_d"]


def test_rouge_by_hand():
    out = compute_metrics(["the cat sat down"], [["the cat ran away"]], cider=False, meteor=False)
    assert out["rouge_1"] == pytest.approx(0.5)  # 2 of 4 words each way
    assert out["rouge_2"] == pytest.approx(1 / 3)  # "the cat" of 3 bigrams each way
    assert out["rouge_l"] == pytest.approx(0.5)  # LCS "the cat"
    assert out["bleu_4"] < 100.0


def test_meteor_with_java():
    if metrics.shutil.which("java") is None:
        pytest.skip("no Java runtime")
    # one exact match (case and punctuation normalised away) and one miss: about half
    out = compute_metrics(
        ["the cat sat on the mat", "zebra"], [["The cat sat on the mat."], ["a dog ran"]]
    )
    assert 0.3 < out["meteor"] < 0.7


def test_meteor_without_java_raises_only_when_asked(monkeypatch):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="Java"):
        compute_metrics(["a b"], [["a b"]])
    assert "meteor" not in compute_metrics(["a b"], [["a b"]], meteor=False)
    assert "meteor" not in compute_metrics(["a b"])


def test_sentiment_is_the_mean_vader_compound():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    gens = ["What a great, wonderful film!", "Terrible."]
    analyzer = SentimentIntensityAnalyzer()
    expected = np.mean([analyzer.polarity_scores(g)["compound"] for g in gens])
    assert compute_metrics(gens, sentiment=True)["sentiment_vader"] == pytest.approx(expected)


def test_perplexity_of_a_uniform_model_is_the_vocab_size(lm_tokenizer):
    model = tiny_lm(len(lm_tokenizer), zero=True)
    out = compute_metrics(
        ["the cat sat", "a dog"], perplexity_model=model, perplexity_tokenizer=lm_tokenizer
    )
    assert out["perplexity"] == pytest.approx(len(lm_tokenizer), rel=1e-5)


def test_perplexity_is_token_weighted_and_conditioned_on_prompts(lm_tokenizer):
    model = tiny_lm(len(lm_tokenizer))

    def nll(ids: list[int], n_context: int) -> tuple[float, int]:
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0], -1)
        terms = [-float(logp[t - 1, ids[t]]) for t in range(n_context, len(ids))]
        return sum(terms), len(terms)

    enc = lm_tokenizer.convert_tokens_to_ids
    a, n_a = nll(enc(["[BOS]", "the", "cat", "sat", "on", "the", "mat"]), 1)
    b, n_b = nll(enc(["[BOS]", "great"]), 1)
    got = perplexity(model, lm_tokenizer, ["the cat sat on the mat", "great"])
    assert got == pytest.approx(math.exp((a + b) / (n_a + n_b)), rel=1e-5)
    c, n_c = nll(enc(["a", "movie", "was", "great"]), 2)
    got = perplexity(model, lm_tokenizer, ["was great"], prompts=["a movie"])
    assert got == pytest.approx(math.exp(c / n_c), rel=1e-5)
    with pytest.raises(ValueError, match="no token"):
        perplexity(model, lm_tokenizer, [""])


def test_bertscore_minilm():
    gens = ["A man is riding a horse.", "The stock market fell sharply."]
    refs = [["A man is riding a horse."], ["A man is riding a horse."]]
    same = compute_metrics(gens[:1], refs[:1], bertscore=True, cider=False, meteor=False)
    assert same["bertscore_minilm_f1"] == pytest.approx(1.0, abs=1e-5)
    both = compute_metrics(gens, refs, bertscore=True, cider=False, meteor=False)
    assert 0.5 < both["bertscore_minilm_f1"] < 1.0
    assert "bertscore_minilm_f1" not in compute_metrics(gens, refs, cider=False, meteor=False)


def test_bad_arguments():
    with pytest.raises(ValueError, match="empty"):
        compute_metrics([])
    with pytest.raises(TypeError):
        compute_metrics("a string")
    with pytest.raises(ValueError, match="one group"):
        compute_metrics(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="at least one reference"):
        compute_metrics(["a"], [[]], meteor=False)
    with pytest.raises(ValueError, match="prompts"):
        compute_metrics(["a"], prompts=["p", "q"])
    with pytest.raises(ValueError, match="perplexity_tokenizer"):
        compute_metrics(["a"], perplexity_model=object())
    with pytest.raises(ValueError, match="references"):
        compute_metrics(["a"], bertscore=True)
