"""Tests of ipa.pcsc: the PC/SC transport.

Two parts:

* against a fake of pyscard's ``smartcard.scard`` (always run): reader choice, the typed
  errors, raw transmission, reset;
* marked ``pcsc``, against the real thing: pcscd with the vsmartcard vpcd driver, an emulated
  card served to it by :mod:`euicc_sim.vpcd`, reached through pyscard. These skip (with the
  reason) when pyscard, pcscd or vpcd are missing; ``EUICC_SIM_REQUIRE_PCSC=1`` (or ``CI=true``)
  turns the skips into failures (CI, where ``make test`` installs everything).

The real tests take a vpcd reader slot (port 35963 or 35964) under a file lock, so parallel
test workers never share a slot, and find the slot's reader name by watching which reader
gets a card when the emulated card connects.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pcsc_support import VpcdCard, new_card, require_pcsc, vpcd_port, wait_until_empty

import ipa.pcsc as pcsc
from ipa.channel import ISD_R_AID
from ipa.errors import IpaError, TransportError
from ipa.es10 import Es10Client
from ipa.pcsc import (
    CardRemovedError,
    CardResetError,
    Disposition,
    NoCardError,
    NoReaderError,
    PcscError,
    PcscProtocol,
    PcscServiceError,
    PcscTransport,
    PyscardMissingError,
    ReaderBusyError,
    ReaderNotFoundError,
    list_readers,
    open_reader_transport,
    reader_states,
)
from ipa.transport import ResettableTransport

ROOT = Path(__file__).resolve().parents[1]
TS48 = ROOT / "profiles" / "ts48"


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# == against a fake pyscard ==================================================================

OK = 0
E_NO_SERVICE = 0x8010001D
E_NO_READERS = 0x8010002E
E_NO_SMARTCARD = 0x8010000C
E_SHARING = 0x8010000B
E_PROTO = 0x8010000F
E_NOT_TRANSACTED = 0x80100016
E_TIMEOUT = 0x8010000A
W_REMOVED = 0x80100069
W_RESET = 0x80100068
STATE_EMPTY = 0x10
STATE_PRESENT = 0x20
FAKE_ATR = h("3B 02 14 50")


class FakeScard:
    """Just enough of ``smartcard.scard`` for PcscTransport, with injectable failures."""

    def __init__(self, readers: dict[str, bool] | None = None) -> None:
        self.readers = {"ACS ACR39U 00 00": True} if readers is None else readers
        self.establish_code = OK
        self.connect_code: dict[str, int] = {}
        self.transmit_codes: list[int] = []
        self.reconnect_code = OK
        self.removed_after_failure = False
        self.responses: dict[bytes, bytes] = {}
        self.sent: list[tuple[int, bytes]] = []
        self.calls: list[tuple] = []
        self.released = 0

    def SCardEstablishContext(self, scope: int) -> tuple[int, Any]:
        return self.establish_code, "ctx"

    def SCardReleaseContext(self, context: Any) -> int:
        self.released += 1
        return OK

    def SCardListReaders(self, context: Any, groups: list) -> tuple[int, list[str]]:
        if not self.readers:
            return E_NO_READERS, []
        return OK, list(self.readers)

    def SCardGetStatusChange(self, context: Any, timeout: int, states: list) -> tuple[int, list]:
        (reader, current), *_ = states
        if self.removed_after_failure:
            self.readers[reader] = False
        flags = STATE_PRESENT if self.readers.get(reader) else STATE_EMPTY
        if current and flags == current & ~0x2:
            return E_TIMEOUT, []
        return OK, [(reader, flags | 0x2, FAKE_ATR)]

    def SCardConnect(self, context: Any, reader: str, share: int, protocols: int) -> tuple:
        self.calls.append(("connect", reader, share, protocols))
        code = self.connect_code.get(reader, OK)
        if code == OK and not self.readers.get(reader):
            code = E_NO_SMARTCARD
        if code == OK and not protocols & 0x1:
            code = E_PROTO
        return code, f"card:{reader}", 0x1

    def SCardStatus(self, card: Any) -> tuple:
        return OK, card[5:], STATE_PRESENT, 0x1, list(FAKE_ATR)

    def SCardTransmit(self, card: Any, protocol: int, apdu: list[int]) -> tuple[int, list[int]]:
        assert isinstance(apdu, list)
        self.sent.append((protocol, bytes(apdu)))
        if self.transmit_codes:
            code = self.transmit_codes.pop(0)
            if code != OK:
                return code, []
        return OK, list(self.responses.get(bytes(apdu), h("90 00")))

    def SCardReconnect(self, card: Any, share: int, protocols: int, init: int) -> tuple[int, int]:
        self.calls.append(("reconnect", init))
        return self.reconnect_code, 0x1

    def SCardDisconnect(self, card: Any, disposition: int) -> int:
        self.calls.append(("disconnect", disposition))
        return OK

    def SCardGetErrorMessage(self, code: int) -> str:
        return {W_REMOVED: "Card was removed."}.get(code, "Some PC/SC error.")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeScard:
    scard = FakeScard()
    monkeypatch.setattr(pcsc, "_load_scard", lambda: scard)
    return scard


def test_importing_ipa_pcsc_needs_neither_pyscard_nor_the_emulator() -> None:
    code = (
        "import sys, ipa.pcsc\n"
        "bad = [m for m in sys.modules if m.startswith(('smartcard', 'euicc_sim'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_missing_pyscard_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "smartcard.scard", None)  # import fails
    with pytest.raises(PyscardMissingError, match=r"euicc-sim\[pcsc\]") as info:
        list_readers()
    assert isinstance(info.value, TransportError) and isinstance(info.value, IpaError)


def test_no_pc_sc_service(fake: FakeScard) -> None:
    fake.establish_code = E_NO_SERVICE
    with pytest.raises(PcscServiceError, match="pcscd") as info:
        PcscTransport()
    assert info.value.code == E_NO_SERVICE


def test_no_reader(fake: FakeScard) -> None:
    fake.readers = {}
    assert list_readers() == []
    with pytest.raises(NoReaderError, match="no smart card reader"):
        PcscTransport()
    assert fake.released == 2  # every context is released, also on failure


def test_reader_not_found_lists_the_readers(fake: FakeScard) -> None:
    fake.readers = {"Virtual PCD 00 00": True, "Virtual PCD 00 01": False}
    with pytest.raises(ReaderNotFoundError) as info:
        PcscTransport("Gemalto")
    assert info.value.available == ["Virtual PCD 00 00", "Virtual PCD 00 01"]
    assert "'Gemalto'" in str(info.value) and "1: 'Virtual PCD 00 01'" in str(info.value)
    with pytest.raises(ReaderNotFoundError, match="no reader number 2"):
        PcscTransport(2)


def test_reader_by_exact_name_substring_or_index(fake: FakeScard) -> None:
    fake.readers = {"Virtual PCD 00 00": True, "Virtual PCD 00 01": True, "ACS 00 00": True}
    assert PcscTransport("Virtual PCD 00 01").reader == "Virtual PCD 00 01"
    assert PcscTransport("acs").reader == "ACS 00 00"  # case-insensitive substring
    assert PcscTransport(1).reader == "Virtual PCD 00 01"
    assert open_reader_transport("2").reader == "ACS 00 00"
    assert open_reader_transport("PCD 00 01").reader == "Virtual PCD 00 01"


def test_several_matches_take_the_first_reader_with_a_card(fake: FakeScard) -> None:
    fake.readers = {"Virtual PCD 00 00": False, "Virtual PCD 00 01": True}
    assert PcscTransport("Virtual PCD").reader == "Virtual PCD 00 01"
    assert PcscTransport().reader == "Virtual PCD 00 01"
    fake.readers["Virtual PCD 00 01"] = False
    with pytest.raises(NoCardError, match="no card in any of the readers"):
        PcscTransport("virtual")


def test_reader_states(fake: FakeScard) -> None:
    fake.readers = {"A": True, "B": False}
    assert reader_states() == {"A": True, "B": False}


def test_no_card_in_the_reader(fake: FakeScard) -> None:
    fake.readers = {"ACS 00 00": False}
    with pytest.raises(NoCardError, match="no card in reader 'ACS 00 00'"):
        PcscTransport("ACS")


def test_shared_and_exclusive_modes_and_busy_reader(fake: FakeScard) -> None:
    PcscTransport()
    PcscTransport(exclusive=True)
    assert [c[2] for c in fake.calls if c[0] == "connect"] == [2, 1]
    fake.connect_code["ACS ACR39U 00 00"] = E_SHARING
    with pytest.raises(ReaderBusyError, match="exclusive access"):
        PcscTransport(exclusive=True)


@pytest.mark.parametrize(
    "protocol, flags",
    [("T0", 1), ("T=1", 2), ("any", 3), (PcscProtocol.T0, 1), ("t=0", 1)],
)
def test_protocol_choice(fake: FakeScard, protocol: Any, flags: int) -> None:
    with contextlib.suppress(PcscError):
        PcscTransport(protocol=protocol)
    assert fake.calls[-1][3] == flags


def test_protocol_mismatch_and_bad_protocol_names(fake: FakeScard) -> None:
    with pytest.raises(PcscError, match="offers none of the protocols"):
        PcscTransport(protocol="T1")
    with pytest.raises(ValueError):
        PcscTransport(protocol="T=2")


def test_transmit_is_raw_61xx_is_returned_not_followed(fake: FakeScard) -> None:
    fake.responses[h("00 A4 00 04 02 3F 00")] = h("61 20")
    transport = PcscTransport()
    assert isinstance(transport, ResettableTransport)
    assert transport.atr == FAKE_ATR and transport.protocol == "T=0"
    assert transport.transmit(h("00 A4 00 04 02 3F 00")) == h("61 20")
    assert transport.transmit(h("00 B0 00 00 00")) == h("90 00")
    assert fake.sent == [(1, h("00 A4 00 04 02 3F 00")), (1, h("00 B0 00 00 00"))]


def test_card_removed_mid_command(fake: FakeScard) -> None:
    transport = PcscTransport()
    fake.transmit_codes = [W_REMOVED]
    with pytest.raises(CardRemovedError, match="card removed from reader 'ACS ACR39U 00 00'"):
        transport.transmit(h("80 E2 91 00 03 BF 2E 00"))


def test_failed_transaction_is_a_removal_when_the_card_leaves(fake: FakeScard) -> None:
    transport = PcscTransport(removal_grace=0.5)
    fake.transmit_codes = [E_NOT_TRANSACTED]
    fake.removed_after_failure = True
    with pytest.raises(CardRemovedError) as info:
        transport.transmit(h("00 70 00 00 01"))
    assert info.value.code == E_NOT_TRANSACTED


def test_failed_transaction_with_the_card_still_there(fake: FakeScard) -> None:
    transport = PcscTransport(removal_grace=0.05)
    fake.transmit_codes = [E_NOT_TRANSACTED]
    with pytest.raises(PcscError) as info:
        transport.transmit(h("00 70 00 00 01"))
    assert type(info.value) is PcscError and "00700000" in str(info.value)


def test_reset_by_another_application(fake: FakeScard) -> None:
    transport = PcscTransport()
    fake.transmit_codes = [W_RESET]
    with pytest.raises(CardResetError, match="logical channels are lost"):
        transport.transmit(h("00 70 00 00 01"))


def test_service_stops_mid_session(fake: FakeScard) -> None:
    transport = PcscTransport()
    fake.transmit_codes = [E_NO_SERVICE]
    with pytest.raises(PcscServiceError):
        transport.transmit(h("00 70 00 00 01"))


def test_reset_reconnects_with_the_reset_disposition(fake: FakeScard) -> None:
    transport = PcscTransport()
    assert transport.reset() == FAKE_ATR
    assert fake.calls[-1] == ("reconnect", int(Disposition.RESET))


def test_reset_after_the_card_was_put_back_connects_again(fake: FakeScard) -> None:
    transport = PcscTransport()
    fake.reconnect_code = W_REMOVED
    assert transport.reset() == FAKE_ATR
    assert [c[0] for c in fake.calls] == ["connect", "reconnect", "disconnect", "connect"]
    fake.readers["ACS ACR39U 00 00"] = False
    with pytest.raises(NoCardError):
        transport.reset()


def test_close_and_context_manager(fake: FakeScard) -> None:
    with PcscTransport() as transport:
        assert not transport.closed
    assert transport.closed and fake.calls[-1] == ("disconnect", int(Disposition.LEAVE))
    with pytest.raises(TransportError, match="closed"):
        transport.transmit(h("00 70 00 00 01"))
    with pytest.raises(TransportError, match="closed"):
        transport.reset()
    transport.close()  # twice is fine
    assert "closed" in repr(transport)


def test_es10_client_over_the_transport_does_get_response(fake: FakeScard) -> None:
    # The channel layer, not the transport, follows 61xx: the fake sees GET RESPONSE.
    fake.responses[h("00 70 00 00 01")] = h("01 90 00")
    fake.responses[h("01 A4 04 04 10") + ISD_R_AID] = h("61 02")
    fake.responses[h("01 C0 00 00 02")] = h("6F 00 90 00")
    fake.responses[h("81 E2 91 00 06 BF3E035C015A")] = h("61 15")
    fake.responses[h("01 C0 00 00 15")] = h("BF3E 12 5A 10") + bytes(range(16)) + h("90 00")
    with PcscTransport() as transport, Es10Client.open(transport) as client:
        assert client.get_eid() == bytes(range(16)).hex().upper()
    assert h("01 C0 00 00 15") in [apdu for _, apdu in fake.sent]


# == against pcscd + vpcd ====================================================================


@dataclass
class Served(VpcdCard):
    """The emulated card of these tests in its vpcd reader slot."""

    eid: str = ""
    iccid: str = ""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """An emulated card with a TS.48 profile (enabled) in a vpcd reader of the real pcscd."""
    require_pcsc()
    from euicc_protocol.iccid import iccid_from_ef
    from euicc_sim.card import Euicc

    with vpcd_port() as port:
        # A consumer card: the tests switch profiles through ES10c.
        card = Euicc.create(tmp_path_factory.mktemp("pcsc") / "card", fsync=False, kind="consumer")
        profile = card.preload(
            (TS48 / "TS48V1-A-UNIQUE.der").read_bytes(),
            enable=True,
            notification_address="notify.pcsc.example",
        )
        served = Served(card, port, eid=card.eid, iccid=iccid_from_ef(profile.iccid))
        served.insert()
        try:
            yield served
        finally:
            served.remove(wait_empty=True)


@pytest.fixture
def transport(served: Served) -> Iterator[PcscTransport]:
    with PcscTransport(served.reader, protocol="T0") as transport:
        transport.reset()  # every test starts from a freshly reset card
        yield transport


class Raw:
    """Byte-for-byte APDUs through a transport, as a PC/SC client sends them."""

    def __init__(self, transport: PcscTransport) -> None:
        self.transport = transport

    def send(self, apdu: str | bytes) -> bytes:
        response = self.transport.transmit(h(apdu) if isinstance(apdu, str) else apdu)
        assert len(response) >= 2
        return response

    def sw(self, apdu: str | bytes) -> str:
        return self.send(apdu).hex().upper()

    def fetch(self, first: bytes, gr_cla: int) -> tuple[bytes, str]:
        """Follow ``61 xx`` with GET RESPONSE ``Le=xx``, checking each slice's length."""
        data, response = first[:-2], first
        while response[-2] == 0x61:
            le = response[-1]
            response = self.send(bytes((gr_cla, 0xC0, 0x00, 0x00, le)))
            assert len(response) - 2 == (le or 256)
            data += response[:-2]
        return data, response[-2:].hex().upper()


