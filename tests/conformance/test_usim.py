"""UICC conformance: the enabled profile's file system, PINs and AKA through plain APDUs.

Written against a transport (the ES10 client's, on the basic channel, as a modem would use
it), so it runs on the emulator, through vpcd and on a card in a reader (``--reader``).
What the standards fix is checked on any card (ETSI TS 102 221 selection, FCP and status
words; 3GPP TS 31.102 AUTHENTICATE); tests that need to know the profile's secrets run only
when the enabled profile is a GSMA TS.48 test profile (its IMSI tells), and tests that may
change PIN counters or files need a backend that may be changed.
"""

from __future__ import annotations

import pytest
from backends import CardBackend, ProfileSpec
from usim_support import (
    PIN1,
    PIN2,
    TS48_IMSI_EF,
    TS48_K,
    Apdu,
    make_autn,
    parse_auth_success,
    resync_sqn,
)

from euicc_sim.uicc.testalg import TestAlgorithm
from ipa.types import ProfileState

USIM_RID_APP = bytes.fromhex("A0000000871002")  # 3GPP RID + USIM application code
RAND = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")


@pytest.fixture
def uicc(card: CardBackend) -> Apdu:
    """A card whose enabled profile shows its file system (after the reset that needs)."""
    card.provision([ProfileSpec(enabled=True)])
    client = card.power_cycle()
    return Apdu(client.channel.transport.transmit)


def fcp_tlvs(data: bytes) -> dict[int, bytes]:
    assert data and data[0] == 0x62, data.hex()
    out, pos = {}, 2
    while pos < len(data):
        out[data[pos]] = data[pos + 2 : pos + 2 + data[pos + 1]]
        pos += 2 + data[pos + 1]
    return out


def ef_dir_aids(apdu: Apdu) -> list[bytes]:
    assert apdu.select(0x00, b"\x2f\x00").sw == 0x9000
    aids, number = [], 1
    while (r := apdu.read_record(number)).sw == 0x9000:
        if r.data[:1] == b"\x61" and r.data[2] == 0x4F:
            aids.append(r.data[4 : 4 + r.data[3]])
        number += 1
    assert r.sw in (0x6A83, 0x6B00)  # past the last record
    return aids


def unlock_pin1(apdu: Apdu, *, ts48: bool) -> None:
    """Make PIN1 verified if needed, never risking a block: skip when that is unsafe."""
    status = apdu.verify(0x01, None)
    if status.sw == 0x9000:
        return
    if not ts48 or status.sw & 0xFFF0 != 0x63C0 or status.sw & 0x0F < 2:
        pytest.skip("PIN1 must be verified and its value is not known safely here")
    assert apdu.verify(0x01, PIN1).sw == 0x9000


def is_ts48(apdu: Apdu) -> bool:
    """Whether the enabled profile is a TS.48 test profile (by its IMSI, when readable)."""
    assert apdu.select(0x04, USIM_RID_APP, 0x0C).sw == 0x9000
    status = apdu.verify(0x01, None)
    if status.sw != 0x9000:
        if status.sw & 0xFFF0 != 0x63C0 or status.sw & 0x0F < 2:
            return False
        if apdu.verify(0x01, PIN1).sw != 0x9000:  # a TS.48 PIN1 is 0000
            return False
    return apdu.read_binary(0, 9, sfi=0x07).data == TS48_IMSI_EF


def test_mf_fcp_and_ef_dir_applications_are_selectable(uicc: Apdu) -> None:
    mf = uicc.select(0x00, b"\x3f\x00")
    assert mf.sw == 0x9000 and fcp_tlvs(mf.data)[0x83] == b"\x3f\x00"
    aids = ef_dir_aids(uicc)
    assert any(aid.startswith(USIM_RID_APP) for aid in aids)
    for aid in aids:
        selected = uicc.select(0x04, aid)
        assert selected.sw == 0x9000 and fcp_tlvs(selected.data)[0x84] == aid


def test_ef_iccid_is_the_enabled_profile(card: CardBackend, uicc: Apdu) -> None:
    infos = card.client().get_profiles_info()
    enabled = [p for p in infos if p.profile_state is ProfileState.ENABLED]
    assert len(enabled) == 1
    iccid = uicc.read_binary(0, 10, sfi=0x02)
    assert iccid.sw == 0x9000 and iccid.data == enabled[0].iccid_raw  # both EF.ICCID coding


