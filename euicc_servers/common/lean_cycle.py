"""A leaner way for uvicorn to write the responses of the hottest route.

Every device's PSMO cycle is two ESipa requests, and each answer passes through uvicorn's
``RequestResponseCycle.send``: two regular-expression checks per header (the app's and
uvicorn's own date and server headers), a scan of the headers for ``connection`` and
``transfer-encoding``, then the head and the body written apart. For an answer whose headers
the server built itself from constants and a computed length, those checks cannot fail.

:class:`CheckedHeaders` marks such a header list, and :class:`LeanCycle` (the class of every
request cycle the guarded protocol of :mod:`.serve` runs) writes a response that carries one
with none of those checks: its status line, uvicorn's default headers, the given ones (a
``connection: close`` added when the connection is not kept alive), then the body, exactly
as uvicorn would. Every other message, and every case this path does not cover (an access
log to write, a HEAD request, a body in several parts, a response without Content-Length
that needs one, writes paused by flow control), goes to uvicorn's own ``send``.
"""

from __future__ import annotations

from typing import Any

try:
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle
except ImportError:  # httptools is not installed: uvicorn's h11 protocol serves, as it is
    RequestResponseCycle = None  # type: ignore[assignment, misc]
    STATUS_LINE = {}

__all__ = ["CheckedHeaders", "LeanCycle"]

#: Statuses whose responses carry no body, so no Content-Length either.
_NO_BODY = (204, 304)


class CheckedHeaders(list[tuple[bytes, bytes]]):
    """Response headers (lower-case names) that the server made itself: names and values
    hold only the octets HTTP allows, and there is no ``connection`` or
    ``transfer-encoding`` among them. An ASGI app passes one as the ``headers`` of its
    ``http.response.start`` to have it written unchecked (see the module notes); the
    promise is the caller's, so only constants and numbers the server formatted go in."""


if RequestResponseCycle is not None:

    class LeanCycle(RequestResponseCycle):
        """uvicorn's request cycle with the unchecked path for :class:`CheckedHeaders`."""

        _lean = False  # the response under way was started by the lean path

        async def send(self, message: Any) -> None:
            if self.response_complete or self.flow.write_paused or self.disconnected:
                await super().send(message)
                return
            if not self.response_started:
                headers = (
                    message.get("headers") if message["type"] == "http.response.start" else None
                )
                if type(headers) is CheckedHeaders and self._start(message["status"], headers):
                    return
            elif self._lean and message["type"] == "http.response.body":
                if not message.get("more_body", False):
                    self._finish(message.get("body", b""))
                    return
            await super().send(message)

        def _start(self, status: int, headers: CheckedHeaders) -> bool:
            """Write the head; False (nothing done) for a case uvicorn's ``send`` handles."""
            if self.access_log or self.scope["method"] == "HEAD":
                return False
            length = None
            for name, value in headers:
                if name == b"content-length":
                    length = int(value)
            if length is None:
                if status not in _NO_BODY:
                    return False  # uvicorn would send it chunked
                length = 0
            content = [STATUS_LINE[status]]
            for name, value in self.default_headers:
                content += (name, b": ", value, b"\r\n")
            for name, value in headers:
                content += (name, b": ", value, b"\r\n")
            if not self.keep_alive:
                content.append(b"connection: close\r\n")
            content.append(b"\r\n")
            self.response_started = True
            self.waiting_for_100_continue = False
            self.chunked_encoding = False
            self.expected_content_length = length
            self._lean = True
            self.transport.write(b"".join(content))
            return True

        def _finish(self, body: bytes) -> None:
            """Write the last (here: only) part of the body and complete the response."""
            if len(body) != self.expected_content_length:
                raise RuntimeError("response content does not match its Content-Length")
            self.expected_content_length = 0
            self.transport.write(body)
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()

else:  # pragma: no cover - httptools is a dependency
    LeanCycle = None  # type: ignore[assignment, misc]