def _tlv_tag(data: bytes) -> str:
    return data[: 2 if data[0] & 0x1F == 0x1F else 1].hex().upper()


pcsc_mark = pytest.mark.pcsc


@pcsc_mark
def test_the_emulated_card_is_a_t0_card_in_a_vpcd_reader(
    served: Served, transport: PcscTransport
) -> None:
    from euicc_sim.cardos import ATR

    assert served.reader in list_readers() and reader_states()[served.reader]
    assert transport.protocol == "T=0" and transport.atr == ATR
    assert transport.reset() == ATR


@pcsc_mark
def test_es10_client_through_pcsc(served: Served, transport: PcscTransport) -> None:
    with Es10Client.open(transport) as client:
        assert client.get_eid() == served.eid
        (profile,) = client.get_profiles_info()
        assert profile.iccid == served.iccid and profile.profile_state.asn1_name == "enabled"
        client.disable_profile(iccid=served.iccid)
        assert client.get_profiles_info()[0].profile_state.asn1_name == "disabled"
        client.enable_profile(iccid=served.iccid)
        assert client.get_profiles_info()[0].profile_state.asn1_name == "enabled"
        assert len(client.get_euicc_challenge()) == 16
        # Two signed notifications (disable, enable): a response over 256 bytes.
        assert sum(len(n.raw) for n in client.retrieve_notifications_list()) > 256


