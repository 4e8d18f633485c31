"""Proactive REFRESH after a profile switch: the card (euicc_sim.proactive, the card OS) and
the IPAd's ES10 channel (ipa.proactive, ipa.channel) on the in-process transport."""

from __future__ import annotations

from typing import Any

import pytest
from test_euicc_package import ICCID_A, ICCID_B, TestEim, add_initial_eim, preload_profiles
from test_iot_functions import allow_fallback, configure, downloaded

from euicc_protocol import schema
from euicc_sim.card import Euicc
from euicc_sim.proactive import refresh_command
from ipa.errors import CardProtocolError, CardResetNotSupported
from ipa.es10 import Es10Client
from ipa.proactive import (
    REFRESH_UICC_RESET,
    ProactiveCommand,
    parse_proactive_command,
    terminal_response,
)
from ipa.transport import InProcessTransport

ISDR = "A0000005591010FFFFFFFF8900000100"
REFRESH = refresh_command(1)  # D0 09 81 03 01 01 04 82 02 81 82


def consumer_card() -> Euicc:
    return preload_profiles(Euicc.create(None, fsync=False, kind="consumer"))


def iot_card() -> Euicc:
    return preload_profiles(Euicc.create(None, fsync=False))


class Recorder:
    """An in-process transport that records the command APDUs (and may refuse to reset)."""

    def __init__(self, card: Euicc, *, can_reset: bool = True) -> None:
        self.card = card
        self.apdus: list[bytes] = []
        self.resets = 0
        self.can_reset = can_reset

    def transmit(self, apdu: bytes) -> bytes:
        self.apdus.append(bytes(apdu))
        return self.card.transmit(apdu)

    def reset(self) -> bytes:
        if not self.can_reset:
            raise CardResetNotSupported("this test transport owns no card power")
        self.resets += 1
        return self.card.reset()

    def ins(self) -> list[int]:
        return [a[1] for a in self.apdus]


def raw(card: Euicc, apdu: str) -> str:
    return card.transmit(bytes.fromhex(apdu.replace(" ", ""))).hex().upper()


def store_data(card: Euicc, request: bytes) -> tuple[bytes, str]:
    """One single-block STORE DATA on the basic channel; GET RESPONSE while 61xx."""
    answer = card.transmit(bytes((0x80, 0xE2, 0x91, 0, len(request))) + request)
    data = b""
    while answer[-2] == 0x61:
        answer = card.transmit(bytes((0x00, 0xC0, 0, 0, answer[-1])))
        data += answer[:-2]
    return data, answer[-2:].hex().upper()


def enable_request(iccid: bytes, refresh: bool) -> bytes:
    return schema.encode(
        "EnableProfileRequest", {"profileIdentifier": ("iccid", iccid), "refreshFlag": refresh}
    )


def enabled(card: Euicc) -> bytes | None:
    p = card.state.enabled_profile
    return None if p is None else p.iccid


# -- the card ----------------------------------------------------------------------------------


def test_refresh_flag_leaves_a_refresh_pending_shown_as_91xx_at_the_end() -> None:
    card = consumer_card()
    raw(card, f"00A4040010{ISDR}")
    data, sw = store_data(card, enable_request(ICCID_B, True))
    assert schema.decode("EnableProfileResponse", data) == {"enableResult": 0}
    assert sw == f"91{len(REFRESH):02X}"  # the last GET RESPONSE slice carries it
    assert enabled(card) == ICCID_B  # the switch is committed first
    # Any command that would answer 9000 announces it until it is fetched.
    assert raw(card, "80AA000005A903830107") == "910B"
    assert raw(card, "8012000005") == "6C0B"  # Le too short
    assert raw(card, "801200000B") == REFRESH.hex().upper() + "9000"
    assert raw(card, "80AA000005A903830107") == "9000"  # fetched: no more 91xx
    assert raw(card, "801200000B") == "6985"


def test_the_refresh_is_uicc_reset_from_uicc_to_terminal() -> None:
    assert REFRESH == bytes.fromhex("D009 8103 010104 8202 8182")


def test_refresh_flag_false_switches_without_a_refresh() -> None:
    card = consumer_card()
    raw(card, f"00A4040010{ISDR}")
    data, sw = store_data(card, enable_request(ICCID_B, False))
    assert sw == "9000" and enabled(card) == ICCID_B
    assert raw(card, "801200000B") == "6985"


def test_a_refused_switch_queues_nothing() -> None:
    card = consumer_card()
    raw(card, f"00A4040010{ISDR}")
    data, sw = store_data(card, enable_request(ICCID_A, True))  # already enabled
    assert schema.decode("EnableProfileResponse", data) == {"enableResult": 2}
    assert sw == "9000"


