"""`TextGuide`: a black-box guide that maps context texts to continuation texts (an API, say)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from functools import partial

import numpy as np

from textgen_env._checks import check_int, check_real
from textgen_env.errors import GuideError, GuideTimeoutError
from textgen_env.guides.handoff import ReplyReader, finish, format_prompt, state_texts
from textgen_env.guides.validation import check_request, check_template
from textgen_env.state import TextState
from textgen_env.tokenizer import Tokenizer

__all__ = ["TextGuide"]


def _start_call(fn: Callable[[], list[str]]) -> Future[object]:
    """Run ``fn()`` in a daemon thread; the returned future gets its result or error.

    A daemon thread (not an executor) is used so that a call that never returns cannot keep
    the interpreter from exiting. Python cannot stop a thread from outside: a call that
    ignores its timeout runs until ``fn`` returns.
    """
    future: Future[object] = Future()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn())
        except BaseException as err:  # handed to the waiting thread
            future.set_exception(err)

    threading.Thread(target=work, name="TextGuide-call", daemon=True).start()
    return future


class TextGuide:
    """A guide backed by a text-in, text-out function (e.g. a client of a hosted LLM).

    For every state asked for ``k > 0`` tokens the context text is the prompt (decoded with the
    policy tokenizer and put into ``prompt_template``) followed by the completion so far; ``fn``
    receives all contexts in one list and must return one continuation text per context.

    Replies are read by :class:`~textgen_env.guides.handoff.ReplyReader`: a reply ends at the
    policy tokenizer's EOS text, at any ``stop`` string or at a control token its encoding
    holds, and text the policy tokenizer cannot represent (its unknown token) raises
    :class:`~textgen_env.errors.GuideError`. The result is cut to ``k`` tokens; a continuation
    shorter than ``k`` means the black box finished, so the policy EOS is appended (the
    episode ends there). States asked for 0 tokens are not sent.

    Failures: each call of ``fn`` runs in a worker thread and is given ``timeout_s`` seconds;
    an exception or a timeout is retried up to ``max_retries`` times, waiting
    ``retry_backoff_s * 2**attempt`` seconds before retry ``attempt + 1``. When every attempt
    failed, :class:`~textgen_env.errors.GuideTimeoutError` (last attempt timed out) or
    :class:`~textgen_env.errors.GuideError` (last attempt raised) is raised from the last
    error. Malformed output (not a list of str of the right length) or text the policy
    tokenizer cannot encode raises :class:`~textgen_env.errors.GuideError` at once, without
    retrying: it points to a bug in ``fn``, which retrying would only repeat. Concurrent
    :meth:`act` calls on one guide are serialised.

    Timeouts and what is left running: Python cannot stop a function from outside, so a call
    of ``fn`` that times out runs on in its (daemon) worker thread until ``fn`` returns. The
    guide therefore waits up to ``timeout_s`` more seconds for it to end *before* it retries
    or raises: when :meth:`act` returns or raises, no call of ``fn`` it started is still
    running, unless one ignored its timeout for that long too. Such a call is reported by the
    :class:`~textgen_env.errors.GuideTimeoutError` raised at once (no retry overlaps it);
    :attr:`busy` is then true, every later :meth:`act` first waits up to ``timeout_s`` for it
    and refuses (``GuideTimeoutError``) to start a call while it runs, and :meth:`close` waits
    for it. Calls of ``fn`` therefore never overlap, and a rate-limited service never gets
    parallel requests from one guide. To make a timeout leave nothing running, let ``fn`` bound
    its own blocking work: with ``fn_takes_timeout`` it is called as
    ``fn(texts, timeout_s=...)`` and can hand the seconds to its HTTP client, whose timeout
    closes the request. (:class:`~textgen_env.guides.api.APIGuide` bounds each request by its
    HTTP client's timeout in the same way.)

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
            seconds to wait for that call to end).
        max_retries: Extra attempts after a failed one.
        retry_backoff_s: Base of the exponential wait between attempts.
        fn_takes_timeout: Call ``fn(texts, timeout_s=seconds)``; ``fn`` should give up by
            then (e.g. pass the seconds to its HTTP client), so a timeout leaves nothing running.
    """

    def __init__(
        self,
        fn: Callable[..., list[str]],
        policy_tokenizer: Tokenizer,
        *,
        prompt_template: str | None = None,
        stop: Sequence[str] = (),
        timeout_s: float = 30.0,
        max_retries: int = 2,
        retry_backoff_s: float = 0.5,
        fn_takes_timeout: bool = False,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        if not isinstance(fn_takes_timeout, bool):
            raise TypeError(
                f"fn_takes_timeout must be a bool, got {type(fn_takes_timeout).__name__}"
            )
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        self._fn = fn
        self._fn_takes_timeout = fn_takes_timeout
        self._policy_tokenizer = policy_tokenizer
        self._reader = ReplyReader(policy_tokenizer, stop, "TextGuide")
        self._prompt_template = check_template(prompt_template)
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
    def fn(self) -> Callable[..., list[str]]:
        """The text-in, text-out function (read-only)."""
        return self._fn

    @property
    def fn_takes_timeout(self) -> bool:
        """Whether ``fn`` is called with ``timeout_s=`` (read-only)."""
        return self._fn_takes_timeout

    @property
    def policy_tokenizer(self) -> Tokenizer:
        """The env's tokenizer (read-only)."""
        return self._policy_tokenizer

    @property
    def eos_token_id(self) -> int:
        """The policy's EOS id (read-only)."""
        return self._reader.eos_token_id

    @property
    def prompt_template(self) -> str | None:
        """The prompt template (read-only)."""
        return self._prompt_template

    @property
    def stop(self) -> tuple[str, ...]:
        """The stop strings given to the constructor (read-only)."""
        return self._reader.stop

    @property
    def busy(self) -> bool:
        """Whether a call of ``fn`` that timed out still runs in its worker thread."""
        running = self._running
        return running is not None and not running.done()

    # ------------------------------------------------------------------- calling
    def contexts(self, states: Sequence[TextState]) -> list[str]:
        """The context texts sent to ``fn`` for ``states``."""
        prompts, completions = state_texts(self.policy_tokenizer, states)
        return [
            format_prompt(self.prompt_template, p) + c
            for p, c in zip(prompts, completions, strict=True)
        ]

    def close(self) -> None:
        """Wait up to ``timeout_s`` for a timed-out call of ``fn`` that still runs.

        Raises:
            GuideTimeoutError: It is still running then (it goes on in its daemon thread until
                ``fn`` returns; nothing can stop it from outside).
        """
        running = self._running
        if running is not None and not wait([running], timeout=self.timeout_s).done:
            raise GuideTimeoutError(
                f"TextGuide.close: a call of fn that timed out had not ended after waiting "
                f"{self.timeout_s:g} s; it still runs in its daemon worker thread"
            )

    def __enter__(self) -> TextGuide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wait_for_running(self) -> None:
        """Wait (up to ``timeout_s``) for a call of ``fn`` left running by an earlier
        :meth:`act`; if it does not end, raise :class:`GuideTimeoutError` instead of
        starting a call that would overlap it."""
        running = self._running
        if running is None or running.done() or wait([running], timeout=self.timeout_s).done:
            return
        raise GuideTimeoutError(
            f"TextGuide: an earlier call of fn that timed out had not ended after waiting "
            f"{self.timeout_s:g} s; not starting a new call while it runs "
            "(calls to fn never overlap)"
        )

    def _call(self, texts: list[str]) -> Callable[[], list[str]]:
        if self.fn_takes_timeout:
            return partial(self.fn, texts, timeout_s=self.timeout_s)
        return partial(self.fn, texts)

    def _query(self, texts: list[str]) -> list[str]:
        """Call ``fn`` with timeout and retries, one call at a time; check its answer's shape."""
        attempts = self.max_retries + 1
        last: BaseException | None = None
        with self._lock:
            for attempt in range(attempts):
                if attempt:
                    time.sleep(self.retry_backoff_s * 2 ** (attempt - 1))
                self._wait_for_running()
                self._running = future = _start_call(self._call(list(texts)))
                try:
                    replies = future.result(timeout=self.timeout_s)
                except Exception as err:  # TimeoutError included
                    last = err
                    if not future.done():  # our timeout, not fn's own error
                        self._settle(future, err, attempt + 1 < attempts)
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

    def _settle(self, future: Future[object], err: BaseException, retry: bool) -> None:
        """After a timeout: wait up to ``timeout_s`` more for the call to end; if it does not,
        raise :class:`GuideTimeoutError` at once (no retry may overlap it)."""
        if wait([future], timeout=self.timeout_s).done:
            return
        then = "not retrying while that call runs" if retry else "it still runs"
        raise GuideTimeoutError(
            f"TextGuide: fn did not answer within {self.timeout_s:g} s and had not ended "
            f"after waiting {self.timeout_s:g} s more; {then} (calls to fn never overlap)"
        ) from err

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
            ids, _ = self._reader.ids(text)
            out[i] = finish(ids, counts[i], self.eos_token_id)
        return out