@pcsc_mark
def test_chip_info_lpa_start_up_sequence_through_pcsc(
    served: Served, transport: PcscTransport
) -> None:
    raw = Raw(transport)
    raw.send("80 AA 00 00 0A A9 08 81 00 82 01 01 83 01 07")  # reply ignored by this LPA
    assert raw.sw("00 70 00 00 01") == "019000"  # exactly one byte + 90 00
    first = raw.send(h("01 A4 04 00 10") + ISD_R_AID)
    assert first[-2] == 0x61 or first[-2:] == h("90 00")
    fci, sw = raw.fetch(first, 0x81)
    assert sw == "9000" and fci[0] == 0x6F
    for request, tag in (("BF3E035C015A", "BF3E"), ("BF3C00", "BF3C"), ("BF4300", "BF43")):
        first = raw.send(f"81 E2 91 00 {len(h(request)):02X} {request}")
        assert first[-2] == 0x61
        data, sw = raw.fetch(first, 0x81)
        assert sw == "9000" and _tlv_tag(data) == tag
        if tag == "BF3E":
            assert data == h("BF3E 12 5A 10") + h(served.eid)
    data, sw = raw.fetch(raw.send("81 E2 91 00 03 BF2200"), 0x81)
    assert sw == "9000" and _tlv_tag(data) == "BF22"
    assert raw.sw("00 70 80 01 00") == "9000"
    assert raw.sw("81 E2 91 00 03 BF 2E 00") == "6881"  # channel 1 is closed


