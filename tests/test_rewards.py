"""Tests of the task rewards: sentiment, overlap and similarity (tiny offline models)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from textgen_env.rewards.base import RewardFunction, check_rewards
from textgen_env.rewards.overlap import (
    CiderD,
    RougeL,
    Spider,
    missing_spice_files,
    simple_tokenize,
)
from textgen_env.rewards.sentiment import (
    ClassifierSentiment,
    VaderSentiment,
    ZeroShotSentimentJudge,
    join_prompt_completion,
)
from textgen_env.rewards.similarity import RewardModelScore, SemanticSimilarity

VOCAB_TEXT = (
    "the a movie film was is great good bad terrible awful fun boring plot acting review "
    "sentiment of this positive negative or answer with one word and i it very"
)
WORDS = VOCAB_TEXT.split()


def make_tokenizer():
    """An offline WordLevel tokenizer over WORDS wrapped for transformers."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[EOS]": 4}
    for word in WORDS:
        vocab[word] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        eos_token="[EOS]",
    )


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


def tiny_classifier(num_labels: int, seed: int = 0):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(seed)
    config = DistilBertConfig(
        vocab_size=len(WORDS) + 5,
        dim=16,
        n_layers=1,
        n_heads=2,
        hidden_dim=32,
        max_position_embeddings=32,
        num_labels=num_labels,
        pad_token_id=0,
    )
    return DistilBertForSequenceClassification(config)


@pytest.fixture(scope="module")
def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(WORDS) + 5,
        n_layer=1,
        n_embd=16,
        n_head=2,
        n_positions=128,
        bos_token_id=4,
        eos_token_id=4,
        pad_token_id=0,
    )
    return GPT2LMHeadModel(config)


def call(reward, completions, references=None, prompts=None):
    n = len(completions)
    prompts = [""] * n if prompts is None else prompts
    references = [()] * n if references is None else references
    return check_rewards(reward(prompts, completions, references), n)


# --- helpers ------------------------------------------------------------------------------


def test_join_prompt_completion_adds_space_only_between_words():
    assert join_prompt_completion("I liked", "it") == "I liked it"
    assert join_prompt_completion("I liked ", "it") == "I liked it"
    assert join_prompt_completion("I liked", " it") == "I liked it"
    assert join_prompt_completion("", "it") == "it"


def test_simple_tokenize_lowercases_and_strips_punctuation():
    assert simple_tokenize("A Dog, running!  Fast...") == "a dog running fast"
    assert simple_tokenize("  ") == ""


# --- VADER --------------------------------------------------------------------------------


def test_vader_orders_sentiment_and_is_a_reward_function():
    reward = VaderSentiment()
    assert isinstance(reward, RewardFunction)
    scores = call(reward, ["This movie was great, I loved it!", "Awful, terrible film.", ""])
    assert scores[0] > 0.5 and scores[1] < -0.5 and scores[2] == 0.0
    assert np.all((scores >= -1) & (scores <= 1))


def test_vader_include_prompt_scores_the_prompt_too():
    prompts, completions = ["What a wonderful, great day."], ["It rained."]
    alone = call(VaderSentiment(), completions, prompts=prompts)
    joined = call(VaderSentiment(include_prompt=True), completions, prompts=prompts)
    assert alone[0] == 0.0 and joined[0] > 0.5


def test_rewards_reject_bad_batches():
    reward = VaderSentiment()
    with pytest.raises(ValueError, match="same length"):
        reward(["a"], ["a", "b"], [(), ()])
    with pytest.raises(TypeError, match="completions"):
        reward([""], [3], [()])
    with pytest.raises(TypeError, match="references"):
        RougeL()([""], ["a"], ["a reference as a bare string"])
    with pytest.raises(ValueError, match="empty"):
        RougeL()([""], ["a"], [()])
    with pytest.raises(TypeError):
        VaderSentiment(include_prompt="yes")


# --- classifier sentiment -----------------------------------------------------------------


def test_classifier_sentiment_matches_softmax_and_is_batch_independent(tokenizer):
    model = tiny_classifier(2)
    texts = ["the movie was great fun", "bad", "", "the plot " * 40]
    big = call(ClassifierSentiment(model, tokenizer, batch_size=32), texts)
    small = call(ClassifierSentiment(model, tokenizer, batch_size=1), texts)
    np.testing.assert_allclose(big, small, atol=1e-6)
    assert np.all((big > 0) & (big < 1))
    enc = tokenizer(texts[:1], return_tensors="pt")
    with torch.no_grad():
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    assert big[0] == pytest.approx(float(torch.softmax(logits, -1)[0, 1]), abs=1e-6)
    negative = call(ClassifierSentiment(model, tokenizer, positive_label=0), texts)
    np.testing.assert_allclose(negative, 1 - big, atol=1e-6)


