"""`TextGuide`: a black-box guide that maps context texts to continuation texts (an API, say)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait

import numpy as np

from textgen_env._checks import check_int, check_real
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


def _start_call(fn: Callable[[list[str]], list[str]], texts: list[str]) -> Future[object]:
    """Run ``fn(texts)`` in a daemon thread; the returned future gets its result or error.

    A daemon thread (not an executor) is used so that a call that never returns cannot keep
    the interpreter from exiting; a call that times out is abandoned, not killed.
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
    return future


def _check_stop(stop: Sequence[str]) -> tuple[str, ...]:
    """Validate the stop strings: a sequence (not a single str) of non-empty str."""
    if isinstance(stop, str) or not isinstance(stop, Sequence):
        raise TypeError(
            f"stop must be a sequence of str (wrap a single string in a list), got {stop!r:.80}"
        )
    for i, s in enumerate(stop):
        if not isinstance(s, str):
            raise TypeError(f"stop[{i}] must be a str, got {s!r} ({type(s).__name__})")
        if not s:
            raise ValueError(f"stop[{i}] is empty; an empty stop string would cut every reply")
    return tuple(stop)


def _token_text(tokenizer: Tokenizer, attr: str) -> str | None:
    """The text of a special token (``tokenizer.eos_token``, say), if it is a non-empty str."""
    text = getattr(tokenizer, attr, None)
    return text if isinstance(text, str) and text else None