@pcsc_mark
def test_iot_ipad_start_up_sequence_through_pcsc(served: Served, transport: PcscTransport) -> None:
    raw = Raw(transport)
    assert raw.sw("80 AA 00 00 05 A9 03 83 01 07") == "9000"  # it stops unless exactly 90 00
    assert raw.sw("00 70 00 01 00") == "9000"  # fixed channel 1, no data
    first = raw.send(h("01 A4 04 04 10") + ISD_R_AID)
    assert first[-2] == 0x61  # required: plain 90 00 is a failure for this IPAd
    fcp = raw.send(bytes((0x01, 0xC0, 0x00, 0x00, first[-1])))
    assert fcp[-2:] == h("90 00") and fcp[0] == 0x6F and len(fcp) - 2 == first[-1]
    assert raw.sw("81 E2 91 00 06 BF 3E 03 5C 01 5A") == "6115"
    assert raw.send("01 C0 00 00 15") == h("BF3E 12 5A 10") + h(served.eid) + h("90 00")
    data, sw = raw.fetch(raw.send("81 E2 91 00 03 BF 2B 00"), 0x01)
    assert sw == "9000" and _tlv_tag(data) == "BF2B"
    assert raw.sw("00 70 80 01") == "9000"


@pcsc_mark
def test_card_shell_start_up_sequence_through_pcsc(
    served: Served, transport: PcscTransport
) -> None:
    raw = Raw(transport)
    first = raw.send("00 A4 00 04 02 3F 00")  # its start-up fails without an FCP here
    assert first[-2] == 0x61
    fcp, sw = raw.fetch(first, 0x00)
    assert sw == "9000" and fcp[0] == 0x62
    assert raw.fetch(raw.send("00 A4 00 04 02 2F 00"), 0x00)[1] == "9000"
    assert raw.sw("A0 A4 00 00 02 7F 20") == "6E00"
    fci, sw = raw.fetch(raw.send(h("00 A4 04 04 10") + ISD_R_AID + h("00")), 0x00)
    assert sw == "9000" and fci[0] == 0x6F
    # The SGP.32 probe: this card is a consumer (SGP.22) card, so GetCerts is an unknown tag.
    assert raw.sw("80 E2 91 00 03 BF 56 00") == "6A88"
    transport.reset()
    raw.fetch(raw.send(h("00 A4 04 04 10") + ISD_R_AID + h("00")), 0x00)
    eid, sw = raw.fetch(raw.send("80 E2 91 00 06 BF 3E 03 5C 01 5A 00"), 0x00)
    assert (eid, sw) == (h("BF3E 12 5A 10") + h(served.eid), "9000")
    for fid in ("7F20", "7FE0", "7F25"):
        assert raw.sw("00 A4 00 04 02" + fid) == "6A82"
    for fid in ("3F00", "2F00"):
        assert raw.fetch(raw.send("00 A4 00 04 02" + fid), 0x00)[1] == "9000"
    ecasd = "A0000005591010FFFFFFFF8900000200"
    assert raw.fetch(raw.send(f"00 A4 04 04 10 {ecasd} 00"), 0x00)[1] == "9000"
    for aid in ("A000000003000000", "A00000015141434C00"):
        assert raw.sw(f"00 A4 04 04 {len(h(aid)):02X} {aid} 00") == "6A82"
    raw.fetch(raw.send(h("00 A4 04 04 10") + ISD_R_AID + h("00")), 0x00)
    for aid in ("A000000087100A", "A000000087100B"):
        assert raw.sw(f"00 A4 04 04 07 {aid} 00") == "6A82"
    for aid in ("A0000000871004", "A0000000871002"):  # the enabled TS.48 profile's ISIM, USIM
        fcp, sw = raw.fetch(raw.send(f"00 A4 04 04 07 {aid} 00"), 0x00)
        assert sw == "9000" and fcp[0] == 0x62 and h(aid) in fcp
    assert raw.fetch(raw.send("00 A4 00 04 02 2F E2"), 0x00)[1] == "9000"
    from euicc_protocol.iccid import iccid_to_ef

    assert raw.send("00 B0 00 00 0A") == iccid_to_ef(served.iccid) + h("90 00")


