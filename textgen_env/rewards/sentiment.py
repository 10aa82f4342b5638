"""Sentiment rewards: VADER (lexicon), a sequence classifier, and an instruct LM used as a judge.

The module also holds the small helpers the other reward modules share: argument checks for a
reward batch, joining a prompt with its completion, and batched forward passes of Hugging Face
models with manual padding.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np

from textgen_env._checks import check_int

__all__ = [
    "DEFAULT_JUDGE_TEMPLATE",
    "ClassifierSentiment",
    "VaderSentiment",
    "ZeroShotSentimentJudge",
    "check_batch",
    "join_prompt_completion",
    "scored_texts",
]

DEFAULT_JUDGE_TEMPLATE = (
    "Review: {text}\n"
    "Is the sentiment of this review positive or negative? Answer with one word.\n"
    "Answer:"
)


def check_batch(
    prompts: Sequence[str],
    completions: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    need_references: bool = False,
) -> None:
    """Validate the arguments of a reward call.

    Args:
        prompts: One prompt text per completion.
        completions: The generated texts.
        references: One sequence of reference texts per completion.
        need_references: Also require every completion to have at least one reference.

    Raises:
        TypeError: A text is not a ``str`` or a reference group is a bare string.
        ValueError: The three sequences differ in length, or a reference group is empty while
            ``need_references`` is set.
    """
    n = len(completions)
    if len(prompts) != n or len(references) != n:
        raise ValueError(
            f"prompts, completions and references must have the same length, got "
            f"{len(prompts)}, {n} and {len(references)}"
        )
    for name, texts in (("prompts", prompts), ("completions", completions)):
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"{name}[{i}] must be a str, got {type(text).__name__}")
    for i, group in enumerate(references):
        if isinstance(group, str):
            raise TypeError(f"references[{i}] must be a sequence of str, not a str")
        for ref in group:
            if not isinstance(ref, str):
                raise TypeError(f"references[{i}] must hold str, got {type(ref).__name__}")
        if need_references and len(group) == 0:
            raise ValueError(f"references[{i}] is empty; this reward needs at least one reference")


def join_prompt_completion(prompt: str, completion: str) -> str:
    """Concatenate a prompt and its completion, adding a space only where words would merge."""
    if prompt and completion and not prompt[-1].isspace() and not completion[0].isspace():
        return f"{prompt} {completion}"
    return prompt + completion


def scored_texts(
    prompts: Sequence[str], completions: Sequence[str], include_prompt: bool
) -> list[str]:
    """The texts a reward looks at: the completions, or each prompt joined with its completion."""
    if include_prompt:
        return [join_prompt_completion(p, c) for p, c in zip(prompts, completions, strict=True)]
    return list(completions)


def _check_positive_int(value: object, name: str) -> int:
    return check_int(value, name, minimum=1)


def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def _model_max_length(model: Any, tokenizer: Any, default: int = 512) -> int:
    """The longest input the model and tokenizer both accept."""
    limits = []
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
        limits.append(tok_max)
    config = getattr(model, "config", None)
    for attr in ("max_position_embeddings", "n_positions"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            limits.append(value)
    return min(limits) if limits else default


def _fallback_token_id(tokenizer: Any) -> int:
    """A token to stand in for an empty text, so every row has at least one position."""
    for attr in ("eos_token_id", "pad_token_id", "unk_token_id", "bos_token_id"):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int):
            return value
    return 0


def _pad_batch(
    rows: Sequence[Sequence[int]], pad_id: int, left: bool
) -> tuple[Any, Any]:  # (ids, attention mask) as torch.LongTensor
    import torch

    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if not row:
            continue
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span] = torch.as_tensor(list(row), dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


def _accepts(model: Any, argument: str) -> bool:
    try:
        return argument in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _check_hf_pair(model: Any, tokenizer: Any) -> None:
    if not callable(model) or not hasattr(model, "config"):
        raise TypeError(f"model must be a Hugging Face PreTrainedModel, got {type(model).__name__}")
    if not callable(tokenizer):
        kind = type(tokenizer).__name__
        raise TypeError(f"tokenizer must be a Hugging Face tokenizer, got {kind}")


def classifier_logits(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    batch_size: int,
    device: str,
    max_length: int,
) -> np.ndarray:
    """Run a sequence-classification model over ``texts`` in batches; return float64 logits.

    Texts are truncated to ``max_length`` tokens and right-padded; an empty text is scored as
    a single end-of-sequence (or pad) token so the model always sees one position.
    """
    import torch

    if not texts:
        return np.zeros((0, int(model.config.num_labels)), dtype=np.float64)
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = _fallback_token_id(tokenizer)
    fallback = _fallback_token_id(tokenizer)
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            encoded = tokenizer(chunk, truncation=True, max_length=max_length)["input_ids"]
            rows = [row if len(row) else [fallback] for row in encoded]
            ids, mask = _pad_batch(rows, pad_id, left=False)
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            out.append(logits.float().cpu().numpy())
    return np.concatenate(out).astype(np.float64)


class VaderSentiment:
    """VADER compound sentiment of each completion, in [-1, 1] (-1 most negative).

    Rule- and lexicon-based, fully offline (the ``vaderSentiment`` package ships its lexicon)
    and fast, so it suits quick experiments; it knows nothing of context beyond the lexicon.

    Args:
        include_prompt: Score ``prompt + completion`` instead of the completion alone.
    """

    def __init__(self, include_prompt: bool = False) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.include_prompt = _check_bool(include_prompt, "include_prompt")
        self._analyzer = SentimentIntensityAnalyzer()

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[Sequence[str]],
    ) -> np.ndarray:
        """Return the compound score of each (prompt +) completion as float64 ``(n,)``."""
        check_batch(prompts, completions, references)
        texts = scored_texts(prompts, completions, self.include_prompt)
        return np.array(
            [self._analyzer.polarity_scores(t)["compound"] for t in texts], dtype=np.float64
        )


class ClassifierSentiment:
    """Probability of the positive class under a sentiment classifier, in [0, 1].

    Works with any Hugging Face ``AutoModelForSequenceClassification`` and its tokenizer, for
    example ``lvwerra/distilbert-imdb`` (the IMDB reward of RL4LMs) for users with hub access.
    Texts are truncated to the model's maximum length and scored in batches under
    ``torch.no_grad``; the model is moved to ``device`` and put in eval mode.

    Args:
        model: A sequence-classification model with at least two labels.
        tokenizer: Its tokenizer (callable, with ``truncation``/``max_length`` support).
        positive_label: Index of the positive class in the model's logits.
        batch_size: Texts per forward pass.
        device: Torch device to run on.
        include_prompt: Score ``prompt + completion`` instead of the completion alone.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        positive_label: int = 1,
        batch_size: int = 32,
        device: str = "cpu",
        include_prompt: bool = False,
    ) -> None:
        _check_hf_pair(model, tokenizer)
        num_labels = int(getattr(model.config, "num_labels", 0))
        if num_labels < 2:
            raise ValueError(f"model must have at least 2 labels, got num_labels={num_labels}")
        positive_label = check_int(positive_label, "positive_label")
        if not 0 <= positive_label < num_labels:
            raise ValueError(f"positive_label must be in [0, {num_labels}), got {positive_label}")
        self.batch_size = _check_positive_int(batch_size, "batch_size")
        self.positive_label = positive_label
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
        """Return P(positive label) for each (prompt +) completion as float64 ``(n,)``."""
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
        logits = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        return probs[:, self.positive_label]


