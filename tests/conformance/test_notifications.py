"""Notification conformance: which operations create notifications, their numbering, listing,
retrieval (exact bytes, valid eUICC signature) and removal (SGP.22 §5.7.9-5.7.11)."""

from __future__ import annotations

import pytest
from backends import ProfileSpec

from euicc_protocol import crypto, pki, schema, tlv
from euicc_protocol.iccid import iccid_to_ef
from ipa.errors import Es10Error
from ipa.es10 import Es10Client
from ipa.types import NotificationEvent, PendingNotification, ProfileClass, ResetOption

# The notifications come from local ES10c operations: a consumer (SGP.22) card.
pytestmark = [pytest.mark.modifies_card, pytest.mark.kind("consumer")]

ENABLE = NotificationEvent.NOTIFICATION_ENABLE
DISABLE = NotificationEvent.NOTIFICATION_DISABLE
DELETE = NotificationEvent.NOTIFICATION_DELETE

NOTIFYING = ProfileSpec(profile_class=ProfileClass.OPERATIONAL, notifications=True)
SILENT = ProfileSpec(profile_class=ProfileClass.OPERATIONAL)


def seqs(es10: Es10Client) -> list[int]:
    return [m.seq_number for m in es10.list_notification()]


def new_events(es10: Es10Client, after: int) -> list[tuple[NotificationEvent, str | None, str]]:
    """(event, ICCID, address) of the notifications numbered above ``after``, by seqNumber."""
    found = sorted(
        (m for m in es10.list_notification() if m.seq_number > after), key=lambda m: m.seq_number
    )
    return [(m.event, m.iccid, m.notification_address) for m in found]


def last_seq(es10: Es10Client) -> int:
    return max(seqs(es10), default=-1)


def check_signed(note: PendingNotification, eid: str) -> None:
    """Verify an OtherSignedNotification over the exact bytes received."""
    assert note.kind == "otherSignedNotification"
    raw = note.raw
    decoded = schema.decode("OtherSignedNotification", raw)
    outer = tlv.read_tlv(raw, 0)
    assert outer.tag == b"\x30" and outer.end == len(raw)
    parts = list(tlv.iter_tlvs(raw, outer.value_start, outer.value_end))
    assert [p.tag for p in parts] == [b"\xbf\x2f", b"\x5f\x37", b"\x30", b"\x30"]
    tbs = raw[outer.value_start : parts[0].end]  # the BF2F TLV as the card sent it
    signature = parts[1].value(raw)
    assert signature == decoded["euiccNotificationSignature"]
    euicc = pki.load_certificate(raw[parts[1].end : parts[2].end])
    eum = pki.load_certificate(raw[parts[2].end : parts[3].end])
    crypto.verify_raw(euicc.public_key(), signature, tbs)
    tampered = tbs[:-1] + bytes([tbs[-1] ^ 1])
    with pytest.raises(crypto.InvalidSignature):
        crypto.verify_raw(euicc.public_key(), signature, tampered)
    eum_ski = pki.subject_key_id(eum)
    assert eum_ski is not None
    pki.verify_issued_by(euicc, eum.public_key(), eum_ski, which="eUICC")
    assert pki.subject_serial_number(euicc) == eid
    meta = note.notification_metadata
    assert meta is not None and meta.seq_number == note.seq_number
    assert decoded["tbsOtherNotification"]["seqNumber"] == note.seq_number


# -- which operations notify -------------------------------------------------------------------


def test_operations_notify_only_profiles_that_ask(card, es10: Es10Client) -> None:
    a, b = card.provision([NOTIFYING, SILENT])
    start = last_seq(es10)
    es10.enable_profile(iccid=a.iccid)
    assert new_events(es10, start) == [(ENABLE, a.iccid, a.notification_address)]
    es10.enable_profile(iccid=b.iccid)  # switch: disable a (asks), enable b (does not)
    es10.disable_profile(iccid=b.iccid)
    es10.delete_profile(iccid=b.iccid)
    es10.delete_profile(isdp_aid=a.isdp_aid)
    assert new_events(es10, start) == [
        (ENABLE, a.iccid, a.notification_address),
        (DISABLE, a.iccid, a.notification_address),
        (DELETE, a.iccid, a.notification_address),
    ]