@pcsc_mark
def test_no_such_reader_lists_the_vpcd_reader(served: Served) -> None:
    with pytest.raises(ReaderNotFoundError, match="no reader matches") as info:
        PcscTransport("no such reader 4711")
    assert served.reader in info.value.available
    index = list_readers().index(served.reader)
    with open_reader_transport(str(index)) as transport:
        assert transport.reader == served.reader


@pcsc_mark
def test_exclusive_mode_keeps_other_applications_out(served: Served) -> None:
    with PcscTransport(served.reader, exclusive=True):
        with pytest.raises(ReaderBusyError):
            PcscTransport(served.reader)


@pcsc_mark
def test_card_removed_mid_session(served: Served) -> None:
    transport = PcscTransport(served.reader)
    try:
        client = Es10Client.open(transport)
        assert client.get_eid() == served.eid
        served.remove()  # the card leaves the reader with a channel open
        with pytest.raises(CardRemovedError, match="card removed"):
            client.get_eid()
        wait_until_empty(served.reader)
        with pytest.raises(NoCardError):
            transport.reset()
        with pytest.raises(NoCardError):
            PcscTransport(served.reader)
    finally:
        transport.close()
        if served.client is None:
            served.insert()
    with PcscTransport(served.reader) as again, Es10Client.open(again) as client:
        assert client.get_eid() == served.eid


