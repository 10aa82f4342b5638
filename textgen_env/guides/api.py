"""`APIGuide`: a black-box guide behind an OpenAI-compatible server (a hosted API, vLLM,
llama.cpp's server, ``transformers serve``), asked through the official ``openai`` client.

Also :func:`check_server`, which a training run calls before it loads any model: is a server
answering at the URL, and does it serve the model? The ``openai`` package is an optional extra
(``pip install textgen-env[api]``): this module imports it only when a guide or a check is
made, so ``textgen_env`` itself imports without it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any, Literal

import numpy as np

from textgen_env._checks import check_int, check_real
from textgen_env.errors import GuideError, GuideTimeoutError
from textgen_env.guides.handoff import ReplyReader, finish, format_prompt, state_texts
from textgen_env.guides.validation import check_request, check_template
from textgen_env.state import TextState
from textgen_env.tokenizer import Tokenizer

__all__ = ["API_KEY_ENV", "ENDPOINTS", "MAX_ROUNDS", "APIGuide", "Endpoint", "check_server"]

Endpoint = Literal["completions", "chat"]
ENDPOINTS: tuple[Endpoint, ...] = ("completions", "chat")
"""``"completions"`` (``/v1/completions``: the server continues a text) or ``"chat"``
(``/v1/chat/completions``: the server answers a user turn)."""

API_KEY_ENV = "OPENAI_API_KEY"
"""Environment variable the API key is read from when none is given."""

MAX_ROUNDS = 8
"""Most requests per state and :meth:`APIGuide.act` call: a reply cut by ``max_tokens`` whose
text re-encodes to fewer policy tokens than asked is continued by another request for the
tokens still missing; a state still short after this many is treated as finished."""

# Fields the guide sets in every request body (``extra_body`` may not override them).
_OWN_FIELDS = frozenset(
    {"model", "prompt", "messages", "max_tokens", "temperature", "top_p", "seed", "stop"}
)
# HTTP statuses the openai client retries (with backoff, honouring Retry-After).
_RETRIED = frozenset({408, 409, 429})
_USAGE_KEYS = (
    "requests",
    "cache_hits",
    "retries",
    "errors",
    "failed_requests",
    "prompt_tokens",
    "completion_tokens",
    "request_seconds",
    "seconds",
)


def _openai() -> ModuleType:
    """The ``openai`` package, or an ImportError that says how to install it."""
    try:
        import openai
    except ImportError as err:
        raise ImportError(
            "the API guide needs the openai client: pip install textgen-env[api]"
        ) from err
    return openai


def _check_base_url(base_url: object) -> str:
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
    return base_url.rstrip("/")


def _api_key(api_key: str | None) -> str:
    """The key to send: ``api_key``, else ``$OPENAI_API_KEY``, else a placeholder (local
    servers need none; one that does answers HTTP 401, which names the variable)."""
    if api_key is not None and not isinstance(api_key, str):
        raise TypeError(f"api_key must be a str or None, got {type(api_key).__name__}")
    return api_key or os.environ.get(API_KEY_ENV) or "no-key"


def _detail(err: Any) -> str:
    """What an HTTP error answer says: its body's text (shortened), else the client's message."""
    text = err.response.text.strip()
    return f"{text:.300}" if text else str(err.message)


def check_server(
    base_url: str, model: str, *, api_key: str | None = None, timeout_s: float = 10.0
) -> list[str]:
    """Check that an OpenAI-compatible server answers at ``base_url`` and serves ``model``.

    Asks ``GET {base_url}/models`` once (one retry on a connection error). A server without
    that route (HTTP 404) is accepted as it is: its first completion request will tell.

    Returns:
        The model ids the server lists (empty if it has no list).

    Raises:
        ImportError: The ``openai`` package is not installed.
        ValueError: ``base_url`` is not an http(s) URL, or ``model`` is empty.
        GuideError: No server answers, it refuses the key, or it does not list ``model``.
    """
    openai = _openai()
    url = _check_base_url(base_url)
    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be a non-empty str, got {model!r}")
    timeout_s = check_real(timeout_s, "timeout_s", gt=0.0)
    client = openai.OpenAI(
        base_url=url, api_key=_api_key(api_key), timeout=timeout_s, max_retries=1
    )
    try:
        listed = [m.id for m in client.models.list()]
    except openai.APIConnectionError as err:  # timeouts included
        raise GuideError(
            f"no OpenAI-compatible server answers at {url} ({err}); is it running, and does "
            "the URL end with its API prefix (e.g. /v1)?"
        ) from err
    except openai.APIStatusError as err:
        if err.status_code == 404:
            return []
        if err.status_code in (401, 403):
            raise GuideError(
                f"the server at {url} refused the API key (HTTP {err.status_code}); set "
                f"{API_KEY_ENV}"
            ) from err
        raise GuideError(
            f"the server at {url} answered HTTP {err.status_code} to GET /models: {_detail(err)}"
        ) from err
    finally:
        client.close()
    if model not in listed:
        shown = ", ".join(repr(m) for m in listed[:10]) + (" ..." if len(listed) > 10 else "")
        raise GuideError(
            f"the server at {url} does not serve model {model!r}; it serves {shown or 'none'}"
        )
    return listed


@dataclass(frozen=True)
class _Reply:
    """One completion: its text and why it stopped (``"length"``: ``max_tokens`` reached)."""

    text: str
    finish_reason: str | None


class _ReplyCache:
    """Replies on disk, one JSON file per request body (its SHA-256), written atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @staticmethod
    def key(body: Mapping[str, Any]) -> str:
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def get(self, body: Mapping[str, Any]) -> _Reply | None:
        """The stored reply to ``body``; ``None`` if there is none or the file is unreadable
        (it is then written anew)."""
        path = self.folder / f"{self.key(body)}.json"
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            if entry["request"] != json.loads(json.dumps(body)):
                return None
            reply = entry["reply"]
            return _Reply(str(reply["text"]), reply["finish_reason"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, body: Mapping[str, Any], reply: _Reply) -> None:
        """Store ``reply`` for ``body``: a temporary file renamed into place (never a half
        file), with the mode of a plain write."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.key(body)}.json"
        tmp = self.folder / f".tmp-{uuid.uuid4().hex}.json"
        entry = {"request": body, "reply": dataclasses.asdict(reply)}
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(entry, handle, ensure_ascii=False, sort_keys=True)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


class APIGuide:
    """A guide whose model runs behind an OpenAI-compatible HTTP server.

    Each state asked for ``k > 0`` tokens becomes one request (states of one :meth:`act` call
    go out concurrently, at most ``max_concurrency`` at a time). Its text is the state's
    prompt (decoded with the policy tokenizer) put into ``prompt_template``, then the
    completion so far:

    * ``endpoint="completions"`` (``/v1/completions``, the paper's GPT-3 setting): the prompt
      is that text, and the server continues it. To talk to an instruct model, write its chat
      markup into the template (``build_guide`` of ``agents`` does this for the task's template).
    * ``endpoint="chat"`` (``/v1/chat/completions``): the formatted prompt is the user turn;
      a non-empty completion so far is sent as a final assistant message to be continued.
      Servers differ there: vLLM continues it when ``extra_body`` holds
      ``{"continue_final_message": True, "add_generation_prompt": False}``, llama.cpp's server
      continues it by default, while OpenAI's hosted API and ``transformers serve`` start a new
      answer. Use ``"completions"`` wherever the guide must continue half-written text.

    Requests ask for ``max_tokens = k``: the guide never has the server generate more than the
    roll-in or roll-out asks for. The reply is handed off through text
    (:class:`~textgen_env.guides.handoff.ReplyReader`: cut at the policy EOS text, the ``stop``
    strings and control tokens, re-encoded with the policy tokenizer). A reply the server
    ended itself (``finish_reason`` other than ``"length"``) that is shorter than ``k``
    policy tokens ends the episode (policy EOS appended); one cut by ``max_tokens`` whose
    re-encoding is shorter (another tokenizer) is continued by a request for the tokens still
    missing, at most :data:`MAX_ROUNDS` requests per state.

    Failures: the ``openai`` client retries connection errors, timeouts and HTTP 408, 409,
    429 and 5xx answers up to ``max_retries`` times with exponential backoff, honouring a
    ``Retry-After`` header. A request still failing then raises
    :class:`~textgen_env.errors.GuideTimeoutError` (timed out) or
    :class:`~textgen_env.errors.GuideError` (naming the URL, the model and the HTTP status);
    so does a malformed answer (no choice, no text), at once. A timeout closes the request's
    connection, and :meth:`act` returns or raises only once every request it started has
    ended: nothing it started is left running (requests not yet sent when one fails are
    dropped). The oracles leave the env untouched on any of these errors.

    Cache: with ``cache_dir``, every reply is stored as a JSON file named by the SHA-256 of
    the request body (endpoint, model, prompt or messages, ``max_tokens``, sampling settings,
    seed, stop strings, ``extra_body``; not the URL or the key), and an identical request is
    answered from it without a call. A rerun with the same seed then replays the same
    replies, whatever the server does.

    Randomness: every request gets a seed drawn from ``rng`` (drawn even when not sent, so
    ``rng`` advances the same way), sent as ``seed`` when ``send_seed``. The replies are as
    reproducible as the server makes seeded sampling (``transformers serve`` and vLLM honour
    it for one request at a time; hosted APIs do so on a best-effort basis), or fully so from
    the cache.

    Usage: :meth:`usage` counts requests, cache hits, retries, failed attempts, failed
    requests, prompt and completion tokens (as the server reports them) and seconds since the
    guide was made; subtract two snapshots for one iteration.

    The API key is never stored on the guide or shown by its ``repr``; it lives only in the
    ``openai`` client. Call :meth:`close` (or use the guide as a context manager) to close the
    client's connections. Every attribute is read-only.

    Args:
        base_url: The server's API root, e.g. ``"http://127.0.0.1:8000/v1"`` or
            ``"https://api.openai.com/v1"``.
        model: The model name the server knows (``GET /v1/models`` lists them).
        policy_tokenizer: The env's tokenizer; must define ``eos_token_id``.
        api_key: The key; ``None`` reads ``$OPENAI_API_KEY`` (local servers need none).
        endpoint: ``"completions"`` or ``"chat"`` (see above).
        prompt_template: Text with a ``{prompt}`` placeholder; ``None`` uses the prompt as is.
        stop: Strings that end a reply; sent to the server and cut again on arrival.
        temperature: Sampling temperature (0: greedy where the server supports it).
        top_p: Nucleus filter in ``(0, 1]``.
        send_seed: Send each request's seed (turn off for servers that reject ``seed``).
        extra_body: Further JSON fields for every request body, for server-specific settings
            (e.g. vLLM's ``{"top_k": 50}``); they may not replace the fields the guide sets.
        timeout_s: Seconds one HTTP attempt may take to connect, and to wait for each read.
        max_retries: Extra attempts of a request after a retryable failure.
        max_concurrency: Most requests in flight at once.
        cache_dir: Folder of the reply cache; ``None``: no cache.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        policy_tokenizer: Tokenizer,
        *,
        api_key: str | None = None,
        endpoint: Endpoint = "completions",
        prompt_template: str | None = None,
        stop: Sequence[str] = (),
        temperature: float = 1.0,
        top_p: float = 1.0,
        send_seed: bool = True,
        extra_body: Mapping[str, Any] | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        max_concurrency: int = 4,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        openai = _openai()
        self._base_url = _check_base_url(base_url)
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty str, got {model!r}")
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}, got {endpoint!r}")
        if not isinstance(send_seed, bool):
            raise TypeError(f"send_seed must be a bool, got {type(send_seed).__name__}")
        self._model = model
        self._endpoint: Endpoint = endpoint
        self._reader = ReplyReader(policy_tokenizer, stop, "APIGuide")
        self._policy_tokenizer = policy_tokenizer
        self._prompt_template = check_template(prompt_template)
        self._sampling: dict[str, Any] = {
            "temperature": check_real(temperature, "temperature", ge=0.0),
            "top_p": check_real(top_p, "top_p", gt=0.0, le=1.0),
        }
        self._send_seed = send_seed
        self._extra_body = self._check_extra_body(extra_body)
        self._timeout_s = check_real(timeout_s, "timeout_s", gt=0.0)
        self._max_retries = check_int(max_retries, "max_retries", minimum=0)
        self._max_concurrency = check_int(max_concurrency, "max_concurrency", minimum=1)
        self._cache = None if cache_dir is None else _ReplyCache(Path(cache_dir))
        self._stats = dict.fromkeys(_USAGE_KEYS, 0.0)
        self._stats_lock = threading.Lock()
        self._attempts = 0  # HTTP attempts (request hook) and successful answers (response hook)
        self._answered = 0
        self._closed = False
        http = openai.DefaultHttpxClient(
            event_hooks={"request": [self._on_attempt], "response": [self._on_answer]}
        )
        self._client = openai.OpenAI(
            base_url=self._base_url,
            api_key=_api_key(api_key),
            timeout=self._timeout_s,
            max_retries=self._max_retries,
            http_client=http,
        )
        self._openai = openai

    @staticmethod
    def _check_extra_body(extra_body: Mapping[str, Any] | None) -> Mapping[str, Any]:
        if extra_body is None:
            return MappingProxyType({})
        if not isinstance(extra_body, Mapping):
            raise TypeError(f"extra_body must be a mapping, got {type(extra_body).__name__}")
        clash = sorted(_OWN_FIELDS & set(extra_body))
        if clash:
            raise ValueError(f"extra_body may not set {clash}: the guide sets them (see its args)")
        try:
            copy = json.loads(json.dumps(dict(extra_body)))
        except (TypeError, ValueError) as err:
            raise TypeError(f"extra_body must be JSON-serialisable: {err}") from err
        return MappingProxyType(copy)

    def __repr__(self) -> str:
        return (
            f"APIGuide(base_url={self.base_url!r}, model={self.model!r}, "
            f"endpoint={self.endpoint!r})"
        )

    # ----------------------------------------------------------------- attributes
    @property
    def base_url(self) -> str:
        """The server's API root (read-only)."""
        return self._base_url

    @property
    def model(self) -> str:
        """The served model's name (read-only)."""
        return self._model

    @property
    def endpoint(self) -> Endpoint:
        """``"completions"`` or ``"chat"`` (read-only)."""
        return self._endpoint

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
        """The stop strings (read-only)."""
        return self._reader.stop

    @property
    def sampling(self) -> Mapping[str, Any]:
        """``temperature`` and ``top_p`` (a read-only view)."""
        return MappingProxyType(self._sampling)

    @property
    def send_seed(self) -> bool:
        """Whether each request carries its seed (read-only)."""
        return self._send_seed

    @property
    def extra_body(self) -> Mapping[str, Any]:
        """Further fields of every request body (a read-only view)."""
        return self._extra_body

    @property
    def timeout_s(self) -> float:
        """Seconds one HTTP attempt may wait to connect and for each read (read-only)."""
        return self._timeout_s

    @property
    def max_retries(self) -> int:
        """Extra attempts after a retryable failure (read-only)."""
        return self._max_retries

    @property
    def max_concurrency(self) -> int:
        """Most requests in flight at once (read-only)."""
        return self._max_concurrency

    @property
    def cache_dir(self) -> Path | None:
        """The reply cache's folder, if any (read-only)."""
        return None if self._cache is None else self._cache.folder

    # ---------------------------------------------------------------------- usage
    def usage(self) -> dict[str, float]:
        """Counts since the guide was made (a snapshot; subtract two for an interval).

        ``requests`` sent (cache misses), ``cache_hits``, ``retries`` (attempts after a
        request's first), ``errors`` (failed attempts: an error status, a timeout, a lost
        connection), ``failed_requests`` (requests that still failed after their retries),
        ``prompt_tokens`` and ``completion_tokens`` (as the server reports them),
        ``request_seconds`` (summed over requests; concurrent ones overlap) and ``seconds``
        (wall time inside :meth:`act`).
        """
        with self._stats_lock:
            out = dict(self._stats)
            out["retries"] = float(self._attempts) - out["requests"]
            out["errors"] = float(self._attempts - self._answered)
        return out

    def _add(self, **amounts: float) -> None:
        with self._stats_lock:
            for name, amount in amounts.items():
                self._stats[name] += amount

    def _on_attempt(self, request: object) -> None:
        with self._stats_lock:
            self._attempts += 1

    def _on_answer(self, response: Any) -> None:
        if response.status_code < 400:
            with self._stats_lock:
                self._answered += 1

    # -------------------------------------------------------------------- closing
    def close(self) -> None:
        """Close the HTTP client's connections; later :meth:`act` calls raise GuideError."""
        if not self._closed:
            self._closed = True
            self._client.close()

    def __enter__(self) -> APIGuide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------- requests
    def _body(self, user: str, written: str, max_tokens: int, seed: int) -> dict[str, Any]:
        """The JSON body of one request (also the cache key): ``user`` is the formatted
        prompt, ``written`` the text the answer continues."""
        body: dict[str, Any] = {"model": self.model}
        if self.endpoint == "completions":
            body["prompt"] = user + written
        else:
            body["messages"] = [{"role": "user", "content": user}] + (
                [{"role": "assistant", "content": written}] if written else []
            )
        body |= {"max_tokens": max_tokens, **self._sampling}
        if self.send_seed:
            body["seed"] = seed
        if self.stop:
            body["stop"] = list(self.stop)
        return body | dict(self._extra_body)

    def _request(self, body: dict[str, Any], seed: int) -> _Reply:
        """One completion for ``body``: from the cache, else from the server."""
        key = {"endpoint": self.endpoint, **body, "seed": seed}
        if self._cache is not None and (cached := self._cache.get(key)) is not None:
            self._add(cache_hits=1)
            return cached
        self._add(requests=1)
        start = time.perf_counter()
        try:
            reply = self._send(body)
        except GuideError:
            self._add(failed_requests=1)
            raise
        finally:
            self._add(request_seconds=time.perf_counter() - start)
        if self._cache is not None:
            self._cache.put(key, reply)
        return reply

    def _send(self, body: dict[str, Any]) -> _Reply:
        """POST ``body``; read the first choice's text and finish reason and the token usage."""
        openai = self._openai
        fields = {k: body[k] for k in ("model", "max_tokens", "temperature", "top_p")}
        fields |= {k: body[k] for k in ("seed", "stop") if k in body}
        extra = dict(self._extra_body) or None
        where = f"{self.base_url} (model {self.model!r})"
        try:
            if self.endpoint == "completions":
                answer: Any = self._client.completions.create(
                    prompt=body["prompt"], extra_body=extra, **fields
                )
            else:
                answer = self._client.chat.completions.create(
                    messages=body["messages"], extra_body=extra, **fields
                )
        except openai.APITimeoutError as err:
            raise GuideTimeoutError(
                f"APIGuide: no answer from {where} within {self.timeout_s:g} s "
                f"({self.max_retries + 1} attempt(s))"
            ) from err
        except openai.APIConnectionError as err:
            raise GuideError(
                f"APIGuide: cannot reach {where} ({self.max_retries + 1} attempt(s)): {err}"
            ) from err
        except openai.APIStatusError as err:
            status = err.status_code
            tries = (
                f" on all {self.max_retries + 1} attempt(s)"
                if status in _RETRIED or status >= 500
                else ""
            )
            raise GuideError(
                f"APIGuide: {where} answered HTTP {status}{tries}: {_detail(err)}"
            ) from err
        except (openai.APIResponseValidationError, ValueError) as err:
            raise GuideError(f"APIGuide: {where} sent a malformed answer: {err}") from err
        return self._read(answer, where)

    def _read(self, answer: Any, where: str) -> _Reply:
        try:
            choice = answer.choices[0]
            text = choice.text if self.endpoint == "completions" else choice.message.content
            reason = choice.finish_reason
        except (AttributeError, IndexError, KeyError, TypeError) as err:
            raise GuideError(
                f"APIGuide: {where} sent a malformed answer (no choice with text): {answer!r:.200}"
            ) from err
        if not isinstance(text, str):
            raise GuideError(
                f"APIGuide: {where} sent a malformed answer: its text is {text!r:.80}, not a str"
            )
        usage = getattr(answer, "usage", None)
        if usage is not None:
            self._add(
                prompt_tokens=float(getattr(usage, "prompt_tokens", 0) or 0),
                completion_tokens=float(getattr(usage, "completion_tokens", 0) or 0),
            )
        return _Reply(text, reason if isinstance(reason, str) else None)

    def _continue(self, user: str, completion: str, k: int, seed: int) -> tuple[int, ...]:
        """Up to ``k`` policy ids continuing ``completion`` after the prompt ``user`` (see the
        class docstring: ``max_tokens`` = the tokens still missing, at most MAX_ROUNDS rounds)."""
        text = ""
        ids: list[int] = []
        for _ in range(MAX_ROUNDS):
            reply = self._request(self._body(user, completion + text, k - len(ids), seed), seed)
            text += reply.text
            ids, ended = self._reader.ids(text)
            if ended or len(ids) >= k or reply.finish_reason != "length" or not reply.text:
                break
        return finish(ids, k, self.eos_token_id)

    def _run(self, jobs: list[Callable[[], tuple[int, ...]]]) -> list[tuple[int, ...]]:
        """Run ``jobs`` at most ``max_concurrency`` at a time; the first failure (in job order)
        is raised once every started job has ended, and jobs not yet started are dropped."""
        if self.max_concurrency == 1 or len(jobs) == 1:
            return [job() for job in jobs]
        pool = ThreadPoolExecutor(
            max_workers=min(self.max_concurrency, len(jobs)), thread_name_prefix="APIGuide"
        )
        try:
            futures = [pool.submit(job) for job in jobs]
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        for future in futures:
            if not future.cancelled() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]
        return [future.result() for future in futures]

    def act(
        self,
        states: Sequence[TextState],
        num_tokens: Sequence[int],
        rng: np.random.Generator,
    ) -> list[tuple[int, ...]]:
        """Ask the server for continuations of the states with ``num_tokens[i] > 0``."""
        counts = check_request(states, num_tokens, rng)
        out: list[tuple[int, ...]] = [()] * len(counts)
        rows = [i for i, k in enumerate(counts) if k > 0]
        if not rows:
            return out
        if self._closed:
            raise GuideError("APIGuide: the guide is closed")
        seeds = rng.integers(0, 2**31 - 1, size=len(rows))
        prompts, completions = state_texts(self.policy_tokenizer, [states[i] for i in rows])
        jobs = [
            partial(self._continue, format_prompt(self.prompt_template, p), c, counts[i], int(s))
            for i, p, c, s in zip(rows, prompts, completions, seeds, strict=True)
        ]
        start = time.perf_counter()
        try:
            results = self._run(jobs)
        finally:
            self._add(seconds=time.perf_counter() - start)
        for i, tokens in zip(rows, results, strict=True):
            out[i] = tokens
        return out