class TextGuide:
    """A guide backed by a text-in, text-out function (e.g. a client of a hosted LLM).

    For every state asked for ``k > 0`` tokens the context text is the prompt (decoded with the
    policy tokenizer and put into ``prompt_template``) followed by the completion so far; ``fn``
    receives all contexts in one list and must return one continuation text per context.

    Replies: a reply ends at the first occurrence of the policy tokenizer's EOS text (its
    ``eos_token``, e.g. ``"</s>"`` or ``"<|im_end|>"``) or of any ``stop`` string; the rest is
    dropped, as a hosted model's stop sequence would. The kept text is encoded with the policy
    tokenizer (no special tokens added). If that encoding still holds a special token (an id
    in the tokenizer's ``all_special_ids``, its EOS or pad id; e.g. a chat model's
    ``"<|im_start|>"`` text), the continuation ends before it: control tokens are never taken
    as actions, and text after one is not part of the answer. The one exception is the
    unknown token (``unk_token_id``) where the reply does not hold that token's own text (some
    tokenizers alias it to ``"<|endoftext|>"``): it then stands for text the policy cannot
    represent, so it raises :class:`~textgen_env.errors.GuideError`, as a tokenizer that
    refuses the text does. The result is cut to ``k`` tokens; a continuation shorter than
    ``k`` means the black box finished, so the policy EOS is appended (the episode ends
    there). States asked for 0 tokens are not sent.

    Failures: each call of ``fn`` runs in a worker thread and is given ``timeout_s`` seconds;
    an exception or a timeout is retried up to ``max_retries`` times, waiting
    ``retry_backoff_s * 2**attempt`` seconds before retry ``attempt + 1``. Calls of ``fn``
    never overlap, so a rate-limited service never gets parallel requests from one guide: a
    call that timed out is abandoned but still runs, and before any new call (a retry, or the
    next :meth:`act`) the guide waits up to ``timeout_s`` more seconds for it to finish; if it
    is still running then, no new call is started and
    :class:`~textgen_env.errors.GuideTimeoutError` is raised. When every attempt failed,
    :class:`~textgen_env.errors.GuideTimeoutError` (last attempt timed out) or
    :class:`~textgen_env.errors.GuideError` (last attempt raised) is raised from the last
    error. Malformed output (not a list of str of the right length) or text the policy
    tokenizer cannot encode raises :class:`~textgen_env.errors.GuideError` at once, without
    retrying: it points to a bug in ``fn``, which retrying would only repeat. Concurrent
    :meth:`act` calls on one guide are serialised.

    ``timeout_s``, ``max_retries`` and ``retry_backoff_s`` may be reassigned (checked as in the
    constructor); the other attributes are read-only.

    Randomness: ``rng`` is not used; whatever randomness the black box has is outside the
    caller's control, so such a guide is reproducible only if ``fn`` is.

    Args:
        fn: Maps a list of context texts to a list of continuation texts.
        policy_tokenizer: The env's tokenizer; must define ``eos_token_id``.
        prompt_template: Text with a ``{prompt}`` placeholder, e.g. ``"Continue this movie
            review so that it ends positively: {prompt}"``; ``None`` uses the prompt as is.
        stop: Further strings that end a reply (e.g. the hosted model's own end-of-turn text
            when it differs from the policy's EOS text).
        timeout_s: Seconds to wait for one call of ``fn`` (and, after a timeout, the most
            seconds to wait for that call to end before another may start).
        max_retries: Extra attempts after a failed one.
        retry_backoff_s: Base of the exponential wait between attempts.
    """

    def __init__(
        self,
        fn: Callable[[list[str]], list[str]],
        policy_tokenizer: Tokenizer,
        *,
        prompt_template: str | None = None,
        stop: Sequence[str] = (),
        timeout_s: float = 30.0,
        max_retries: int = 2,
        retry_backoff_s: float = 0.5,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        self._fn = fn
        self._policy_tokenizer = policy_tokenizer
        self._eos_token_id = require_eos(policy_tokenizer, "policy_tokenizer")
        self._prompt_template = check_template(prompt_template)
        self._stop = _check_stop(stop)
        eos_text = _token_text(policy_tokenizer, "eos_token")
        self._cut_at = (*((eos_text,) if eos_text else ()), *self._stop)
        pad = getattr(policy_tokenizer, "pad_token_id", None)
        special = {self._eos_token_id, *(() if pad is None else (int(pad),))}
        special.update(int(t) for t in getattr(policy_tokenizer, "all_special_ids", None) or ())
        self._special_ids = frozenset(special)
        unk = getattr(policy_tokenizer, "unk_token_id", None)
        self._unk_token_id = None if unk is None else int(unk)
        self._unk_text = _token_text(policy_tokenizer, "unk_token")
        self._lock = threading.Lock()  # one act() at a time
        self._running: Future[object] | None = None  # the last call of fn (may still run)

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        del state["_lock"], state["_running"]  # a lock and a running call do not pickle
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._running = None

    # ----------------------------------------------------------------- attributes
    @property
    def timeout_s(self) -> float:
        """Seconds given to one call of ``fn`` (> 0)."""
        return self._timeout_s

    @timeout_s.setter
    def timeout_s(self, value: float) -> None:
        self._timeout_s = check_real(value, "timeout_s", gt=0.0)

    @property
    def max_retries(self) -> int:
        """Extra attempts after a failed one (>= 0)."""
        return self._max_retries

    @max_retries.setter
    def max_retries(self, value: int) -> None:
        self._max_retries = check_int(value, "max_retries", minimum=0)

    @property
    def retry_backoff_s(self) -> float:
        """Base of the exponential wait between attempts, in seconds (>= 0)."""
        return self._retry_backoff_s

    @retry_backoff_s.setter
    def retry_backoff_s(self, value: float) -> None:
        self._retry_backoff_s = check_real(value, "retry_backoff_s", ge=0.0)

    @property
    def fn(self) -> Callable[[list[str]], list[str]]:
        """The text-in, text-out function (read-only)."""
        return self._fn

    @property
    def policy_tokenizer(self) -> Tokenizer:
        """The env's tokenizer (read-only)."""
        return self._policy_tokenizer

    @property
    def eos_token_id(self) -> int:
        """The policy's EOS id (read-only)."""
        return self._eos_token_id

    @property
    def prompt_template(self) -> str | None:
        """The prompt template (read-only)."""
        return self._prompt_template

    @property
    def stop(self) -> tuple[str, ...]:
        """The stop strings given to the constructor (read-only)."""
        return self._stop

    # ------------------------------------------------------------------- calling
    def contexts(self, states: Sequence[TextState]) -> list[str]:
        """The context texts sent to ``fn`` for ``states``."""
        prompts, completions = state_texts(self.policy_tokenizer, states)
        return [
            format_prompt(self.prompt_template, p) + c
            for p, c in zip(prompts, completions, strict=True)
        ]

    def _wait_for_running(self, last: BaseException | None) -> None:
        """Wait (up to ``timeout_s``) for the previous call of ``fn`` to end; if it does not,
        raise :class:`GuideTimeoutError` instead of starting a call that would overlap it."""
        running = self._running
        if running is None or running.done():
            return
        done, _ = wait([running], timeout=self.timeout_s)
        if done:
            return
        if last is not None:  # a retry of this request
            raise GuideTimeoutError(
                f"TextGuide: fn did not answer within {self.timeout_s:g} s and had not ended "
                f"after waiting {self.timeout_s:g} s more; not retrying while that call runs "
                "(calls to fn never overlap)"
            ) from last
        raise GuideTimeoutError(
            f"TextGuide: an earlier call of fn that timed out had not ended after waiting "
            f"{self.timeout_s:g} s; not starting a new call while it runs "
            "(calls to fn never overlap)"
        )

    def _query(self, texts: list[str]) -> list[str]:
        """Call ``fn`` with timeout and retries, one call at a time; check its answer's shape."""
        attempts = self.max_retries + 1
        last: BaseException | None = None
        with self._lock:
            for attempt in range(attempts):
                if attempt:
                    time.sleep(self.retry_backoff_s * 2 ** (attempt - 1))
                self._wait_for_running(last)
                self._running = future = _start_call(self.fn, list(texts))
                try:
                    replies = future.result(timeout=self.timeout_s)
                except Exception as err:  # TimeoutError included
                    last = err
                    continue
                return self._check_replies(replies, len(texts))
        if isinstance(last, TimeoutError):
            raise GuideTimeoutError(
                f"TextGuide: fn did not answer within {self.timeout_s:g} s ({attempts} attempt(s))"
            ) from last
        raise GuideError(
            f"TextGuide: fn failed on all {attempts} attempt(s); last error "
            f"{type(last).__name__}: {last}"
        ) from last

    @staticmethod
    def _check_replies(replies: object, n: int) -> list[str]:
        if not isinstance(replies, list | tuple):
            raise GuideError(
                f"TextGuide: fn must return a list of str, got {type(replies).__name__}"
            )
        bad = sorted({type(r).__name__ for r in replies if not isinstance(r, str)})
        if bad:
            raise GuideError(f"TextGuide: fn must return a list of str; it held {bad}")
        if len(replies) != n:
            raise GuideError(f"TextGuide: fn returned {len(replies)} texts for {n} contexts")
        return list(replies)

    def _continuation(self, reply: str, k: int) -> tuple[int, ...]:
        """Policy token ids of one reply for a state asked for ``k`` tokens (see the class
        docstring: cut at EOS text, stop strings and special tokens; EOS appended if short)."""
        cut = min((i for i in (reply.find(s) for s in self._cut_at) if i >= 0), default=-1)
        text = reply if cut < 0 else reply[:cut]
        ids = encode_text(self.policy_tokenizer, text, "TextGuide")
        for j, t in enumerate(ids):
            if t == self._unk_token_id and not (self._unk_text and self._unk_text in text):
                raise GuideError(
                    f"TextGuide: the policy tokenizer encodes part of the reply {text!r:.80} "
                    f"as its unknown token (id {t}); the policy cannot take that text as actions"
                )
            if t in self._special_ids:
                ids = ids[:j]  # a control token ends the continuation
                break
        return tuple(ids[:k]) if len(ids) >= k else (*ids, self.eos_token_id)

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
            out[i] = self._continuation(text, counts[i])
        return out