def test_served_card_helpers_pick_the_reader_that_got_a_card() -> None:
    before = {"A": True, "B": False, "C": False}
    assert new_card(before, {"A": True, "B": False, "C": True}, "") == "C"
    assert new_card(before, {"A": True, "B": False, "C": False}, "") is None
    assert new_card(before, {"A": True, "B": True}, "B") == "B"


@pcsc_mark
def test_ipa_command_line_works_with_reader_as_with_card(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    """``ipa --reader NAME`` runs the same commands as ``ipa --card DIR``."""
    import json

    from euicc_cli.ipa_command import main

    assert main(["--reader", served.reader, "eid"]) == 0
    assert capsys.readouterr().out.strip() == served.eid
    assert main(["--reader", served.reader, "--json", "profiles"]) == 0
    (profile,) = json.loads(capsys.readouterr().out)["data"]["profileInfoListOk"]
    assert profile["iccid"] == served.iccid
    assert main(["--reader", served.reader, "disable", served.iccid]) == 0
    assert main(["--reader", served.reader, "enable", served.iccid]) == 0
    assert main(["--reader", served.reader, "nickname", served.iccid, "via pcsc"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "disableResult: ok",
        "enableResult: ok",
        "setNicknameResult: ok",
    ]
    assert main(["--reader", served.reader, "--json", "info"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["eidValue"] == served.eid
    assert main(["--reader", served.reader, "--protocol", "T0", "--exclusive", "eid"]) == 0
    assert capsys.readouterr().out.strip() == served.eid
    # The emulated card's ATR offers T=0 only: asking for T=1 is refused, and said clearly.
    # Exit code 3: the card could not be reached as asked.
    assert main(["--reader", served.reader, "--protocol", "T1", "eid"]) == 3
    assert "offers none of the protocols asked for (T1)" in capsys.readouterr().err
    assert main(["--reader", "no such reader anywhere", "eid"]) == 3
    assert "no such reader anywhere" in capsys.readouterr().err
    assert main(["readers", "--json"]) == 0
    readers = json.loads(capsys.readouterr().out)["data"]["readers"]
    assert {"name": served.reader, "cardPresent": True} in readers


@pcsc_mark
def test_refresh_after_a_switch_resets_the_card_through_pcsc(
    served: Served, transport: PcscTransport
) -> None:
    """refreshFlag: the card answers 91xx, the ES10 channel FETCHes the REFRESH (UICC Reset),
    resets the card with SCardReconnect (vpcd passes the reset on) and opens again."""
    with Es10Client.open(transport) as client:
        client.disable_profile(iccid=served.iccid, refresh=True)
        assert client.channel.refresh_resets == 1 and not client.channel.reset_required
        assert client.get_profiles_info()[0].profile_state.asn1_name == "disabled"
        client.enable_profile(iccid=served.iccid, refresh=True)
        assert client.channel.refresh_resets == 2
        assert [(c.type, c.qualifier) for c in client.channel.proactive_commands] == [(1, 4)] * 2
        assert client.get_profiles_info()[0].profile_state.asn1_name == "enabled"
    raw = Raw(transport)
    assert raw.sw("80 12 00 00 0B") == "6985"  # nothing left pending


@pcsc_mark
def test_globalplatform_get_data_and_get_status_through_pcsc(
    served: Served, transport: PcscTransport
) -> None:
    """What a card shell sends to ISD-R and ECASD at start-up: GET DATA 66/E0, GET STATUS."""
    raw = Raw(transport)
    ecasd = h("A0000005591010FFFFFFFF8900000200")
    for aid in (ISD_R_AID, ecasd):
        assert raw.fetch(raw.send(h("00 A4 04 04 10") + aid + h("00")), 0x00)[1] == "9000"
        card_data, sw = raw.fetch(raw.send("80 CA 00 66 00"), 0x00)
        assert sw == "9000" and card_data[:1] == h("66")
        keys, sw = raw.fetch(raw.send("80 CA 00 E0 00"), 0x00)
        assert sw == "9000" and keys[:1] == h("E0")
        status, sw = raw.fetch(raw.send("80 F2 40 02 02 4F 00 00"), 0x00)
        assert sw == "9000" and status[:1] == h("E3")
    eid, sw = raw.fetch(raw.send("80 CA 00 5A 00"), 0x00)  # on the ECASD
    assert (eid, sw) == (h("5A 10") + h(served.eid), "9000")