class ZeroShotSentimentJudge:
    """An instruct causal LM judging sentiment: P(positive) / (P(positive) + P(negative)).

    The text is placed in ``template`` (which must contain ``{text}``) and, with ``chat=True``,
    wrapped in the tokenizer's chat template as a user turn with a generation prompt. The score
    compares the next-token probabilities of the first token of each answer word, so it lies in
    [0, 1] and 0.5 means undecided. Prompts are batched with left padding and explicit position
    ids, so a text's score does not depend on what it is batched with.

    Args:
        model: A Hugging Face causal LM (``AutoModelForCausalLM``), ideally instruction-tuned.
        tokenizer: Its tokenizer.
        template: Prompt text with a ``{text}`` placeholder (filled by plain replacement).
        chat: Wrap the filled template with ``tokenizer.apply_chat_template``.
        positive_word: Answer word for positive; default ``" positive"`` (``"positive"`` in
            chat mode, where the answer starts a fresh assistant turn).
        negative_word: Answer word for negative; default ``" negative"`` (``"negative"``).
        batch_size: Prompts per forward pass.
        device: Torch device to run on.
        max_text_tokens: The judged text is cut to this many tokens before templating.
        include_prompt: Judge ``prompt + completion`` instead of the completion alone.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        template: str = DEFAULT_JUDGE_TEMPLATE,
        *,
        chat: bool = False,
        positive_word: str | None = None,
        negative_word: str | None = None,
        batch_size: int = 8,
        device: str = "cpu",
        max_text_tokens: int = 256,
        include_prompt: bool = False,
    ) -> None:
        _check_hf_pair(model, tokenizer)
        if not isinstance(template, str) or "{text}" not in template:
            raise ValueError("template must be a str containing the placeholder '{text}'")
        chat = _check_bool(chat, "chat")
        if chat and not getattr(tokenizer, "chat_template", None):
            raise ValueError("chat=True needs a tokenizer with a chat_template")
        self.batch_size = _check_positive_int(batch_size, "batch_size")
        self.max_text_tokens = _check_positive_int(max_text_tokens, "max_text_tokens")
        space = "" if chat else " "
        positive_word = f"{space}positive" if positive_word is None else positive_word
        negative_word = f"{space}negative" if negative_word is None else negative_word
        self.positive_id = self._first_token(tokenizer, positive_word, "positive_word")
        self.negative_id = self._first_token(tokenizer, negative_word, "negative_word")
        if self.positive_id == self.negative_id:
            raise ValueError(
                f"positive_word {positive_word!r} and negative_word {negative_word!r} start "
                f"with the same token ({self.positive_id}); choose words whose first tokens differ"
            )
        self.template = template
        self.chat = chat
        self.include_prompt = _check_bool(include_prompt, "include_prompt")
        self.device = device
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.max_length = _model_max_length(model, tokenizer, default=2048)
        self._pass_positions = _accepts(model, "position_ids")
        self._last_logits_only = _accepts(model, "logits_to_keep")

    @staticmethod
    def _first_token(tokenizer: Any, word: str, name: str) -> int:
        if not isinstance(word, str) or not word.strip():
            raise ValueError(f"{name} must be a non-empty str, got {word!r}")
        ids = tokenizer.encode(word, add_special_tokens=False)
        if not ids:
            raise ValueError(f"{name} {word!r} encodes to no tokens")
        return int(ids[0])

    def build_prompt(self, text: str) -> str:
        """Return the judge prompt for one text (truncated to ``max_text_tokens`` tokens)."""
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) > self.max_text_tokens:
            text = self.tokenizer.decode(ids[: self.max_text_tokens])
        filled = self.template.replace("{text}", text)
        if not self.chat:
            return filled
        messages = [{"role": "user", "content": filled}]
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[Sequence[str]],
    ) -> np.ndarray:
        """Return the judge's P(positive) for each (prompt +) completion as float64 ``(n,)``."""
        import torch

        check_batch(prompts, completions, references)
        texts = scored_texts(prompts, completions, self.include_prompt)
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = _fallback_token_id(self.tokenizer)
        scores = np.zeros(len(texts), dtype=np.float64)
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                chunk = texts[start : start + self.batch_size]
                judge_prompts = [self.build_prompt(t) for t in chunk]
                # a chat template already holds the special tokens it needs
                encoded = self.tokenizer(judge_prompts, add_special_tokens=not self.chat)
                rows = [row[-self.max_length :] for row in encoded["input_ids"]]
                ids, mask = _pad_batch(rows, pad_id, left=True)
                kwargs = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
                if self._pass_positions:
                    kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0).to(self.device)
                if self._last_logits_only:  # skip the vocabulary projection of the prompt
                    kwargs["logits_to_keep"] = 1
                last = self.model(**kwargs).logits[:, -1, :].float()
                margin = last[:, self.positive_id] - last[:, self.negative_id]
                scores[start : start + len(rows)] = torch.sigmoid(margin).cpu().numpy()
        return scores