def test_classifier_sentiment_does_not_mutate_inputs(tokenizer):
    completions, references, prompts = ["good film"], [("ref",)], ["p"]
    before = copy.deepcopy((prompts, completions, references))
    ClassifierSentiment(tiny_classifier(2), tokenizer, include_prompt=True)(
        prompts, completions, references
    )
    assert (prompts, completions, references) == before


def test_classifier_sentiment_validates_arguments(tokenizer):
    with pytest.raises(ValueError, match="positive_label"):
        ClassifierSentiment(tiny_classifier(2), tokenizer, positive_label=2)
    with pytest.raises(ValueError, match="batch_size"):
        ClassifierSentiment(tiny_classifier(2), tokenizer, batch_size=0)
    with pytest.raises(ValueError, match="2 labels"):
        ClassifierSentiment(tiny_classifier(1), tokenizer)
    with pytest.raises(TypeError, match="model"):
        ClassifierSentiment("lvwerra/distilbert-imdb", tokenizer)


# --- zero-shot judge ----------------------------------------------------------------------


def test_zero_shot_judge_range_determinism_and_batching(tokenizer, tiny_gpt2):
    judge = ZeroShotSentimentJudge(tiny_gpt2, tokenizer, batch_size=3)
    texts = ["the movie was great fun", "awful", "boring boring plot and acting", ""]
    scores = call(judge, texts)
    assert scores.shape == (4,)
    assert np.all((scores > 0) & (scores < 1))
    np.testing.assert_array_equal(scores, call(judge, texts))
    # left padding + position ids: a text scores the same alone as in a padded batch
    alone = [call(judge, [t])[0] for t in texts]
    np.testing.assert_allclose(scores, alone, atol=1e-5)
    assert len(set(np.round(scores, 8))) > 1


def test_zero_shot_judge_uses_the_answer_token_logits(tokenizer, tiny_gpt2):
    judge = ZeroShotSentimentJudge(tiny_gpt2, tokenizer)
    prompt = judge.build_prompt("great film")
    assert prompt.startswith("Review: great film\n") and prompt.endswith("Answer:")
    enc = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        last = tiny_gpt2(**enc).logits[0, -1]
    pos, neg = tokenizer.convert_tokens_to_ids(["positive", "negative"])
    expected = torch.sigmoid(last[pos] - last[neg]).item()
    assert call(judge, ["great film"])[0] == pytest.approx(expected, abs=1e-6)


def test_zero_shot_judge_validates_arguments(tokenizer, tiny_gpt2):
    with pytest.raises(ValueError, match="text"):
        ZeroShotSentimentJudge(tiny_gpt2, tokenizer, template="no placeholder")
    with pytest.raises(ValueError, match="first tokens"):
        ZeroShotSentimentJudge(tiny_gpt2, tokenizer, positive_word=" good", negative_word=" good")
    with pytest.raises(ValueError, match="chat_template"):
        ZeroShotSentimentJudge(tiny_gpt2, tokenizer, chat=True)


@pytest.mark.slow
def test_zero_shot_judge_with_smollm2_separates_clear_reviews(smollm2):
    model, tokenizer = smollm2
    judge = ZeroShotSentimentJudge(model, tokenizer, chat=True)
    positive = ["I loved this movie, it was wonderful and moving.", "Superb acting, a must see!"]
    negative = ["I hated this movie, it was boring and stupid.", "Awful acting, avoid it!"]
    scores = call(judge, positive + negative)
    assert scores[:2].min() > scores[2:].max()


# --- ROUGE-L ------------------------------------------------------------------------------


def test_rouge_l_values():
    reward = RougeL()
    scores = call(
        reward,
        ["the cat sat on the mat", "the cat sat down", "zebra"],
        [("the cat sat on the mat",), ("a dog ran", "the cat ran away"), ("the cat",)],
    )
    # LCS("the cat sat down", "the cat ran away") = 2 of 4 words both ways -> F = 0.5
    np.testing.assert_allclose(scores, [1.0, 0.5, 0.0])


# --- CIDEr-D ------------------------------------------------------------------------------

CAPTIONS = ["a man riding a horse", "two dogs play in the snow", "a plate of food"]
REFS = [
    ("a man rides a horse on the beach", "a person riding a brown horse"),
    ("two dogs playing in snow", "dogs running through the snow"),
    ("a plate with food on it", "a white plate of food"),
]


def test_cider_d_matches_pycocoevalcap_and_ranks_matches_higher():
    from pycocoevalcap.cider.cider import Cider

    scores = call(CiderD(), CAPTIONS, REFS)
    gts = {i: [simple_tokenize(r) for r in refs] for i, refs in enumerate(REFS)}
    res = {i: [simple_tokenize(c)] for i, c in enumerate(CAPTIONS)}
    _, expected = Cider().compute_score(gts, res)
    np.testing.assert_allclose(scores, expected)
    swapped = call(CiderD(), CAPTIONS[1:] + CAPTIONS[:1], REFS)
    assert np.all(scores > swapped)
    assert np.all((scores >= 0) & (scores <= 10))


