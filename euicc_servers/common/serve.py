"""Running a reference server: uvicorn on loopback over HTTPS (or plain HTTP), in the
foreground or in a background thread for tests and benchmarks (:func:`run_in_thread`).

HTTPS uses the given credential. uvicorn reads certificates from files only, so they are
written to a private temporary directory, loaded, and deleted before the server accepts
connections.

Slow clients: uvicorn closes idle kept-alive connections, but a client that sends half a
request line, half its headers or half its body would hold a connection (and, in numbers,
the server) for ever. :class:`GuardedHttpToolsProtocol` (uvicorn's httptools protocol) and
:class:`GuardedH11Protocol` (its h11 one, used when httptools is not installed) give each
request ``header_timeout`` seconds from its first byte (from the connection's start for the
first one) until its last: a request whose headers are not complete by then gets 408 and
the connection is closed; a body still arriving is cut off (the app sees the client gone,
see :class:`~.limits.RequestGuard`).

The event loop is uvloop where it is installed (uvicorn's ``auto``), else asyncio's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
except ImportError:  # httptools is not installed: the h11 protocol serves
    HttpToolsProtocol = None  # type: ignore[assignment, misc]

from euicc_protocol.testpki import Credential

from .lean_cycle import LeanCycle
from .limits import BODY_COMPLETE, DEFAULT_LIMITS, Limits

__all__ = [
    "GuardedH11Protocol",
    "GuardedHttpToolsProtocol",
    "RunningServer",
    "run_in_thread",
    "serve",
]

log = logging.getLogger(__name__)


class _CoalescingTransport:
    """A transport that gathers the writes of one loop iteration into one.

    uvicorn writes a response's head and its body separately; over TLS each write is a TLS
    record and a ``send`` system call. Gathered, a response is one of each. Everything but
    ``write`` and ``close`` (which sends what is gathered first) goes to the real transport.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _RequestDeadline:
    """What both guarded protocols share: writes coalesced per loop iteration, and one timer
    that closes the connection (``_too_slow``) when a request has not arrived completely in
    ``request_timeout`` seconds. Put first among the bases, before uvicorn's protocol."""

    #: Seconds a request has from its first byte to its last (set per server, see
    #: :func:`_protocol_for`).
    request_timeout: float = DEFAULT_LIMITS.header_timeout
    loop: asyncio.AbstractEventLoop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        coalescing: Any = _CoalescingTransport(transport, self.loop)  # type: ignore[arg-type]
        super().connection_made(coalescing)  # type: ignore[misc]
        self._deadline: asyncio.TimerHandle | None = None
        self._arm()  # a client that connects and sends nothing is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.request_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        raise NotImplementedError


class GuardedH11Protocol(_RequestDeadline, H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request to arrive completely."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._check()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._check()

    def _check(self) -> None:
        # their_state IDLE with bytes buffered: headers under way; SEND_BODY: body under
        # way; DONE (or closed): the request is all here, the app has it.
        state = self.conn.their_state
        if state is h11.IDLE and not self.conn.trailing_data[0]:
            self._disarm()  # nothing of a next request yet: the keep-alive timer applies
        elif state in (h11.IDLE, h11.SEND_BODY):
            self._arm()
        else:
            self._disarm()

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.IDLE and self.conn.our_state is h11.IDLE:
            log.info("closing a connection whose request did not arrive in time")
            # No request to answer in h11's eyes: the 408 is written as bytes.
            self.transport.write(_REQUEST_TIMEOUT)
        elif state is not h11.SEND_BODY:
            return  # the request is complete and being answered
        self.transport.close()


# Where the request a GuardedHttpToolsProtocol reads is (its parser's callbacks move it on).
_WAITING, _HEADERS, _BODY, _COMPLETE = range(4)


if HttpToolsProtocol is not None:

    class GuardedHttpToolsProtocol(_RequestDeadline, HttpToolsProtocol):
        """uvicorn's httptools protocol with a deadline for each request to arrive completely
        (the rules of :class:`GuardedH11Protocol`)."""

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self._stage = _WAITING
            super().connection_made(transport)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            # A request begun and not complete in this data (most arrive whole): its deadline
            # runs from now, the moment its first byte arrived.
            if self._stage == _HEADERS or self._stage == _BODY:
                self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._stage = _HEADERS

        def on_headers_complete(self) -> None:
            self._stage = _BODY
            super().on_headers_complete()
            # The cycle uvicorn just made (its task has not run yet) writes responses with
            # server-made headers the lean way (:mod:`.lean_cycle`).
            if type(self.cycle) is RequestResponseCycle:
                self.cycle.__class__ = LeanCycle

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._stage = _COMPLETE
            self.scope[BODY_COMPLETE] = True  # type: ignore[literal-required]
            self._disarm()  # the request is all here: the keep-alive timer applies next

        def _too_slow(self) -> None:
            self._deadline = None
            if self.transport.is_closing() or self._stage == _COMPLETE:
                return
            answering = self.cycle is not None and not self.cycle.response_complete
            if self._stage in (_WAITING, _HEADERS) and not answering:
                log.info("closing a connection whose request did not arrive in time")
                self.transport.write(_REQUEST_TIMEOUT)  # no request to answer: bytes
            self.transport.close()  # a body still arriving is cut off

else:  # pragma: no cover - httptools is a dependency
    GuardedHttpToolsProtocol = None  # type: ignore[assignment, misc]


_TIMEOUT_TEXT = b"the request did not arrive in time\n"
_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n" % len(_TIMEOUT_TEXT) + _TIMEOUT_TEXT
)


