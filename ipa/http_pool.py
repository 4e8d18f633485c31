"""A lean HTTP/1.1 client for many concurrent ESipa exchanges with one eIM.

httpx's own client and connection pool cost about four times as much CPU per request as the
exchange itself; a fleet of emulated devices in one process is CPU bound, so the fleet
(:mod:`ipa.fleet`) posts through :class:`PooledTransport` (an httpx transport: keep-alive
connections over asyncio streams, shared by every request) and :class:`FleetHttpClient`
(plain POSTs straight to the pool). Both still hand back ``httpx.Response`` objects and
raise ``httpx`` errors, so the ESipa client above them does not know the difference. The ES9+
client (:mod:`ipa.es9p`) uses them too, one pool per client.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import select
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any

import httpx

from ipa.esipa import TlsPinMismatch
from ipa.tls import certificate_public_key

__all__ = ["FleetHttpClient", "PooledTransport"]

_MAX_HEAD = 64 * 1024
_Origin = tuple[str, str, int]


@dataclass(eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def reusable(self) -> bool:
        return not (self.reader.at_eof() or self.writer.is_closing())

    def readable(self) -> bool:
        """Whether the socket of this idle connection has something to read that the event
        loop has not taken yet: the server's close (or bytes it should not have sent)."""
        sock = self.writer.get_extra_info("socket")
        if sock is None:
            return False
        try:
            if hasattr(select, "poll"):  # no limit on descriptor numbers, unlike select()
                poller = select.poll()
                poller.register(sock.fileno(), select.POLLIN)
                return bool(poller.poll(0))
            ready, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(ready)


@dataclass
class _Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    content: bytes
    keep_alive: bool


