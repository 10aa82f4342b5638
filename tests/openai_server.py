"""A real OpenAI-compatible server for the tests, and a fault-injecting proxy in front of it.

* :func:`start_transformers_serve` starts ``transformers serve`` (transformers' own server,
  from the ``serving`` extra) on 127.0.0.1 for a local model folder, waits (bounded) until
  ``GET /health`` answers and returns a :class:`Server`; :meth:`Server.stop` ends it.
* :class:`FaultProxy` forwards HTTP requests on another loopback port to that server, records
  them and, per request, can inject a fault (a delay, a dropped connection, an HTTP status, a
  body of its own). It counts the connections it is serving, so a test can see that a client
  that gave up closed its request.

Standard library only (``http.server``, ``http.client``, ``subprocess``, ``threading``).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = [
    "Fault",
    "FaultProxy",
    "Logged",
    "Server",
    "ServerUnavailable",
    "free_port",
    "start_transformers_serve",
]

HOST = "127.0.0.1"


class ServerUnavailable(RuntimeError):
    """The server could not be started on this machine (the message says why)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _get(url: str, timeout_s: float) -> int:
    """HTTP status of ``GET url`` (0 when nothing answers)."""
    host, _, rest = url.removeprefix("http://").partition("/")
    name, _, port = host.partition(":")
    conn = http.client.HTTPConnection(name, int(port), timeout=timeout_s)
    try:
        conn.request("GET", "/" + rest)
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


@dataclass
class Server:
    """A running ``transformers serve`` process."""

    process: subprocess.Popen[bytes]
    port: int
    model: str
    """The model id the server lists (the folder it was started with)."""
    log: Path
    started_s: float
    """Seconds from the start of the process until ``/health`` answered."""

    @property
    def root(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI API root, ``http://127.0.0.1:PORT/v1``."""
        return f"{self.root}/v1"

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the server's process group, SIGKILL it if it has not ended in time."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout_s)


def start_transformers_serve(
    model_dir: Path, log: Path, *, timeout_s: float = 90.0, threads: int = 1
) -> Server:
    """Start ``transformers serve --host 127.0.0.1 --port PORT model_dir`` (hub offline, torch
    on ``threads`` threads) and wait until ``GET /health`` answers 200, at most ``timeout_s``
    seconds.

    One thread is the default: on 2 shared cores, a server with 2 OpenMP threads answered a
    3-token request in about 4.4 s while another process kept one core busy; with 1 thread,
    0.3-0.4 s.

    Raises:
        ServerUnavailable: The serving extra or the CLI is missing, the process exited, or
            it did not answer in time (it is stopped then); the message ends with its log.
    """
    from transformers.utils.import_utils import is_serve_available

    if not is_serve_available():
        raise ServerUnavailable(
            "transformers serve needs its extra: pip install textgen-env[serving]"
        )
    cli = shutil.which("transformers", path=str(Path(sys.executable).parent))
    if cli is None:
        raise ServerUnavailable(f"no transformers CLI next to {sys.executable}")
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [cli, "serve", "--host", HOST, "--port", str(port), str(model_dir)]
    start = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = Server(process, port, str(model_dir), log, 0.0)
    while time.perf_counter() - start < timeout_s:
        if process.poll() is not None:
            raise ServerUnavailable(
                f"transformers serve exited with status {process.returncode}: {_tail(log)}"
            )
        if _get(f"{server.root}/health", 1.0) == 200:
            server.started_s = time.perf_counter() - start
            return server
        time.sleep(0.2)
    server.stop()
    raise ServerUnavailable(
        f"transformers serve did not answer GET /health within {timeout_s:g} s: {_tail(log)}"
    )


def _tail(log: Path, lines: int = 5) -> str:
    text = log.read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:]) or "(empty log)"