def test_a_second_refreshing_switch_while_one_is_outstanding_is_cat_busy() -> None:
    card = consumer_card()
    raw(card, f"00A4040010{ISDR}")
    store_data(card, enable_request(ICCID_B, True))
    before = card.state
    data, _ = store_data(card, enable_request(ICCID_A, True))
    assert schema.decode("EnableProfileResponse", data) == {"enableResult": 5}  # catBusy
    assert card.state == before
    # Without refreshFlag the device takes the reset on itself: allowed.
    data, _ = store_data(card, enable_request(ICCID_A, False))
    assert schema.decode("EnableProfileResponse", data) == {"enableResult": 0}


def test_terminal_response_ends_the_command() -> None:
    card = consumer_card()
    raw(card, f"00A4040010{ISDR}")
    store_data(card, enable_request(ICCID_B, True))
    right = terminal_response(parse_proactive_command(REFRESH))
    assert raw(card, f"80140000{len(right):02X}{right.hex()}") == "6985"  # not fetched yet
    raw(card, "801200000B")
    wrong = terminal_response(ProactiveCommand(9, 1, 4, b""))
    assert raw(card, f"80140000{len(wrong):02X}{wrong.hex()}") == "6A80"
    assert raw(card, "8014000003810301") == "6A80"  # malformed
    assert raw(card, f"80140000{len(right):02X}{right.hex()}") == "9000"
    assert raw(card, f"80140000{len(right):02X}{right.hex()}") == "6985"  # nothing outstanding
    # catBusy is over: a new refreshing switch is taken.
    data, sw = store_data(card, enable_request(ICCID_A, True))
    assert schema.decode("EnableProfileResponse", data) == {"enableResult": 0}
    assert sw == "910B"


def test_pending_refresh_is_volatile() -> None:
    card = consumer_card()
    raw(card, f"00A4040010{ISDR}")
    store_data(card, enable_request(ICCID_B, True))
    card.reset()
    assert raw(card, "801200000B") == "6985"
    assert raw(card, "80AA000005A903830107") == "9000"
    assert enabled(card) == ICCID_B  # the switch itself is persistent


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("80100000021F7F", "9000"),  # TERMINAL PROFILE
        ("0010000001FF", "6E00"),  # interindustry class
        ("81100000011F", "6881"),  # not the basic channel
        ("8010000000", "6700"),  # no data
        ("80100100011F", "6A86"),
        ("0012000000", "6E00"),
    ],
)
def test_terminal_profile_and_classes(apdu: str, sw: str) -> None:
    card = consumer_card()
    raw(card, "0070000001")
    assert raw(card, apdu) == sw


# -- the IPAd's ES10 channel -------------------------------------------------------------------


def test_channel_keeps_only_the_latest_proactive_commands(monkeypatch: Any) -> None:
    monkeypatch.setattr("ipa.channel.KEPT_PROACTIVE_COMMANDS", 2)
    card = consumer_card()
    with Es10Client.open(InProcessTransport(card)) as client:
        for iccid in (ICCID_B, ICCID_A, ICCID_B):
            client.enable_profile(iccid=iccid, refresh=True)
        channel = client.channel
        assert channel.refresh_resets == 3
        # Three REFRESHes served, the latest two kept (a long-lived device does not grow).
        assert [(c.type, c.qualifier) for c in channel.proactive_commands] == [
            (1, REFRESH_UICC_RESET)
        ] * 2
    assert enabled(card) == ICCID_B


def test_client_fetches_resets_and_reopens_after_a_refreshing_enable() -> None:
    card = consumer_card()
    transport = Recorder(card)
    with Es10Client.open(transport) as client:
        client.enable_profile(iccid=ICCID_B, refresh=True)
        channel = client.channel
        assert channel.refresh_resets == 1 and transport.resets == 1
        [command] = channel.proactive_commands
        assert (command.type, command.qualifier) == (1, REFRESH_UICC_RESET)
        assert 0x12 in transport.ins()  # FETCH
        assert 0x14 not in transport.ins()  # UICC Reset mode: the reset answers it
        assert channel.is_open and not channel.reset_required
        # The channel works on after the reset: ISD-R selected again.
        states = {p.iccid: p.profile_state.asn1_name for p in client.get_profiles_info()}
        assert states[client.get_profiles_info()[1].iccid] == "enabled"
    assert enabled(card) == ICCID_B


def test_client_sends_no_fetch_without_refresh_flag() -> None:
    card = consumer_card()
    transport = Recorder(card)
    with Es10Client.open(transport) as client:
        client.enable_profile(iccid=ICCID_B)
        assert client.channel.refresh_resets == 0
    assert 0x12 not in transport.ins() and transport.resets == 0


