"""Pending notifications: creation (signed at creation time), listing and removal.

A notification is signed once, when the event happens, and its exact bytes are kept until
RemoveNotificationFromList: the LPA/IPAd must forward what the card signed, and a re-sign
on every retrieval would make the same notification look different each time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from euicc_protocol import schema, tlv

from .ecasd import SigningChain
from .state import CardState, NotificationEvent, PendingNotification, Profile

_SIGNATURE_TAG = b"\x5f\x37"


def metadata_value(n: PendingNotification) -> dict:
    """The NotificationMetadata value of a pending notification."""
    value: dict = {
        "seqNumber": n.seq_number,
        "profileManagementOperation": schema.bits([n.event]),
        "notificationAddress": n.address,
    }
    if n.iccid is not None:
        value["iccid"] = n.iccid
    return value


def sign_other_notification(
    chain: SigningChain, seq: int, event: NotificationEvent, address: str, iccid: bytes | None
) -> PendingNotification:
    """Build and sign an OtherSignedNotification (enable, disable, delete)."""
    pending = PendingNotification(seq, event, address, iccid, b"")
    tbs = schema.encode("NotificationMetadata", metadata_value(pending))
    body = (
        tbs
        + tlv.encode_tlv(_SIGNATURE_TAG, chain.sign(tbs))
        + chain.euicc_certificate
        + chain.eum_certificate
    )
    return replace(pending, encoded=tlv.encode_tlv(b"\x30", body))


def address_for(profile: Profile, event: NotificationEvent) -> str | None:
    """Where the profile's metadata says ``event`` must be reported (None: not wanted)."""
    for config in profile.notification_config:
        if event in config.events:
            return config.address
    return None


def add_events(
    state: CardState,
    chain: SigningChain,
    events: Iterable[tuple[NotificationEvent, Profile]],
) -> CardState:
    """Append a signed notification for each (event, profile) that asks for one."""
    added = []
    seq = state.next_seq_number
    for event, profile in events:
        address = address_for(profile, event)
        if address is None:
            continue
        added.append(sign_other_notification(chain, seq, event, address, profile.iccid))
        seq += 1
    if not added:
        return state
    return replace(state, notifications=state.notifications + tuple(added), next_seq_number=seq)


def select(
    state: CardState,
    *,
    seq_number: int | None = None,
    events: frozenset[int] | None = None,
) -> list[PendingNotification]:
    """Pending notifications matching a search criterion (all when none is given)."""
    found = []
    for n in state.notifications:
        if seq_number is not None and n.seq_number != seq_number:
            continue
        if events is not None and int(n.event) not in events:
            continue
        found.append(n)
    return found


def remove(state: CardState, seq_number: int) -> CardState | None:
    """State without notification ``seq_number``; None when there is no such notification."""
    kept = tuple(n for n in state.notifications if n.seq_number != seq_number)
    if len(kept) == len(state.notifications):
        return None
    return replace(state, notifications=kept)