# --------------------------------------------------------------------------- the proxy
@dataclass(frozen=True)
class Fault:
    """What the proxy does to one request instead of (or before) forwarding it.

    ``delay_s``: wait this long first (ends early if the client closes the connection, which
    is then counted in :attr:`FaultProxy.abandoned`); ``drop``: close the connection without
    an answer (a server that died); ``status``: answer this status with ``body`` and
    ``headers`` instead of forwarding.
    """

    delay_s: float = 0.0
    drop: bool = False
    status: int | None = None
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Logged:
    """A request the proxy received."""

    method: str
    path: str
    body: dict[str, Any] | None
    at: float
    """``time.perf_counter()`` when it arrived."""


# The rule that picks a request's fault: (method, path, body, number of earlier requests).
FaultRule = Callable[[str, str, "dict[str, Any] | None", int], "Fault | None"]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class FaultProxy:
    """An HTTP/1.0 proxy on a free loopback port in front of ``upstream`` (``http://host:port``).

    Set :attr:`rule` to inject faults; :attr:`log` lists the requests, :attr:`open` counts the
    connections being served (:attr:`most_open`: the most at once), :attr:`abandoned` the
    delayed requests whose client hung up.
    Use as a context manager (or call :meth:`close`).
    """

    upstream: str
    rule: FaultRule | None = None
    log: list[Logged] = field(default_factory=list)
    open: int = 0
    most_open: int = 0
    abandoned: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def handle(self) -> None:
                with proxy._lock:
                    proxy.open += 1
                    proxy.most_open = max(proxy.most_open, proxy.open)
                try:
                    super().handle()
                finally:
                    with proxy._lock:
                        proxy.open -= 1

            def do_GET(self) -> None:
                proxy._serve(self, "GET")

            def do_POST(self) -> None:
                proxy._serve(self, "POST")

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name="FaultProxy", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """The OpenAI API root through the proxy, ``http://127.0.0.1:PORT/v1``."""
        return f"http://{HOST}:{self.port}/v1"

    def posts(self) -> list[Logged]:
        """The POST requests received so far (completions)."""
        with self._lock:
            return [r for r in self.log if r.method == "POST"]

    def wait_idle(self, timeout_s: float = 2.0) -> bool:
        """Wait until no connection is being served; whether that happened in time."""
        deadline = time.perf_counter() + timeout_s
        while self.open and time.perf_counter() < deadline:
            time.sleep(0.01)
        return self.open == 0

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ serving
    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        size = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(size) if size else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            earlier = len(self.log)
            self.log.append(Logged(method, handler.path, body, time.perf_counter()))
        fault = self.rule(method, handler.path, body, earlier) if self.rule else None
        if fault is not None and fault.delay_s and not self._wait(handler, fault.delay_s):
            with self._lock:
                self.abandoned += 1
            return
        if fault is not None and fault.drop:
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault is not None and fault.status is not None:
            self._answer(handler, fault.status, list(fault.headers), fault.body)
            return
        self._forward(handler, method, raw)

    @staticmethod
    def _wait(handler: BaseHTTPRequestHandler, seconds: float) -> bool:
        """Sleep ``seconds``; ``False`` as soon as the client closes its connection."""
        sock = handler.connection
        deadline = time.perf_counter() + seconds
        while (left := deadline - time.perf_counter()) > 0:
            readable, _, _ = select.select([sock], [], [], min(left, 0.02))
            if readable:
                try:
                    if sock.recv(1, socket.MSG_PEEK) == b"":
                        return False
                except OSError:
                    return False
        return True

    def _forward(self, handler: BaseHTTPRequestHandler, method: str, raw: bytes) -> None:
        host, _, port = self.upstream.removeprefix("http://").partition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
            conn.request(method, handler.path, body=raw or None, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in HOP_BY_HOP]
            self._answer(handler, answer.status, kept, data)
        except OSError:  # the upstream is gone: drop the client too
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
        finally:
            conn.close()

    @staticmethod
    def _answer(
        handler: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        handler.send_response(status)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        with contextlib.suppress(OSError):
            handler.wfile.write(body)