def test_cider_d_fixed_corpus_idf():
    per_batch = call(CiderD(), CAPTIONS, REFS)
    fixed = CiderD(corpus_references=REFS)
    np.testing.assert_allclose(call(fixed, CAPTIONS, REFS), per_batch)
    # with a fixed idf a completion's reward no longer depends on its batch
    alone = [call(fixed, [c], [r])[0] for c, r in zip(CAPTIONS, REFS, strict=True)]
    np.testing.assert_allclose(alone, per_batch)
    # while per-batch idf gives a batch of one nothing (every n-gram has idf 0)
    assert call(CiderD(), CAPTIONS[:1], REFS[:1])[0] == 0.0
    # tokenization ignores case and punctuation
    np.testing.assert_allclose(
        call(fixed, ["A MAN, riding a horse!"], REFS[:1]), call(fixed, CAPTIONS[:1], REFS[:1])
    )


def test_cider_d_validates_arguments():
    with pytest.raises(ValueError, match="corpus_references"):
        CiderD(corpus_references=[])
    with pytest.raises(TypeError, match="corpus_references"):
        CiderD(corpus_references=["a bare string"])
    with pytest.raises(ValueError, match="n must"):
        CiderD(n=0)
    assert call(CiderD(), [], []).shape == (0,)


# --- SPIDEr -------------------------------------------------------------------------------


def test_spider_raises_clearly_when_spice_jars_are_missing(tmp_path, monkeypatch):
    import textgen_env.rewards.overlap as overlap

    monkeypatch.setattr(overlap, "_default_spice_dir", lambda: tmp_path)
    with pytest.raises(RuntimeError, match=r"stanford-corenlp-3\.6\.0-models\.jar") as info:
        Spider()
    assert str(tmp_path / "lib") in str(info.value)
    monkeypatch.setattr(overlap.shutil, "which", lambda name: None)
    assert any("java" in item for item in missing_spice_files(tmp_path))


def test_spider_is_the_mean_of_cider_d_and_spice():
    class FakeSpice:
        def compute_score(self, gts, res):
            assert set(gts) == set(res) and all(len(v) == 1 for v in res.values())
            per_item = [{"All": {"f": 0.25 * i}} for i in range(len(res))]
            return 0.0, per_item

    spider = Spider(corpus_references=REFS, spice=FakeSpice())
    cider = call(CiderD(corpus_references=REFS), CAPTIONS, REFS)
    np.testing.assert_allclose(
        call(spider, CAPTIONS, REFS), (cider + np.array([0.0, 0.25, 0.5])) / 2
    )
    with pytest.raises(TypeError, match="compute_score"):
        Spider(spice=object())


# --- similarity ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    return SemanticSimilarity()


def test_semantic_similarity_with_packaged_minilm(minilm):
    scores = call(
        minilm,
        ["A man is riding a horse.", "A man is riding a horse.", "The stock market fell."],
        [
            ("A man is riding a horse.",),
            ("Someone cooks pasta.", "A person rides a horse."),
            ("A person rides a horse.",),
        ],
    )
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    assert 0.5 < scores[1] < 0.99
    assert scores[2] < 0.3


def test_semantic_similarity_accepts_a_loaded_model(tokenizer):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    reward = SemanticSimilarity(BertModel(config), tokenizer)
    scores = call(reward, ["good film", "the plot"], [("good film",), ("awful acting",)])
    assert scores[0] == pytest.approx(1.0, abs=1e-5) and -1 <= scores[1] < 1
    with pytest.raises(ValueError, match="tokenizer"):
        SemanticSimilarity(BertModel(config))
    with pytest.raises(ValueError, match="tokenizer"):
        SemanticSimilarity("some/path", tokenizer)


def test_reward_model_score_scores_prompt_and_completion(tokenizer):
    model = tiny_classifier(1, seed=1)
    reward = RewardModelScore(model, tokenizer, batch_size=2)
    prompts, completions = ["the movie", "the film", "i"], ["was great", "was awful", ""]
    scores = call(reward, completions, prompts=prompts)
    enc = tokenizer(["the movie was great"], return_tensors="pt")
    with torch.no_grad():
        expected = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    assert scores[0] == pytest.approx(float(expected[0, 0]), abs=1e-6)
    only = call(
        RewardModelScore(model, tokenizer, include_prompt=False), completions, None, prompts
    )
    assert not np.allclose(scores, only)
    with pytest.raises(ValueError, match="one output"):
        RewardModelScore(tiny_classifier(2), tokenizer)
