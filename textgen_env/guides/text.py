"""`TextGuide`: a black-box guide that maps context texts to continuation texts (an API, say)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np

from textgen_env.errors import GuideError, GuideTimeoutError
from textgen_env.guides._util import (
    check_request,
    check_template,
    encode_text,
    format_prompt,
    require_eos,
    state_texts,
)
from textgen_env.state import TextState
from textgen_env.tokenizer import Tokenizer

__all__ = ["TextGuide"]


def _call_with_timeout(
    fn: Callable[[list[str]], list[str]], texts: list[str], timeout_s: float
) -> object:
    """Run ``fn(texts)`` in a daemon thread; raise ``TimeoutError`` after ``timeout_s``.

    A daemon thread (not an executor) is used so that a call that never returns cannot keep
    the interpreter from exiting; it is abandoned, not killed.
    """
    future: Future[object] = Future()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(texts))
        except BaseException as err:  # handed to the waiting thread
            future.set_exception(err)

    threading.Thread(target=work, name="TextGuide-call", daemon=True).start()
    return future.result(timeout=timeout_s)


class TextGuide:
    """A guide backed by a text-in, text-out function (e.g. a client of a hosted LLM).

    For every state asked for ``k > 0`` tokens the context text is the prompt (decoded with the
    policy tokenizer and put into ``prompt_template``) followed by the completion so far; ``fn``
    receives all contexts in one list and must return one continuation text per context. Each
    continuation is encoded with the policy tokenizer (no special tokens) and cut to ``k``
    tokens; a continuation shorter than ``k`` tokens means the black box finished, so the
    policy EOS is appended. States asked for 0 tokens are not sent.

    Failures: ``fn`` runs in a worker thread with a timeout of ``timeout_s`` seconds; an
    exception or a timeout is retried up to ``max_retries`` times, waiting
    ``retry_backoff_s * 2**attempt`` seconds before retry ``attempt + 1``. When every attempt
    failed, :class:`~textgen_env.errors.GuideTimeoutError` (last attempt timed out) or
    :class:`~textgen_env.errors.GuideError` (last attempt raised) is raised from the last
    error. Malformed output (not a list of str of the right length) or text the policy
    tokenizer cannot encode raises :class:`~textgen_env.errors.GuideError` at once, without
    retrying: it points to a bug in ``fn``, which retrying would only repeat.

    Randomness: ``rng`` is not used; whatever randomness the black box has is outside the
    caller's control, so such a guide is reproducible only if ``fn`` is.

    Args:
        fn: Maps a list of context texts to a list of continuation texts.
        policy_tokenizer: The env's tokenizer; must define ``eos_token_id``.
        prompt_template: Text with a ``{prompt}`` placeholder, e.g. ``"Continue this movie
            review so that it ends positively: {prompt}"``; ``None`` uses the prompt as is.
        timeout_s: Seconds to wait for one call of ``fn``.
        max_retries: Extra attempts after a failed one.
        retry_backoff_s: Base of the exponential wait between attempts.
    """

    def __init__(
        self,
        fn: Callable[[list[str]], list[str]],
        policy_tokenizer: Tokenizer,
        *,
        prompt_template: str | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 2,
        retry_backoff_s: float = 0.5,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        if not isinstance(timeout_s, int | float) or not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if not isinstance(retry_backoff_s, int | float) or retry_backoff_s < 0:
            raise ValueError(f"retry_backoff_s must be >= 0, got {retry_backoff_s!r}")
        self.fn = fn
        self.policy_tokenizer = policy_tokenizer
        self.eos_token_id = require_eos(policy_tokenizer, "policy_tokenizer")
        self.prompt_template = check_template(prompt_template)
        self.timeout_s = float(timeout_s)
        self.max_retries = max_retries
        self.retry_backoff_s = float(retry_backoff_s)

    def contexts(self, states: Sequence[TextState]) -> list[str]:
        """The context texts sent to ``fn`` for ``states``."""
        prompts, completions = state_texts(self.policy_tokenizer, states)
        return [
            format_prompt(self.prompt_template, p) + c
            for p, c in zip(prompts, completions, strict=True)
        ]

    def _query(self, texts: list[str]) -> list[str]:
        """Call ``fn`` with timeout and retries; check the shape of its answer."""
        attempts = self.max_retries + 1
        last: BaseException | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.retry_backoff_s * 2 ** (attempt - 1))
            try:
                replies = _call_with_timeout(self.fn, list(texts), self.timeout_s)
            except Exception as err:  # TimeoutError included
                last = err
                continue
            if not isinstance(replies, list | tuple):
                raise GuideError(
                    f"TextGuide: fn must return a list of str, got {type(replies).__name__}"
                )
            bad = sorted({type(r).__name__ for r in replies if not isinstance(r, str)})
            if bad:
                raise GuideError(f"TextGuide: fn must return a list of str; it held {bad}")
            if len(replies) != len(texts):
                raise GuideError(
                    f"TextGuide: fn returned {len(replies)} texts for {len(texts)} contexts"
                )
            return list(replies)
        if isinstance(last, TimeoutError):
            raise GuideTimeoutError(
                f"TextGuide: fn did not answer within {self.timeout_s} s ({attempts} attempt(s))"
            ) from last
        raise GuideError(
            f"TextGuide: fn failed on all {attempts} attempt(s); last error "
            f"{type(last).__name__}: {last}"
        ) from last

    def act(
        self,
        states: Sequence[TextState],
        num_tokens: Sequence[int],
        rng: np.random.Generator,
    ) -> list[tuple[int, ...]]:
        """Ask ``fn`` for continuations of the states with ``num_tokens[i] > 0``."""
        counts = check_request(states, num_tokens, rng)
        out: list[tuple[int, ...]] = [()] * len(counts)
        rows = [i for i, k in enumerate(counts) if k > 0]
        if not rows:
            return out
        replies = self._query(self.contexts([states[i] for i in rows]))
        for i, text in zip(rows, replies, strict=True):
            ids = encode_text(self.policy_tokenizer, text, "TextGuide")
            k = counts[i]
            out[i] = tuple(ids[:k]) if len(ids) >= k else (*ids, self.eos_token_id)
        return out
