"""The servers' lean HTTP paths: responses with server-made headers written unchecked
(``common.lean_cycle``) and bodies that have all arrived read without a timer
(``common.limits.read_body``). Each must answer exactly as the general path does."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from euicc_servers.common.lean_cycle import CheckedHeaders, LeanCycle
from euicc_servers.common.limits import BODY_COMPLETE, Limits, read_body
from euicc_servers.eim import build_eim, run_in_thread

_DEFAULT_HEADERS = [(b"date", b"Thu, 03 Dec 2026 22:00:00 GMT"), (b"server", b"uvicorn")]


class _Transport:
    """Records what a cycle writes and whether it closed the connection."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _run(cls: type[RequestResponseCycle], messages: list[dict[str, Any]], **options: Any) -> Any:
    """Send ``messages`` through a fresh cycle of ``cls``; what the client and uvicorn saw."""
    transport = _Transport()
    completed: list[bool] = []

    async def go() -> RequestResponseCycle:
        cycle = cls(
            scope={  # type: ignore[arg-type]
                "method": options.get("method", "POST"),
                "http_version": "1.1",
                "raw_path": b"/gsma/rsp2/asn1",
                "query_string": b"",
                "client": ("127.0.0.1", 40000),
            },
            transport=transport,  # type: ignore[arg-type]
            flow=FlowControl(transport),  # type: ignore[arg-type]
            logger=logging.getLogger("test"),
            access_logger=logging.getLogger("test.access"),
            access_log=options.get("access_log", False),
            default_headers=_DEFAULT_HEADERS,
            message_event=asyncio.Event(),
            expect_100_continue=False,
            keep_alive=options.get("keep_alive", True),
            on_response=lambda: completed.append(True),
        )
        for message in messages:
            await cycle.send(message)
        return cycle

    cycle = asyncio.run(go())
    seen = (b"".join(transport.written), transport.closed, completed, cycle.response_complete)
    return seen, getattr(cycle, "_lean", None)


def _response(status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]


_ASN1 = [(b"x-admin-protocol", b"gsma/rsp/v2.1.0"), (b"content-type", b"application/x")]


@pytest.mark.parametrize("keep_alive", [True, False])
@pytest.mark.parametrize(
    ("status", "body", "headers"),
    [
        (200, b"\xbf\x4f\x03\x80\x01\x01", [(b"content-length", b"6"), *_ASN1]),
        (400, b"not a message", [(b"content-length", b"13"), (b"content-type", b"text/plain")]),
        (204, b"", [(b"x-admin-protocol", b"gsma/rsp/v2.1.0")]),
        (503, b"busy", [(b"retry-after", b"5"), (b"content-length", b"4")]),
    ],
)
def test_checked_headers_are_written_as_uvicorn_writes_them(
    status: int, body: bytes, headers: list[tuple[bytes, bytes]], keep_alive: bool
) -> None:
    general, _ = _run(RequestResponseCycle, _response(status, body, headers), keep_alive=keep_alive)
    lean, took = _run(
        LeanCycle, _response(status, body, CheckedHeaders(headers)), keep_alive=keep_alive
    )
    assert took is True  # the lean path wrote it
    assert lean == general
    assert general[0].startswith(b"HTTP/1.1 %d " % status) and general[3] is True


@pytest.mark.parametrize(
    ("headers", "options"),
    [
        ([(b"content-length", b"2")], {}),  # a plain list: checked by uvicorn
        (CheckedHeaders([(b"content-length", b"2")]), {"method": "HEAD"}),
        (CheckedHeaders([(b"content-length", b"2")]), {"access_log": True}),
        (CheckedHeaders([(b"content-type", b"text/plain")]), {}),  # no length: chunked
    ],
)
def test_what_the_lean_path_does_not_cover_goes_to_uvicorn(
    headers: list[tuple[bytes, bytes]], options: dict[str, Any]
) -> None:
    general, _ = _run(RequestResponseCycle, _response(200, b"ok", list(headers)), **options)
    lean, took = _run(LeanCycle, _response(200, b"ok", headers), **options)
    assert took is False
    assert lean == general


