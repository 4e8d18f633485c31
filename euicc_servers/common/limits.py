"""What the reference servers accept from a client before any function sees it.

Rules (the numbers are :class:`Limits` fields, documented in ``docs/eim.md`` and
``docs/smdpp.md``):

* A request body larger than ``max_body`` bytes is refused with 413 before it is read to the
  end (a larger Content-Length is refused at once); a body that does not arrive completely
  within ``body_timeout`` seconds gets 408 and the connection is closed. The application
  sees the whole body or nothing.
* JSON (:func:`parse_json`) must be UTF-8, at most ``max_json_depth`` arrays/objects deep,
  with integers of at most ``max_int_digits`` digits and no NaN/Infinity; anything else is
  :class:`JsonError` (a 4xx or a function error, never a 500).
* An unknown path is 404 and a known path with the wrong method 405, each with a sentence
  saying what is served; an unexpected exception is logged and answered 500 without a
  traceback (a bug: every hostile input has a 4xx of its own).
* Request headers (and the body) must arrive within ``header_timeout`` seconds of the
  connection's first byte (of each request on a kept-alive connection); see
  :mod:`euicc_servers.common.serve`, which enforces it in the HTTP protocol.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

__all__ = [
    "BODY_COMPLETE",
    "DEFAULT_LIMITS",
    "JsonError",
    "Limits",
    "RequestGuard",
    "exception_handlers",
    "parse_json",
    "read_body",
]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Limits:
    """Bounds on what a client may send (bytes, seconds, nesting, digits)."""

    max_body: int = 256 * 1024
    body_timeout: float = 10.0
    header_timeout: float = 10.0
    max_json_depth: int = 16
    max_int_digits: int = 19


DEFAULT_LIMITS = Limits()


class JsonError(ValueError):
    """A request body that is not acceptable JSON (the message says why)."""


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def parse_json(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Decode a JSON request body within ``limits``.

    Raises:
        JsonError: not UTF-8, not JSON, nested too deep, an integer too long, NaN/Infinity.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise JsonError("the body is not UTF-8") from None
    depth = deepest = 0
    # Brackets inside strings do not nest: strike the strings out first (a linear scan,
    # so a 100,000-deep document costs no recursion).
    for bracket in _BRACKET.finditer(_STRING.sub('""', text)):
        depth += 1 if bracket.group() in "[{" else -1
        deepest = max(deepest, depth)
        if deepest > limits.max_json_depth:
            raise JsonError(f"the JSON is nested deeper than {limits.max_json_depth} levels")

    def integer(digits: str) -> int:
        if len(digits.lstrip("-")) > limits.max_int_digits:
            raise JsonError(f"an integer has more than {limits.max_int_digits} digits")
        return int(digits)

    def constant(name: str) -> Any:
        raise JsonError(f"{name} is not JSON")

    try:
        return json.loads(text, parse_int=integer, parse_constant=constant)
    except JsonError:
        raise
    except (ValueError, RecursionError) as exc:
        raise JsonError(f"the body is not JSON: {exc}") from None


async def _plain(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


#: A key the guarded HTTP protocols of :mod:`.serve` set in a request's scope once its body
#: has arrived completely: :func:`read_body` then takes it without setting a timer.
BODY_COMPLETE = "euicc_sim.body_complete"


class _Body:
    """The parts of a request body received so far."""

    __slots__ = ("chunks", "size")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    async def take(self, receive: Receive, send: Send, limit: int) -> bool | None:
        """Receive one message: True when the body is complete, None when more is to come,
        False when there is nothing to act on (the client went away, or 413 was answered)."""
        message = await receive()
        if message["type"] == "http.disconnect":
            return False
        chunk = message.get("body", b"")
        self.size += len(chunk)
        if self.size > limit:
            await _plain(send, 413, f"the body is larger than the limit of {limit} bytes")
            return False
        self.chunks.append(chunk)
        return None if message.get("more_body", False) else True


async def read_body(
    scope: Scope, receive: Receive, send: Send, limits: Limits = DEFAULT_LIMITS
) -> bytes | None:
    """The whole body of an HTTP request within ``limits``; ``None`` when there is none to
    act on: the request was answered already (400 for a Content-Length that is not a number,
    413 for a body over ``max_body``, 408 for one not complete within ``body_timeout``) or
    the client went away."""
    limit = limits.max_body
    length = None
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            length = value  # the last one, as a dict of the headers would keep
    if length is not None:
        if not length.isdigit() or len(length) > 12:
            await _plain(send, 400, "Content-Length is not a number")
            return None
        if int(length) > limit:
            await _plain(send, 413, f"the body is larger than the limit of {limit} bytes")
            return None
    body = _Body()
    done = None
    if scope.get(BODY_COMPLETE):  # nothing to wait for: no timer (most requests, one part)
        done = await body.take(receive, send, limit)
    if done is None:
        try:
            async with asyncio.timeout(limits.body_timeout):
                while done is None:
                    done = await body.take(receive, send, limit)
        except TimeoutError:
            await _plain(send, 408, f"the body did not arrive within {limits.body_timeout} s")
            return None
    if not done:
        return None
    chunks = body.chunks
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class RequestGuard:
    """ASGI middleware: reads the whole request body within the size and time limits
    (:func:`read_body`), then runs the app with it (413, 408 or a silent end for a client
    gone before)."""

    def __init__(self, app: Asgi, limits: Limits = DEFAULT_LIMITS) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = await read_body(scope, receive, send, self.limits)
        if body is None:
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # waits for the disconnect, as a real receive would

        await self.app(scope, replay, send)


async def _not_found(request: Request, exc: Exception) -> Response:
    return PlainTextResponse(
        f"no such resource: {request.method} {request.url.path}", status_code=404
    )


async def _not_allowed(request: Request, exc: Exception) -> Response:
    allowed = ""
    if isinstance(exc, HTTPException) and exc.headers:
        allowed = f" (allowed: {exc.headers.get('Allow', '')})"
    return PlainTextResponse(
        f"{request.method} is not allowed on {request.url.path}{allowed}",
        status_code=405,
        headers=exc.headers if isinstance(exc, HTTPException) else None,
    )


async def _internal(request: Request, exc: Exception) -> Response:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return PlainTextResponse("internal error (logged by the server)", status_code=500)


def exception_handlers() -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    """Starlette exception handlers: 404/405 with a reason, 500 without a traceback."""
    return {404: _not_found, 405: _not_allowed, Exception: _internal}