def _protocol_for(limits: Limits) -> type[asyncio.Protocol]:
    base: type[asyncio.Protocol] = (
        GuardedH11Protocol if HttpToolsProtocol is None else GuardedHttpToolsProtocol
    )
    return type(base.__name__, (base,), {"request_timeout": limits.header_timeout})


@contextmanager
def _tls_files(tls: Credential | None) -> Iterator[tuple[str | None, str | None]]:
    """(certificate file, key file) of ``tls`` in PEM, existing only inside the block."""
    if tls is None:
        yield None, None
        return
    with tempfile.TemporaryDirectory(prefix="euicc-sim-tls-") as tmp:  # mode 0700
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(tls.cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(tls.key_pem())
        yield str(cert), str(key)


def _uvicorn_config(
    app: Any, host: str, port: int, tls: Credential | None, log_level: str, limits: Limits
) -> uvicorn.Config:
    with _tls_files(tls) as (certfile, keyfile):
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            # "auto": apps with start-up/shut-down work (the eIM's scheduler) get it.
            lifespan="auto",
            loop="auto",  # uvloop where it is installed
            http=_protocol_for(limits),
            # Nothing here reads the client's address or the scheme, so uvicorn's rewriting of
            # them from X-Forwarded-* headers is an ASGI layer on every request for nothing.
            proxy_headers=False,
            # The access log is written at info: below that, skip building its arguments.
            access_log=log_level.lower() in ("trace", "debug", "info"),
            # Idle keep-alive clients must not hold up a stop for uvicorn's default wait.
            timeout_graceful_shutdown=1,
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
        )
        config.load()  # reads the TLS files now, while they exist
    return config


@dataclass
class RunningServer:
    """A server running in a background thread. ``base_url`` is ``https://127.0.0.1:PORT``
    (``http://`` without TLS); :meth:`stop` shuts it down. Also a context manager."""

    base_url: str
    host: str
    port: int
    stop: Callable[[], None]

    @property
    def address(self) -> str:
        """``host:port``, the address a client would use."""
        return f"{self.host}:{self.port}"

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_in_thread(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: Credential | None = None,
    log_level: str = "warning",
    start_timeout: float = 10.0,
    limits: Limits = DEFAULT_LIMITS,
) -> RunningServer:
    """Serve the ASGI ``app`` with uvicorn in a daemon thread; port 0 picks a free port.

    Returns once the server accepts connections.
    """
    # IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on accepted sockets of that protocol,
    # and without it Nagle + delayed ACK hold every response for about 40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(_uvicorn_config(app, host, bound_port, tls, log_level, limits))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"server-{bound_port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"the server on {host}:{bound_port} did not start")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(start_timeout)
        sock.close()

    scheme = "https" if tls is not None else "http"
    return RunningServer(f"{scheme}://{host}:{bound_port}", host, bound_port, stop)


def serve(
    app: Any,
    *,
    host: str,
    port: int,
    tls: Credential | None,
    log_level: str = "info",
    limits: Limits = DEFAULT_LIMITS,
    sock: socket.socket | None = None,
) -> None:
    """Serve the ASGI ``app`` in the foreground until interrupted (on ``sock``, a bound
    listening socket shared with other processes, when given)."""
    server = uvicorn.Server(_uvicorn_config(app, host, port, tls, log_level, limits))
    server.run(sockets=[sock] if sock is not None else None)