def test_a_body_that_does_not_match_its_length_is_refused_on_the_lean_path() -> None:
    with pytest.raises(RuntimeError, match="Content-Length"):
        _run(LeanCycle, _response(200, b"abc", CheckedHeaders([(b"content-length", b"2")])))


def _read(scope: dict[str, Any], messages: list[dict[str, Any]], limits: Limits) -> Any:
    """read_body over ``messages`` (then a wait for ever); the body and what was answered."""
    sent: list[dict[str, Any]] = []

    async def go() -> bytes | None:
        queue = list(messages)

        async def receive() -> dict[str, Any]:
            if queue:
                return queue.pop(0)
            await asyncio.sleep(3600)
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        return await read_body(scope, receive, send, limits)

    body = asyncio.run(go())
    return body, [m["status"] for m in sent if m["type"] == "http.response.start"]


@pytest.mark.parametrize("complete", [True, False])
def test_read_body_answers_alike_whether_or_not_the_body_is_marked_complete(
    complete: bool,
) -> None:
    limits = Limits(max_body=8, body_timeout=0.2)
    scope: dict[str, Any] = {"headers": [], BODY_COMPLETE: True} if complete else {"headers": []}
    whole = {"type": "http.request", "body": b"abcd", "more_body": False}
    assert _read(scope, [whole], limits) == (b"abcd", [])
    too_big = {"type": "http.request", "body": b"123456789", "more_body": False}
    assert _read(scope, [too_big], limits) == (None, [413])
    gone = {"type": "http.disconnect"}
    assert _read(scope, [gone], limits) == (None, [])
    # Marked complete yet handed over in parts: the rest is still read, within the limits.
    part = {"type": "http.request", "body": b"ab", "more_body": True}
    rest = {"type": "http.request", "body": b"cd", "more_body": False}
    assert _read(scope, [part, rest], limits) == (b"abcd", [])
    assert _read(scope, [part, part, part, part, part], limits) == (None, [413])
    assert _read(scope, [part], limits) == (None, [408])  # the rest never comes


def _exchange(port: int, pieces: list[bytes]) -> bytes:
    """Send ``pieces`` on one connection (a pause between them); the response."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for n, piece in enumerate(pieces):
            if n:
                time.sleep(0.2)
            sock.sendall(piece)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        head, _, body = answer.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        while len(body) < length:
            body += sock.recv(65536)
        return head.split(b"\r\n")[0] + b"\r\n" + body


def test_an_esipa_request_is_answered_alike_in_one_piece_or_with_its_body_late() -> None:
    eim = build_eim("sgp26")
    message = bytes.fromhex("bf4f125a10") + bytes(range(16))  # an EID no one registered
    head = (
        b"POST /gsma/rsp2/asn1 HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        b"content-type: application/x-gsma-rsp-asn1\r\ncontent-length: %d\r\n\r\n" % len(message)
    )
    with run_in_thread(eim.core) as server:
        whole = _exchange(server.port, [head + message])
        late = _exchange(server.port, [head + message[:5], message[5:]])
    assert whole.startswith(b"HTTP/1.1 200 ")
    assert late == whole


@pytest.mark.parametrize("rest", [b"POST /gsma/rsp2/asn1 HTTP/1.1\r\nhost: x\r\n", b""])
def test_a_kept_alive_connections_next_request_has_its_deadline_too(rest: bytes) -> None:
    """The deadline of a request after the first is armed by the data that starts it (a
    request that arrives whole never arms one): one that stops halfway gets 408 and the
    close; a connection that goes quiet after an answer is left to the keep-alive timeout."""
    eim = build_eim("sgp26", limits=Limits(header_timeout=0.5, body_timeout=0.5))
    message = bytes.fromhex("bf4f125a10") + bytes(range(16))
    head = (
        b"POST /gsma/rsp2/asn1 HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        b"content-type: application/x-gsma-rsp-asn1\r\ncontent-length: %d\r\n\r\n" % len(message)
    )
    with run_in_thread(eim.core) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(head + message + rest)
            started = time.monotonic()
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            waited = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 200 ")
    if rest:  # half a request: its deadline, then 408
        assert b"HTTP/1.1 408 Request Timeout" in received
        assert waited < 5.0  # the 0.5 s deadline, not uvicorn's 5 s keep-alive timeout
    else:
        assert b"408" not in received
