"""Notification delivery: pending notifications from the eUICC to the servers that asked for them
(GSMA SGP.22 v2.5 §5.7.9–§5.7.11 on the card side, ES9+.HandleNotification §5.6.4 on the
server side).

Flow, per pending notification of ES10b.RetrieveNotificationsList:

1. its address is the ``notificationAddress`` of its NotificationMetadata: for a ``BF37``
   ProfileInstallationResult the SM-DP+ address of the download, for an
   OtherSignedNotification (``30``) the address the profile's metadata named;
2. ES9+ handleNotification to that address with the notification TLV exactly as the card
   returned it (the eUICC's signature covers those bytes);
3. only after the server took it (HTTP 204, or an empty or successful 200):
   ES10b.RemoveNotificationFromList with its seqNumber.

Any failure (server unreachable, ``Failed``, removal refused) keeps the notification on the card
for the next run and is reported in the :class:`NotificationOutcome`, never raised: one bad
server must not hold back the others. The SGP.32 compact forms carry no address (they go to the
eIM over ESipa) and are left alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ipa.errors import IpaError
from ipa.es9p import Es9Config, Es9PlusClient
from ipa.es10 import Es10Client
from ipa.types import PendingNotification

__all__ = [
    "NotificationOutcome",
    "deliver_notification",
    "process_notifications",
    "process_notifications_sync",
]

log = logging.getLogger(__name__)

#: Makes the ES9+ client for a notification address (tests inject fakes through this).
ClientFactory = Callable[[str], Es9PlusClient]

_FORWARDABLE = ("profileInstallationResult", "otherSignedNotification")


@dataclass(frozen=True, slots=True)
class NotificationOutcome:
    """What happened to one pending notification.

    Attributes:
        seq_number: its sequence number on the card.
        kind: the PendingNotification alternative (``"profileInstallationResult"``...).
        address: where it was sent (None when it has no address).
        delivered: the server accepted it.
        removed: the card removed it afterwards (RemoveNotificationFromList ok).
        error: why it was not delivered or not removed, else None.
    """

    seq_number: int
    kind: str
    address: str | None
    delivered: bool
    removed: bool
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out: dict[str, Any] = {
            "seqNumber": self.seq_number,
            "kind": self.kind,
            "notificationAddress": self.address,
            "delivered": self.delivered,
            "removed": self.removed,
        }
        if self.error is not None:
            out["error"] = self.error
        return out


async def deliver_notification(
    client: Es10Client,
    es9: Es9PlusClient,
    notification: bytes,
    seq_number: int,
    *,
    kind: str = "profileInstallationResult",
    address: str | None = None,
) -> NotificationOutcome:
    """handleNotification of ``notification`` (raw TLV) through ``es9``, then
    RemoveNotificationFromList(``seq_number``) once the server took it."""
    address = address if address is not None else es9.smdp_address
    try:
        await es9.handle_notification(notification)
    except IpaError as exc:
        log.warning("notification %d to %s not delivered: %s", seq_number, address, exc)
        return NotificationOutcome(seq_number, kind, address, False, False, str(exc))
    try:
        client.remove_notification_from_list(seq_number)
    except IpaError as exc:
        log.warning("notification %d delivered but not removed: %s", seq_number, exc)
        return NotificationOutcome(seq_number, kind, address, True, False, str(exc))
    log.info("notification %d delivered to %s and removed", seq_number, address)
    return NotificationOutcome(seq_number, kind, address, True, True)


async def process_notifications(
    client: Es10Client,
    *,
    config: Es9Config | None = None,
    client_factory: ClientFactory | None = None,
    seq_numbers: Iterable[int] | None = None,
) -> list[NotificationOutcome]:
    """Deliver every pending notification (or those in ``seq_numbers``), in seqNumber order.

    ES9+ clients come from ``client_factory(address)`` (default: :class:`Es9PlusClient` with
    ``config``); one client serves all notifications to the same address.
    """
    wanted = None if seq_numbers is None else set(seq_numbers)
    pending = sorted(client.retrieve_notifications_list(), key=lambda n: n.seq_number)
    if wanted is not None:
        pending = [n for n in pending if n.seq_number in wanted]

    def make(address: str) -> Es9PlusClient:
        if client_factory is not None:
            return client_factory(address)
        return Es9PlusClient(address, config)

    es9_clients: dict[str, Es9PlusClient] = {}
    outcomes = []
    try:
        for notification in pending:
            outcomes.append(await _process_one(client, notification, es9_clients, make))
    finally:
        for es9 in es9_clients.values():
            await es9.aclose()
    return outcomes


async def _process_one(
    client: Es10Client,
    notification: PendingNotification,
    es9_clients: dict[str, Es9PlusClient],
    make: ClientFactory,
) -> NotificationOutcome:
    meta = notification.notification_metadata
    seq = notification.seq_number
    if notification.kind not in _FORWARDABLE or meta is None:
        reason = f"a {notification.kind} is delivered through the eIM, not ES9+"
        return NotificationOutcome(seq, notification.kind, None, False, False, reason)
    address = meta.notification_address
    if not address:
        return NotificationOutcome(seq, notification.kind, None, False, False, "no address")
    key = address.lower()  # SM-DP+ addresses are host names: case-insensitive (RFC 4343)
    if key not in es9_clients:
        try:
            es9_clients[key] = make(address)
        except ValueError as exc:
            return NotificationOutcome(seq, notification.kind, address, False, False, str(exc))
    return await deliver_notification(
        client, es9_clients[key], notification.raw, seq, kind=notification.kind, address=address
    )


def process_notifications_sync(
    client: Es10Client,
    *,
    config: Es9Config | None = None,
    client_factory: ClientFactory | None = None,
    seq_numbers: Iterable[int] | None = None,
) -> list[NotificationOutcome]:
    """:func:`process_notifications` for synchronous callers (runs its own event loop)."""
    return asyncio.run(
        process_notifications(
            client, config=config, client_factory=client_factory, seq_numbers=seq_numbers
        )
    )