def test_switch_creates_disable_then_enable(card, es10: Es10Client) -> None:
    a, b = card.provision([ProfileSpec(notifications=True, enabled=True), NOTIFYING])
    start = last_seq(es10)
    es10.enable_profile(isdp_aid=b.isdp_aid)
    assert new_events(es10, start) == [
        (DISABLE, a.iccid, a.notification_address),
        (ENABLE, b.iccid, b.notification_address),
    ]


def test_failed_operations_create_no_notification(card, es10: Es10Client) -> None:
    a, b = card.provision(
        [
            ProfileSpec(
                profile_class=ProfileClass.OPERATIONAL,
                ppr1=True,
                ppr2=True,
                notifications=True,
                enabled=True,
            ),
            ProfileSpec(profile_class=ProfileClass.PROVISIONING, notifications=True),
        ]
    )
    before = [n.raw for n in es10.retrieve_notifications_list()]
    for call, kwargs in [
        (es10.disable_profile, {"iccid": a.iccid}),  # PPR1
        (es10.enable_profile, {"iccid": b.iccid}),  # provisioning
        (es10.enable_profile, {"iccid": a.iccid}),  # already enabled
        (es10.delete_profile, {"iccid": a.iccid}),  # enabled
        (es10.delete_profile, {"iccid": b.iccid}),  # provisioning
        (es10.disable_profile, {"iccid": b.iccid}),  # not enabled
    ]:
        with pytest.raises(Es10Error):
            call(**kwargs)
    assert [n.raw for n in es10.retrieve_notifications_list()] == before


def test_nickname_and_memory_reset_create_no_notification_and_keep_pending_ones(
    card, es10: Es10Client
) -> None:
    a, b = card.provision([NOTIFYING, ProfileSpec(notifications=True)])
    es10.enable_profile(iccid=a.iccid)
    es10.enable_profile(iccid=b.iccid)
    pending = [n.raw for n in es10.retrieve_notifications_list()]
    assert len(pending) >= 3
    es10.set_nickname(a.iccid, "no notification")
    es10.euicc_memory_reset([ResetOption.DELETE_OPERATIONAL_PROFILES], sgp22=True)
    assert es10.get_profiles_info(iccid=a.iccid) == []
    assert [n.raw for n in es10.retrieve_notifications_list()] == pending


# -- numbering ---------------------------------------------------------------------------------


def test_seq_numbers_increase_and_are_never_reused(card, es10: Es10Client) -> None:
    a, b = card.provision([NOTIFYING, NOTIFYING])
    if seqs(es10):  # a card in a reader may hold other pending notifications
        pytest.skip("needs a card without pending notifications")
    es10.enable_profile(iccid=a.iccid)
    es10.enable_profile(iccid=b.iccid)  # disable a, enable b
    numbers = seqs(es10)
    assert len(numbers) == 3 and numbers == sorted(set(numbers))
    highest = numbers[-1]
    es10.remove_notification_from_list(highest)
    es10.remove_notification_from_list(numbers[0])
    es10.disable_profile(iccid=b.iccid)
    (newest,) = set(seqs(es10)) - set(numbers)
    assert newest > highest
    for n in numbers:  # removing them all leaves room, still no reuse
        if n in seqs(es10):
            es10.remove_notification_from_list(n)
    es10.enable_profile(iccid=a.iccid)
    assert min(set(seqs(es10)) - {newest}) > newest


# -- listing and retrieval ---------------------------------------------------------------------


@pytest.fixture
def three_kinds(card, es10: Es10Client) -> dict[NotificationEvent, int]:
    """One enable, one disable and one delete notification; their seqNumbers by event."""
    (a,) = card.provision([NOTIFYING])
    start = last_seq(es10)
    es10.enable_profile(iccid=a.iccid)
    es10.disable_profile(iccid=a.iccid)
    es10.delete_profile(iccid=a.iccid)
    found = {m.event: m.seq_number for m in es10.list_notification() if m.seq_number > start}
    assert set(found) == {ENABLE, DISABLE, DELETE}
    return found


