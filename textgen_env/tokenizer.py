"""The tokenizer interface the env relies on, and a tiny word/character tokenizer for toy tasks.

Any Hugging Face tokenizer satisfies :class:`Tokenizer`. The env encodes prompts once at
construction and decodes text only when an episode finishes (for the reward), never per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

__all__ = ["Tokenizer", "ToyTokenizer"]


@runtime_checkable
class Tokenizer(Protocol):
    """The subset of the Hugging Face tokenizer API that textgen_env uses."""

    eos_token_id: int | None
    pad_token_id: int | None

    def __len__(self) -> int: ...

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]:
        """Token ids of ``text`` (the env passes ``add_special_tokens=False``)."""
        ...

    def batch_decode(
        self, sequences: Sequence[Sequence[int]], skip_special_tokens: bool = ...
    ) -> list[str]:
        """Text of each id sequence (the env passes ``skip_special_tokens=True``)."""
        ...


class ToyTokenizer:
    """A fixed-vocabulary tokenizer: ``"<pad>"`` is id 0, ``"<eos>"`` is id 1, then ``symbols``.

    With ``separator=""`` every character is a token; with ``separator=" "`` every
    whitespace-separated word is. Unknown symbols raise ``ValueError``.

    >>> tok = ToyTokenizer(("a", "b", "c"))
    >>> tok.encode("cab")
    [4, 2, 3]
    >>> tok.batch_decode([[4, 2, 1]])
    ['ca']
    """

    pad_token = "<pad>"
    eos_token = "<eos>"

    def __init__(self, symbols: Sequence[str], separator: str = "") -> None:
        symbols = tuple(symbols)
        if len(set(symbols)) != len(symbols):
            raise ValueError("ToyTokenizer symbols must be unique")
        if separator == "" and any(len(s) != 1 for s in symbols):
            raise ValueError("character-level ToyTokenizer needs one-character symbols")
        self.separator = separator
        self.vocab: tuple[str, ...] = (self.pad_token, self.eos_token, *symbols)
        self._ids = {s: i for i, s in enumerate(self.vocab)}
        self.pad_token_id = 0
        self.eos_token_id = 1
        self.all_special_ids = [0, 1]

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def vocab_size(self) -> int:
        """Number of tokens, special tokens included."""
        return len(self.vocab)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text``; raises ``ValueError`` on a symbol outside the vocabulary."""
        pieces = list(text) if self.separator == "" else text.split()
        try:
            return [self._ids[p] for p in pieces]
        except KeyError as err:
            raise ValueError(
                f"ToyTokenizer: symbol {err.args[0]!r} is not in the vocabulary"
            ) from None

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of ``ids``; special tokens are dropped when ``skip_special_tokens``."""
        toks = [
            self.vocab[int(i)]
            for i in ids
            if not (skip_special_tokens and int(i) in self.all_special_ids)
        ]
        return self.separator.join(toks)

    def batch_decode(
        self, sequences: Sequence[Sequence[int]], skip_special_tokens: bool = True
    ) -> list[str]:
        """:meth:`decode` for each sequence."""
        return [self.decode(s, skip_special_tokens) for s in sequences]

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        """Vocabulary entries of ``ids``."""
        return [self.vocab[int(i)] for i in ids]
