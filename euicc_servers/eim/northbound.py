"""Northbound events: what the eIM tells an operator's platform without being asked.

Every change of order, campaign and eUICC state is published by the store as a
:class:`~.store.FeedEvent` in the same transaction as the change (table ``feed``, ids only
grow). This module serves the feed two ways:

* **Server-Sent Events** (``GET /api/events``, the W3C/WHATWG EventSource format): each event
  is ``id: <id>`` / ``event: <type>`` / ``data: <JSON>``; a client that reconnects with
  ``Last-Event-ID`` (or ``?after=<id>``) gets every event after that id, so nothing is missed
  across a dropped connection or an eIM restart. Without either it starts with the next event.
  A comment line is sent every ``heartbeat`` seconds so idle proxies keep the stream open.
* **Webhooks**: the operator registers a URL; the eIM POSTs ``{"events": [...]}`` (at most
  :data:`BATCH` events, in id order) with ``X-Eim-Signature: t=<unix time>,v1=<hex>``, the
  HMAC-SHA256 of ``<t>.<body>`` under the webhook's secret. Delivery is at-least-once: the
  webhook's cursor (the last event id its URL answered 2xx for) is kept in the store, so a
  restart resends what was not confirmed; a failure is retried after 1, 2, 4 ... 60 s.
  Receivers deduplicate on the event ids and check the signature with
  :func:`verify_signature`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..common.auth import new_token
from .store import EimStore, FeedEvent, NotFound, now

__all__ = [
    "BATCH",
    "SIGNATURE_HEADER",
    "Webhook",
    "WebhookError",
    "Webhooks",
    "sign",
    "sse_stream",
    "verify_signature",
]

log = logging.getLogger(__name__)

#: Events per webhook request at most.
BATCH = 100
#: The header carrying the webhook signature.
SIGNATURE_HEADER = "X-Eim-Signature"
_MAX_BACKOFF = 60.0


class WebhookError(ValueError):
    """A webhook registration is invalid."""


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Eim-Signature`` value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str, body: bytes, header: str | None, *, tolerance: float = 300.0
) -> bool:
    """Whether ``header`` is a valid signature of ``body`` made within ``tolerance`` seconds
    of now (what a webhook receiver checks; constant-time comparison)."""
    if not header:
        return False
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        stamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - stamp) > tolerance:
        return False
    expected = sign(secret, body, stamp)
    return hmac.compare_digest(expected.encode(), header.encode())


def format_sse(event: FeedEvent) -> bytes:
    """One event in the text/event-stream format."""
    data = json.dumps(event.to_json(), separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n".encode()


async def sse_stream(
    store: EimStore,
    after: int | None,
    *,
    poll: float = 0.2,
    heartbeat: float = 15.0,
    types: tuple[str, ...] = (),
) -> AsyncIterator[bytes]:
    """The SSE body: events after ``after`` (``None``: from now on), those whose type starts
    with one of ``types`` when given, until the client goes away."""
    last = store.last_feed_id() if after is None else after
    yield b"retry: 1000\n\n"
    quiet = 0.0
    while True:
        events = store.feed(after=last)
        for event in events:
            last = event.id
            if not types or event.type.startswith(types):
                yield format_sse(event)
        if events:
            quiet = 0.0
            continue
        await asyncio.sleep(poll)
        quiet += poll
        if quiet >= heartbeat:
            quiet = 0.0
            yield b": keep-alive\n\n"


@dataclass(frozen=True)
class Webhook:
    """A registered webhook: its URL, the last event id delivered, failures in a row and the
    time (Unix seconds) of the next attempt."""

    id: int
    url: str
    cursor: int
    failures: int
    next_attempt: float
    last_error: str | None
    created: str

    def to_json(self) -> dict[str, Any]:
        """The API form (never the secret)."""
        return {
            "id": self.id,
            "url": self.url,
            "deliveredUpTo": self.cursor,
            "failures": self.failures,
            "nextAttempt": self.next_attempt,
            "lastError": self.last_error,
            "created": self.created,
        }


def _webhook(row: Any) -> Webhook:
    values = dict(row)
    values.pop("secret")
    return Webhook(**values)


class Webhooks:
    """The webhooks of one eIM (table ``webhooks``) and their delivery."""

    def __init__(self, store: EimStore, clock: Any = time.time, backoff: float = 1.0) -> None:
        self.store = store
        self.clock = clock
        #: Seconds before the first retry; doubled after each further failure (at most 60).
        self.backoff = backoff

    def add(
        self, url: str, secret: str | None = None, *, after: int | None = None
    ) -> dict[str, Any]:
        """Register ``url`` (http or https); returns its view with the ``secret`` (made when
        not given; shown only here). It gets the events after ``after`` (default: from now).

        Raises:
            WebhookError: not an http(s) URL, or a secret shorter than 16 characters.
        """
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise WebhookError("url must be an http:// or https:// URL")
        if secret is None:
            secret = new_token()
        if not isinstance(secret, str) or len(secret) < 16:
            raise WebhookError("secret must be at least 16 characters")
        cursor = self.store.last_feed_id() if after is None else max(0, after)
        cursor_row = self.store.execute(
            "INSERT INTO webhooks (url, secret, cursor, failures, next_attempt, created) "
            "VALUES (?, ?, ?, 0, 0, ?)",
            (url, secret, cursor, now()),
        )
        assert cursor_row.lastrowid is not None
        return {**self.get(cursor_row.lastrowid).to_json(), "secret": secret}

    def get(self, webhook_id: int) -> Webhook:
        """The webhook ``webhook_id``.

        Raises:
            NotFound: no such webhook.
        """
        rows = self.store.rows("SELECT * FROM webhooks WHERE id = ?", (webhook_id,))
        if not rows:
            raise NotFound(f"no webhook {webhook_id}")
        return _webhook(rows[0])

    def list(self) -> list[Webhook]:
        """Every webhook."""
        return [_webhook(r) for r in self.store.rows("SELECT * FROM webhooks ORDER BY id")]

    def delete(self, webhook_id: int) -> None:
        """Forget a webhook.

        Raises:
            NotFound: no such webhook.
        """
        if self.store.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,)).rowcount != 1:
            raise NotFound(f"no webhook {webhook_id}")

    async def deliver_due(self, client: httpx.AsyncClient) -> int:
        """One delivery attempt for every webhook that is due and has events waiting;
        returns how many events were confirmed."""
        confirmed = 0
        stamp = self.clock()
        for row in self.store.rows(
            "SELECT * FROM webhooks WHERE next_attempt <= ? ORDER BY id", (stamp,)
        ):
            events = self.store.feed(after=row["cursor"], limit=BATCH)
            if not events:
                continue
            body = json.dumps({"events": [e.to_json() for e in events]}).encode()
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(row["secret"], body, int(time.time())),
                "X-Eim-Webhook-Id": str(row["id"]),
            }
            error: str | None = None
            try:
                response = await client.post(row["url"], content=body, headers=headers)
                if not 200 <= response.status_code < 300:
                    error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            if error is None:
                self.store.execute(
                    "UPDATE webhooks SET cursor = ?, failures = 0, next_attempt = 0, "
                    "last_error = NULL WHERE id = ? AND cursor = ?",
                    (events[-1].id, row["id"], row["cursor"]),
                )
                confirmed += len(events)
            else:
                failures = row["failures"] + 1
                delay = min(_MAX_BACKOFF, self.backoff * 2.0 ** (failures - 1))
                self.store.execute(
                    "UPDATE webhooks SET failures = ?, next_attempt = ?, last_error = ? "
                    "WHERE id = ?",
                    (failures, self.clock() + delay, error, row["id"]),
                )
                log.warning(
                    "webhook %d (%s): %s; retry in %.0f s", row["id"], row["url"], error, delay
                )
        return confirmed