def test_a_transport_that_cannot_reset_answers_terminal_unable_and_flags_it() -> None:
    card = consumer_card()
    transport = Recorder(card, can_reset=False)
    with Es10Client.open(transport) as client:
        client.enable_profile(iccid=ICCID_B, refresh=True)
        assert client.channel.reset_required and client.channel.refresh_resets == 0
        tr = next(a for a in transport.apdus if a[1] == 0x14)
        assert tr[5:].endswith(bytes.fromhex("83022000"))  # result 20, no specific cause
        assert card.proactive.busy is False  # the TERMINAL RESPONSE ended it
        assert client.get_eid() == card.eid  # the channel is still open


def test_an_object_with_transmit_only_is_a_transport_that_cannot_reset() -> None:
    card = consumer_card()

    class TransmitOnly:
        def transmit(self, apdu: bytes) -> bytes:
            return card.transmit(apdu)

    with Es10Client.open(TransmitOnly()) as client:
        client.disable_profile(iccid=ICCID_A, refresh=True)
        assert client.channel.reset_required


def test_in_process_transport_without_card_reset_raises_the_typed_error() -> None:
    class NoReset:
        def transmit(self, apdu: bytes) -> bytes:
            return b"\x90\x00"

    with pytest.raises(CardResetNotSupported):
        InProcessTransport(NoReset()).reset()


def _switch_count(card: Euicc, call: Any) -> int:
    transport = Recorder(card)
    with Es10Client.open(transport) as client:
        call(client)
        return client.channel.refresh_resets


def test_psmo_switch_always_refreshes() -> None:
    card = iot_card()
    eim = TestEim()
    add_initial_eim(card, eim)
    package = eim.package(bytes.fromhex(card.eid), [("enable", {"iccid": ICCID_B})])
    assert _switch_count(card, lambda c: c.exchange(package)) == 1
    assert enabled(card) == ICCID_B
    # A package that changes no profile state asks for nothing.
    package = eim.package(bytes.fromhex(card.eid), [("listEim", {})], kind="ecoList")
    assert _switch_count(card, lambda c: c.exchange(package)) == 0


@pytest.mark.parametrize("refresh", [True, False])
def test_immediate_enable_refreshes_when_asked(refresh: bool) -> None:
    card = iot_card()
    assert configure(card, immediateEnableFlag=None) == 0
    downloaded(card)
    request = {"refreshFlag": refresh}
    count = _switch_count(card, lambda c: c.transmit_es10("ImmediateEnableRequest", request))
    assert count == int(refresh) and enabled(card) == ICCID_B


def test_fallback_and_return_refresh_when_asked() -> None:
    card = iot_card()
    eim = TestEim()
    add_initial_eim(card, eim)
    allow_fallback(card, ICCID_B)
    package = eim.package(bytes.fromhex(card.eid), [("setFallbackAttribute", {"iccid": ICCID_B})])
    assert _switch_count(card, lambda c: c.exchange(package)) == 0
    go = {"refreshFlag": True}
    assert (
        _switch_count(card, lambda c: c.transmit_es10("ExecuteFallbackMechanismRequest", go)) == 1
    )
    assert enabled(card) == ICCID_B
    assert _switch_count(card, lambda c: c.transmit_es10("ReturnFromFallbackRequest", go)) == 1
    assert enabled(card) == ICCID_A


def test_rollback_refreshes_when_asked() -> None:
    card = iot_card()
    eim = TestEim()
    add_initial_eim(card, eim)
    package = eim.package(
        bytes.fromhex(card.eid), [("enable", {"iccid": ICCID_B, "rollbackFlag": None})]
    )
    assert _switch_count(card, lambda c: c.exchange(package)) == 1
    request = schema.encode("ProfileRollbackRequest", {"refreshFlag": True})
    assert _switch_count(card, lambda c: c.exchange(request)) == 1
    assert enabled(card) == ICCID_A


def test_reset_brings_the_new_profiles_file_system() -> None:
    """After the REFRESH reset the basic channel shows the newly enabled profile's EF.ICCID."""
    card = consumer_card()
    with Es10Client.open(InProcessTransport(card)) as client:
        client.enable_profile(iccid=ICCID_B, refresh=True)
    raw(card, "00A40004022FE2")
    assert raw(card, "00B000000A") == ICCID_B.hex().upper() + "9000"


# -- ipa.proactive -----------------------------------------------------------------------------


def test_parse_and_answer_a_refresh() -> None:
    command = parse_proactive_command(REFRESH)
    assert (command.number, command.type, command.qualifier) == (1, 1, 4)
    assert command.resets_card and not command.wants_terminal_response
    state_change = parse_proactive_command(refresh_command(7, 0x09))
    assert state_change.resets_card and state_change.wants_terminal_response
    assert terminal_response(state_change) == bytes.fromhex("810307010982028281830100")


@pytest.mark.parametrize(
    "data", ["", "D000", "D0038202", "D0048103010101", "9000", "D009810301010482028182FF"]
)
def test_malformed_proactive_commands_are_protocol_errors(data: str) -> None:
    with pytest.raises(CardProtocolError):
        parse_proactive_command(bytes.fromhex(data))
