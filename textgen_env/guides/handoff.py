"""The text hand-off between the env's token states and a guide that reads and writes text:
prompt templates, the texts of states, re-encoding a guide's text with the policy tokenizer,
and reading a black-box guide's reply as policy tokens (:class:`ReplyReader`)."""

from __future__ import annotations

from collections.abc import Sequence

from textgen_env.errors import GuideError
from textgen_env.guides.validation import check_stop, require_eos
from textgen_env.state import TextState
from textgen_env.tokenizer import Tokenizer

__all__ = ["ReplyReader", "encode_text", "finish", "format_prompt", "state_texts", "suffix_text"]


def format_prompt(template: str | None, prompt: str) -> str:
    """Put ``prompt`` in place of ``{prompt}`` in ``template`` (no template: the prompt itself).

    Plain substitution, not ``str.format``: other braces in the template are kept as they are.
    """
    return prompt if template is None else template.replace("{prompt}", prompt)


def suffix_text(tokenizer: Tokenizer, prefix: Sequence[int], new: Sequence[int]) -> str:
    """Text that ``new`` adds after ``prefix`` (special tokens skipped).

    Decoding ``prefix + new`` and removing the decoded prefix keeps the spacing at the boundary
    (word-level and SentencePiece tokenizers drop a leading space when a piece is decoded
    alone); if the decoded prefix is not a prefix of the whole, ``new`` is decoded alone.
    """
    head, whole = tokenizer.batch_decode([list(prefix), [*prefix, *new]], skip_special_tokens=True)
    if whole.startswith(head):
        return whole[len(head) :]
    return tokenizer.batch_decode([list(new)], skip_special_tokens=True)[0]


def state_texts(tokenizer: Tokenizer, states: Sequence[TextState]) -> tuple[list[str], list[str]]:
    """Prompt texts and completion-so-far texts of ``states``, decoded with ``tokenizer``."""
    prompts = tokenizer.batch_decode([list(s.prompt_ids) for s in states], skip_special_tokens=True)
    completions = [
        suffix_text(tokenizer, s.prompt_ids, s.generated_ids) if s.generated_ids else ""
        for s in states
    ]
    return prompts, completions


def encode_text(tokenizer: Tokenizer, text: str, what: str) -> list[int]:
    """Policy token ids of a guide's text; :class:`GuideError` if the tokenizer refuses it."""
    try:
        return [int(t) for t in tokenizer.encode(text, add_special_tokens=False)]
    except (ValueError, KeyError, TypeError) as err:
        raise GuideError(f"{what}: the policy tokenizer cannot encode {text!r}: {err}") from err


def finish(ids: Sequence[int], k: int, eos_token_id: int) -> tuple[int, ...]:
    """First ``k`` policy ids, or all of them plus EOS when there are fewer (the guide ended)."""
    return tuple(ids[:k]) if len(ids) >= k else (*ids, eos_token_id)


def _token_text(tokenizer: Tokenizer, attr: str) -> str | None:
    """The text of a special token (``tokenizer.eos_token``, say), if it is a non-empty str."""
    text = getattr(tokenizer, attr, None)
    return text if isinstance(text, str) and text else None


class ReplyReader:
    """Reads a black-box guide's reply text as policy token ids.

    A reply ends at the first occurrence of the policy tokenizer's EOS text (its ``eos_token``,
    e.g. ``"</s>"`` or ``"<|im_end|>"``) or of any ``stop`` string; the rest is dropped, as a
    hosted model's stop sequence would. The kept text is encoded with the policy tokenizer (no
    special tokens added). If that encoding still holds a special token (an id in the
    tokenizer's ``all_special_ids``, its EOS or pad id; e.g. a chat model's ``"<|im_start|>"``
    text), the reply ends before it: control tokens are never taken as actions, and text after
    one is not part of the answer. The one exception is the unknown token (``unk_token_id``)
    where the reply does not hold that token's own text (some tokenizers alias it to
    ``"<|endoftext|>"``): it then stands for text the policy cannot represent, so it raises
    :class:`~textgen_env.errors.GuideError`, as a tokenizer that refuses the text does.

    Args:
        policy_tokenizer: The env's tokenizer; must define ``eos_token_id``.
        stop: Further strings that end a reply (checked by :func:`check_stop`).
        owner: The guide's name, which starts the error messages.
    """

    def __init__(self, policy_tokenizer: Tokenizer, stop: Sequence[str], owner: str) -> None:
        self.tokenizer = policy_tokenizer
        self.eos_token_id = require_eos(policy_tokenizer, "policy_tokenizer")
        self.stop = check_stop(stop)
        self.owner = owner
        eos_text = _token_text(policy_tokenizer, "eos_token")
        self._cut_at = (*((eos_text,) if eos_text else ()), *self.stop)
        pad = getattr(policy_tokenizer, "pad_token_id", None)
        special = {self.eos_token_id, *(() if pad is None else (int(pad),))}
        special.update(int(t) for t in getattr(policy_tokenizer, "all_special_ids", None) or ())
        self._special_ids = frozenset(special)
        unk = getattr(policy_tokenizer, "unk_token_id", None)
        self._unk_token_id = None if unk is None else int(unk)
        self._unk_text = _token_text(policy_tokenizer, "unk_token")

    def ids(self, reply: str) -> tuple[list[int], bool]:
        """``(policy ids, ended)`` of ``reply``: ``ended`` when an EOS text, a stop string or a
        control token cut it (the guide's answer is over)."""
        cut = min((i for i in (reply.find(s) for s in self._cut_at) if i >= 0), default=-1)
        text = reply if cut < 0 else reply[:cut]
        ids = encode_text(self.tokenizer, text, self.owner)
        for j, t in enumerate(ids):
            if t == self._unk_token_id and not (self._unk_text and self._unk_text in text):
                raise GuideError(
                    f"{self.owner}: the policy tokenizer encodes part of the reply {text!r:.80} "
                    f"as its unknown token (id {t}); the policy cannot take that text as actions"
                )
            if t in self._special_ids:
                return ids[:j], True  # a control token ends the continuation
        return ids, cut >= 0