class PooledTransport(httpx.AsyncBaseTransport):
    """A lean httpx transport: HTTP/1.1 with keep-alive over asyncio streams, at most
    ``max_connections`` connections shared by every request (requests beyond wait), each
    request written in one piece. Enough for ESipa (Content-Length or chunked bodies, no
    upgrades, no proxies, no HTTP/2).

    TLS uses ``ssl_context`` with the URL's host as server name; ``pinned_public_key``
    (SubjectPublicKeyInfo DER) must then be the key of the server's certificate, checked on
    every new connection before anything is sent (:class:`~ipa.esipa.TlsPinMismatch`).
    An idle connection the server has closed is dropped before reuse; a request is never sent
    twice. Failures surface as the matching ``httpx`` errors. ``probe_idle`` also polls an
    idle connection's socket before reuse, for callers that may block the event loop between
    requests (a close the loop has not seen yet is found there).
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        pinned_public_key: bytes | None = None,
        max_connections: int = 8,
        timeout: float = 30.0,
        probe_idle: bool = False,
    ) -> None:
        self.ssl_context = ssl_context
        self.probe_idle = probe_idle
        self.pinned_public_key = pinned_public_key
        self.timeout = timeout
        self.max_connections = max_connections
        self.connections_opened = 0
        self._idle: dict[_Origin, collections.deque[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._slots: asyncio.Semaphore | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` on a pooled connection and read the whole response."""
        url = request.url
        default_port = 443 if url.scheme == "https" else 80
        origin = (url.scheme, url.host, url.port or default_port)
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), url.raw_path)]
        head += [name + b": " + value + b"\r\n" for name, value in request.headers.raw]
        data = b"".join(head) + b"\r\n" + await request.aread()
        try:
            answer = await self.exchange(origin, data, request.method)
        except httpx.RequestError as exc:
            exc.request = request
            raise
        return httpx.Response(
            answer.status, headers=answer.headers, content=answer.content, request=request
        )

    async def exchange(self, origin: _Origin, data: bytes, method: str = "POST") -> _Answer:
        """Write one complete request (``data``: head and body) to a pooled connection to
        ``origin`` (scheme, host, port) and read the answer."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_connections)
        async with self._slots:
            connection = await self._connection(origin)
            try:
                async with asyncio.timeout(self.timeout):
                    connection.writer.write(data)
                    answer = await _read_answer(connection.reader, method)
            except asyncio.IncompleteReadError as exc:
                self._discard(connection)
                raise httpx.RemoteProtocolError("the server closed the connection") from exc
            except TimeoutError as exc:
                self._discard(connection)
                raise httpx.ReadTimeout("no answer in time") from exc
            except (OSError, ssl.SSLError) as exc:
                self._discard(connection)
                raise httpx.ReadError(repr(exc)) from exc
            except (ValueError, asyncio.LimitOverrunError) as exc:
                self._discard(connection)
                raise httpx.RemoteProtocolError(f"malformed response: {exc}") from exc
            except BaseException:
                self._discard(connection)
                raise
            if answer.keep_alive:
                self._idle.setdefault(origin, collections.deque()).append(connection)
            else:
                self._discard(connection)
            return answer

    async def aclose(self) -> None:
        """Close every connection (waiting a moment for TLS to shut down)."""
        connections = list(self._open)
        for connection in connections:
            self._discard(connection)
        self._idle.clear()
        closing = [c.writer.wait_closed() for c in connections]
        if closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await asyncio.gather(*closing, return_exceptions=True)

    async def _connection(self, origin: _Origin) -> _Connection:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()  # the most recently used: least likely to be closed
            if connection.reusable() and not (self.probe_idle and connection.readable()):
                return connection
            self._discard(connection)  # the server closed it while idle
        scheme, host, port = origin
        context = self.ssl_context if scheme == "https" else None
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context is not None else None,
                    limit=_MAX_HEAD,
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"cannot reach {host}:{port} in time") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"cannot reach {host}:{port}: {exc!r}") from exc
        connection = _Connection(reader, writer)
        self._open.add(connection)
        self.connections_opened += 1
        if context is not None and self.pinned_public_key is not None:
            self._check_pin(connection, host)
        return connection

    def _check_pin(self, connection: _Connection, host: str) -> None:
        ssl_object = connection.writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der is not None:
            if certificate_public_key(der) == self.pinned_public_key:
                return
        self._discard(connection)
        raise TlsPinMismatch(f"{host}: the TLS certificate does not carry the pinned key")

    def _discard(self, connection: _Connection) -> None:
        connection.writer.close()
        self._open.discard(connection)


class FleetHttpClient(httpx.AsyncClient):
    """The fleet's ``httpx.AsyncClient`` over a :class:`PooledTransport`.

    A plain POST of bytes with a dict of headers (all that ESipa sends) goes straight to the
    pool: no request and URL objects, cookies, redirects or auth, which cost more CPU than
    the rest of the request; the answer is still an ``httpx.Response``. Anything else takes
    httpx's usual way through the same pool.
    """

    def __init__(self, transport: PooledTransport, *, timeout: float) -> None:
        super().__init__(transport=transport, timeout=httpx.Timeout(timeout))
        self.pool = transport
        self._targets: dict[str, tuple[_Origin, bytes] | None] = {}

    async def post(
        self,
        url: Any,
        *,
        content: Any = None,
        headers: Any = None,
        extensions: Any = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """POST ``content`` to ``url`` (see the class notes)."""
        target = self._target(url) if isinstance(url, str) else None
        if kwargs or target is None or type(content) is not bytes or type(headers) is not dict:
            return await super().post(
                url, content=content, headers=headers, extensions=extensions, **kwargs
            )
        origin, head = target
        lines = [head]
        for name, value in headers.items():
            line = f"{name}: {value}"
            if "\r" in line or "\n" in line or name.lower() in ("host", "content-length"):
                return await super().post(url, content=content, headers=headers, **kwargs)
            lines.append(line.encode("latin-1") + b"\r\n")
        lines.append(b"Content-Length: %d\r\n\r\n" % len(content))
        answer = await self.pool.exchange(origin, b"".join(lines) + content)
        return httpx.Response(answer.status, headers=answer.headers, content=answer.content)

    def _target(self, url: str) -> tuple[_Origin, bytes] | None:
        """(origin, request line and Host header) of a plain http(s) URL; None otherwise."""
        if url in self._targets:
            return self._targets[url]
        target = None
        parts = urllib.parse.urlsplit(url)
        if parts.scheme in ("http", "https") and parts.hostname and "@" not in parts.netloc:
            if not parts.fragment and all(c.isascii() and c.isprintable() for c in url):
                port = parts.port or (443 if parts.scheme == "https" else 80)
                path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                head = f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n".encode("ascii")
                target = ((parts.scheme, parts.hostname, port), head)
        if len(self._targets) < 64:
            self._targets[url] = target
        return target


async def _read_answer(reader: asyncio.StreamReader, method: str) -> _Answer:
    """One HTTP/1.1 response from ``reader``."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head[:-4].split(b"\r\n")
    version, _, rest = status_line.partition(b" ")
    if not version.startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP/1.x status line: {status_line[:40]!r}")
    status = int(rest[:3])
    headers: list[tuple[bytes, bytes]] = []
    length: int | None = None
    chunked = False
    keep_alive = version == b"HTTP/1.1"
    for line in lines:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip()
        if name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
            continue  # the body is handed over decoded
        headers.append((name, value))
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            keep_alive = b"close" not in value.lower() and (
                keep_alive or b"keep-alive" in value.lower()
            )
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        content = b""
    elif chunked:
        content = await _read_chunked(reader)
    elif length is not None:
        content = await reader.readexactly(length)
    else:
        content, keep_alive = await reader.read(), False  # delimited by the close
    return _Answer(status, headers, content, keep_alive)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("chunk not followed by CRLF")
