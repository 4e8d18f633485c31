"""The ESipa ASN.1 binding's one route, ``POST /gsma/rsp2/asn1``, as a bare ASGI handler.

Every device cycle is two requests to this route, so it is served ahead of the Starlette
stack (routing, middleware, request and response objects), with the same rules and answers:

1. The body is read within the server's :class:`~..common.limits.Limits` before anything
   else (:func:`~..common.limits.read_body`: 400 for a bad Content-Length, 413 over
   ``max_body``, 408 when it does not arrive within ``body_timeout``; nothing for a client
   gone).
2. ``Content-Type`` must be ``application/x-gsma-rsp-asn1`` (parameters ignored, any case),
   else 415.
3. The body is handed to the core: its answer is 200 with the ASN.1 message, or 204 with no
   body (HandleNotification); both carry ``X-Admin-Protocol``. A message the core refuses is
   400 (plain text, the reason), a full relay lane 503 with ``Retry-After: 5``.
4. Anything unexpected is logged and answered 500 without a traceback.

Other methods and paths are the Starlette app's (405 / 404 with their reasons).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from euicc_protocol import schema, tlv

from ..common.functions import ADMIN_PROTOCOL
from ..common.lean_cycle import CheckedHeaders
from ..common.limits import Limits, Message, Receive, Scope, Send, read_body
from .packages import MessageError
from .relay import Answer

__all__ = ["ASN1_CONTENT_TYPE", "ASN1_PATH", "Asn1Route", "LaneBusy"]

log = logging.getLogger(__name__)

#: Content-Type of the ESipa ASN.1 binding.
ASN1_CONTENT_TYPE = "application/x-gsma-rsp-asn1"
#: The path it is served on.
ASN1_PATH = "/gsma/rsp2/asn1"

_ASN1_TYPE = ASN1_CONTENT_TYPE.encode("ascii")
_PROTOCOL = (b"x-admin-protocol", ADMIN_PROTOCOL.encode("latin-1"))
_PLAIN = b"text/plain; charset=utf-8"


class LaneBusy(Exception):
    """Too many ESipa requests wait for an SM-DP+ already."""


def _media_type(headers: list[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";")[0].strip().lower()
    return b""


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    first: tuple[tuple[bytes, bytes], ...],
    content_type: bytes | None,
) -> None:
    # Header order as Starlette's Response writes them: the given ones, then length, type.
    # All are constants or a length formatted here: written unchecked (.common.lean_cycle).
    headers = CheckedHeaders(first)
    if status != 204:
        headers.append((b"content-length", b"%d" % len(body)))
    if content_type is not None:
        headers.append((b"content-type", content_type))
    start: Message = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})


async def _text(send: Send, status: int, text: str, *first: tuple[bytes, bytes]) -> None:
    await _answer(send, status, text.encode("utf-8"), first, _PLAIN)


class Asn1Route:
    """The ASGI handler of ``POST /gsma/rsp2/asn1``; ``handle`` runs one ESipa message
    (``None``: no response message) and may raise :class:`MessageError`, the decoders'
    errors, or :class:`LaneBusy`."""

    def __init__(self, handle: Callable[[bytes], Awaitable[Answer | None]], limits: Limits) -> None:
        self.handle = handle
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request (rules 1-4)."""
        body = await read_body(scope, receive, send, self.limits)
        if body is None:
            return
        if _media_type(scope["headers"]) != _ASN1_TYPE:
            await _text(send, 415, f"Content-Type must be {ASN1_CONTENT_TYPE}")
            return
        try:
            answer = await self.handle(body)
        except (MessageError, schema.Asn1Error, tlv.TlvError) as exc:
            log.info("ESipa message refused: %s", exc)
            await _text(send, 400, str(exc))
            return
        except LaneBusy as exc:
            await _text(send, 503, str(exc), (b"retry-after", b"5"))
            return
        except Exception:  # a bug: every hostile input has a 4xx of its own
            log.exception("unexpected error on POST %s", ASN1_PATH)
            await _text(send, 500, "internal error (logged by the server)")
            return
        if answer is None:
            await _answer(send, 204, b"", (_PROTOCOL,), None)
        else:
            await _answer(send, 200, answer.message, (_PROTOCOL,), _ASN1_TYPE)