def test_list_notification_filters_by_event(es10: Es10Client, three_kinds) -> None:
    for event, seq in three_kinds.items():
        listed = es10.list_notification([event])
        assert seq in [m.seq_number for m in listed]
        assert all(m.event is event for m in listed)
    both = es10.list_notification([ENABLE, DELETE])
    assert {m.event for m in both} == {ENABLE, DELETE}
    assert len(es10.list_notification()) >= 3


def test_retrieve_by_seq_number_event_and_all_gives_the_same_bytes(
    es10: Es10Client, three_kinds
) -> None:
    everything = {n.seq_number: n.raw for n in es10.retrieve_notifications_list()}
    for event, seq in three_kinds.items():
        (by_seq,) = es10.retrieve_notifications_list(seq_number=seq)
        by_event = [n for n in es10.retrieve_notifications_list(event=event) if n.seq_number == seq]
        assert by_seq.raw == everything[seq] == by_event[0].raw
        assert all(
            n.notification_metadata.event is event
            for n in es10.retrieve_notifications_list(event=event)
        )
    again = {n.seq_number: n.raw for n in es10.retrieve_notifications_list()}
    assert again == everything


def test_retrieve_unknown_seq_number_is_empty(es10: Es10Client, three_kinds) -> None:
    assert es10.retrieve_notifications_list(seq_number=max(three_kinds.values()) + 100) == []


def test_retrieved_metadata_matches_the_list(es10: Es10Client, three_kinds) -> None:
    listed = {m.seq_number: m for m in es10.list_notification()}
    for note in es10.retrieve_notifications_list():
        assert note.notification_metadata == listed[note.seq_number]


def test_every_notification_is_signed_by_the_euicc(es10: Es10Client, three_kinds) -> None:
    eid = es10.get_eid()
    notes = es10.retrieve_notifications_list()
    assert {n.seq_number for n in notes} >= set(three_kinds.values())
    for note in notes:
        if note.kind == "otherSignedNotification":
            check_signed(note, eid)


def test_notification_carries_the_profile_and_address(card, es10: Es10Client) -> None:
    (a,) = card.provision([NOTIFYING])
    start = last_seq(es10)
    es10.enable_profile(iccid=a.iccid)
    (note,) = [n for n in es10.retrieve_notifications_list() if n.seq_number > start]
    meta = note.notification_metadata
    assert meta.iccid == a.iccid and meta.iccid_raw == iccid_to_ef(a.iccid)
    assert meta.notification_address == a.notification_address
    assert meta.profile_management_operation == (ENABLE,)


# -- removal -----------------------------------------------------------------------------------


def test_remove_notification_then_nothing_to_delete(es10: Es10Client, three_kinds) -> None:
    seq = three_kinds[DISABLE]
    es10.remove_notification_from_list(seq)
    assert seq not in seqs(es10)
    assert es10.retrieve_notifications_list(seq_number=seq) == []
    assert {three_kinds[ENABLE], three_kinds[DELETE]} <= set(seqs(es10))
    for missing in (seq, max(three_kinds.values()) + 50):
        with pytest.raises(Es10Error) as excinfo:
            es10.remove_notification_from_list(missing)
        assert (excinfo.value.code, excinfo.value.name) == (1, "nothingToDelete")


# -- persistence -------------------------------------------------------------------------------


@pytest.mark.persistence
def test_notifications_survive_reopen_and_power_cycle(card, es10: Es10Client, three_kinds) -> None:
    es10.remove_notification_from_list(three_kinds[ENABLE])
    before = [(n.seq_number, n.raw) for n in es10.retrieve_notifications_list()]
    es10 = card.reopen()
    assert [(n.seq_number, n.raw) for n in es10.retrieve_notifications_list()] == before
    es10 = card.power_cycle()
    assert [(n.seq_number, n.raw) for n in es10.retrieve_notifications_list()] == before
    # Numbering continues after the highest number ever used, not after what is left.
    (b,) = card.provision([NOTIFYING])
    es10 = card.client()
    es10.enable_profile(iccid=b.iccid)
    assert max(seqs(es10)) > max(three_kinds.values())