def test_usim_by_partial_aid_has_fcp_with_pin_status(uicc: Apdu) -> None:
    selected = uicc.select(0x04, USIM_RID_APP)
    fcp = fcp_tlvs(selected.data)
    assert selected.sw == 0x9000 and fcp[0x84].startswith(USIM_RID_APP)
    assert fcp[0x82][0] & 0x38 == 0x38  # a DF
    assert fcp[0xC6][:2] == b"\x90\x01"  # PIN status template with PS_DO
    status = uicc.send(0xF2, 0x00, 0x00, le=0, proprietary=True)
    assert status.sw == 0x9000 and fcp_tlvs(status.data)[0x84] == fcp[0x84]


def test_status_words_of_selection_and_reading(uicc: Apdu) -> None:
    assert uicc.select(0x00, b"\x3f\x00", 0x0C).sw == 0x9000
    assert uicc.read_binary(0, 1).sw == 0x6986  # no current EF
    assert uicc.select(0x00, b"\x6f\xfe").sw == 0x6A82
    assert uicc.select(0x04, bytes.fromhex("A000000087100B")).sw == 0x6A82
    assert uicc.select(0x00, b"\x2f\x00", 0x0C).sw == 0x9000
    assert uicc.read_binary(0, 1).sw == 0x6981  # EF.DIR is a record file
    assert uicc.read_record(0xFF).sw == 0x6A83


def test_imsi_is_protected_by_pin1_or_readable(uicc: Apdu) -> None:
    assert uicc.select(0x04, USIM_RID_APP, 0x0C).sw == 0x9000
    status = uicc.verify(0x01, None)
    imsi = uicc.read_binary(0, 9, sfi=0x07)
    if status.sw == 0x9000:
        assert imsi.sw == 0x9000 and 1 <= imsi.data[0] <= 8
    else:
        assert status.sw & 0xFFF0 == 0x63C0 or status.sw == 0x6983
        assert imsi.sw == 0x6982


def test_authenticate_with_ts48_keys(uicc: Apdu) -> None:
    if not is_ts48(uicc):
        pytest.skip("needs a TS.48 test profile enabled (its Ki is public)")
    algo = TestAlgorithm(TS48_K)
    answer = uicc.authenticate(RAND, make_autn(algo, RAND, 32))
    assert answer.sw == 0x9000
    if answer.data[:1] == b"\xdc":  # the card has seen higher SQNs: resynchronise
        sqn_ms = resync_sqn(algo, RAND, answer.data[2:])
        answer = uicc.authenticate(RAND, make_autn(algo, RAND, sqn_ms + 32))
    res, ck, ik, _ = parse_auth_success(answer.data)
    out = algo.f2345(RAND)
    assert res == out.res[: len(res)] and ck == out.ck and ik == out.ik
    replay = uicc.authenticate(RAND, make_autn(algo, RAND, 32))
    assert replay.sw == 0x9000 and replay.data[:2] == b"\xdc\x0e"


def test_authenticate_with_a_wrong_mac_is_refused(uicc: Apdu) -> None:
    unlock_pin1(uicc, ts48=is_ts48(uicc))
    assert uicc.select(0x04, USIM_RID_APP, 0x0C).sw == 0x9000
    assert uicc.authenticate(RAND, bytes(16)).sw == 0x9862


@pytest.mark.modifies_card
def test_wrong_pin2_counts_down_and_the_right_one_restores(uicc: Apdu) -> None:
    if not is_ts48(uicc):
        pytest.skip("needs a TS.48 test profile enabled (its PIN2 is 9999)")
    start = uicc.verify(0x81, None).sw
    if start == 0x9000:
        pytest.skip("PIN2 is disabled or already verified")
    assert start & 0xFFF0 == 0x63C0 and start & 0x0F >= 2
    assert uicc.verify(0x81, b"0000\xff\xff\xff\xff").sw == start - 1
    assert uicc.verify(0x81, PIN2).sw == 0x9000
    assert uicc.verify(0x81, None).sw == 0x9000


@pytest.mark.modifies_card
@pytest.mark.persistence
def test_updated_file_survives_a_power_cycle(card: CardBackend, uicc: Apdu) -> None:
    if not is_ts48(uicc):
        pytest.skip("needs a TS.48 test profile enabled")
    assert uicc.select(0x00, b"\x6f\x7b", 0x0C).sw == 0x9000  # EF.FPLMN: PIN1 to update
    before = uicc.read_binary(0, 12).data
    forbidden = bytes.fromhex("00F110FFFFFFFFFFFFFFFFFF")
    assert uicc.send(0xD6, 0, 0, forbidden).sw == 0x9000
    again = Apdu(card.reopen().channel.transport.transmit)
    assert is_ts48(again)
    assert again.read_binary(0, 12, sfi=0x0D).data == forbidden
    assert again.send(0xD6, 0x8D, 0, before).sw == 0x9000  # restore (SFI 0D)
