"""The enabled profile's UICC side through the card's APDU interface (euicc_sim.uicc.uicc)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from usim_support import (
    ADM1,
    PIN1,
    PUK1,
    TS48_IMSI_EF,
    TS48_ISIM_AID,
    TS48_K,
    TS48_USIM_AID,
    Apdu,
    make_autn,
    parse_auth_success,
    resync_sqn,
)

from euicc_protocol import schema
from euicc_sim import profiles as rules
from euicc_sim.card import Euicc
from euicc_sim.storage import CrashingIO, DirectoryStorage, SimulatedCrash
from euicc_sim.uicc.aka import c3
from euicc_sim.uicc.milenage import Milenage
from euicc_sim.uicc.testalg import TestAlgorithm
from euicc_sim.uicc.tuak import Tuak

TS48 = sorted((Path(__file__).resolve().parents[1] / "profiles" / "ts48").glob("*.der"))
RAND = bytes.fromhex("b5039c57e4a75051551d1a390a71ce48")


def tlvs(data: bytes) -> dict[int, bytes]:
    """The one-byte-tag TLVs inside an FCP template."""
    assert data[0] == 0x62 and data[1] == len(data) - 2
    out, pos = {}, 2
    while pos < len(data):
        tag, n = data[pos], data[pos + 1]
        out[tag] = data[pos + 2 : pos + 2 + n]
        pos += 2 + n
    return out


def new_card(*packages: bytes, enable: int | None = 0, directory: Path | None = None) -> Euicc:
    card = Euicc.create(directory, fsync=False)
    for i, package in enumerate(packages):
        card.preload(package, enable=i == enable)
    card.reset()
    return card


@pytest.fixture
def card() -> Euicc:
    return new_card(TS48[-1].read_bytes())


@pytest.fixture
def apdu(card: Euicc) -> Apdu:
    return Apdu(card.transmit)


def select_usim(apdu: Apdu) -> None:
    assert apdu.select(0x04, TS48_USIM_AID, 0x0C).sw == 0x9000


# -- no profile ------------------------------------------------------------------------------


def test_without_enabled_profile_only_mf_and_empty_ef_dir() -> None:
    apdu = Apdu(Euicc.create(None, fsync=False).transmit)
    mf = apdu.select(0x00, b"\x3f\x00")
    assert mf.sw == 0x9000 and tlvs(mf.data)[0x83] == b"\x3f\x00"
    assert apdu.select(0x00, b"\x2f\x00").sw == 0x9000
    assert apdu.read_record(1).data == b"\xff" * 32
    assert apdu.select(0x00, b"\x2f\xe2").sw == 0x6A82
    assert apdu.select(0x04, TS48_USIM_AID).sw == 0x6A82


# -- selection and FCP -------------------------------------------------------------------------


def test_ef_dir_lists_the_profile_applications(apdu: Apdu) -> None:
    assert apdu.select(0x00, b"\x2f\x00").sw == 0x9000
    aids = []
    number = 1
    while (r := apdu.read_record(number)).sw == 0x9000:
        if r.data[0] == 0x61:
            aids.append(r.data[4 : 4 + r.data[3]])
        number += 1
    assert r.sw == 0x6A83
    assert TS48_USIM_AID in aids and TS48_ISIM_AID in aids


def test_select_adf_by_full_and_partial_aid_returns_fcp(apdu: Apdu) -> None:
    full = apdu.select(0x04, TS48_USIM_AID)
    partial = apdu.select(0x04, TS48_USIM_AID[:7])
    assert full.sw == partial.sw == 0x9000 and full.data == partial.data
    fcp = tlvs(full.data)
    assert fcp[0x82] == b"\x78\x21" and fcp[0x84] == TS48_USIM_AID
    assert fcp[0x8A] == b"\x05" and fcp[0x8B][:2] == b"\x2f\x06"
    assert fcp[0xC6][:2] == b"\x90\x01" and b"\x83\x01\x01" in fcp[0xC6]
    assert int.from_bytes(fcp[0x81], "big") > 0


def test_select_next_occurrence_of_a_partial_aid(apdu: Apdu) -> None:
    first = apdu.select(0x04, bytes.fromhex("A000000087"))
    assert tlvs(first.data)[0x84] == TS48_USIM_AID
    nxt = apdu.select(0x04, bytes.fromhex("A000000087"), 0x06)
    assert tlvs(nxt.data)[0x84] == TS48_ISIM_AID
    assert apdu.select(0x04, bytes.fromhex("A000000087"), 0x06).sw == 0x6A82


def test_select_ef_fcp_has_size_and_sfi(apdu: Apdu) -> None:
    select_usim(apdu)
    fcp = tlvs(apdu.select(0x00, b"\x6f\x07").data)
    assert fcp[0x82] == b"\x41\x21" and fcp[0x83] == b"\x6f\x07"
    assert fcp[0x80] == b"\x00\x09" and fcp[0x88] == bytes((0x07 << 3,))
    record_file = tlvs(apdu.select(0x00, b"\x6f\x06").data)
    assert record_file[0x82][0] == 0x42 and len(record_file[0x82]) == 5


def test_select_by_path_current_adf_and_parent(apdu: Apdu) -> None:
    select_usim(apdu)
    assert apdu.select(0x08, bytes.fromhex("7FFF6F07"), 0x0C).sw == 0x9000
    assert apdu.read_binary(0, 9).sw == 0x6982  # selected: it needs PIN1
    assert apdu.select(0x08, bytes.fromhex("7F105F3A"), 0x0C).sw == 0x9000
    assert apdu.select(0x09, bytes.fromhex("4F30"), 0x0C).sw == 0x9000
    assert apdu.select(0x00, b"\x7f\x10", 0x0C).sw == 0x9000  # the parent of the current DF
    assert apdu.select(0x08, bytes.fromhex("7F20"), 0x0C).sw == 0x6A82
    assert apdu.select(0x01, b"\x7f\x10").sw == 0x6A86
    assert apdu.select(0x00, b"\x7f").sw == 0x6700


def test_select_without_response_data_and_status(apdu: Apdu) -> None:
    select_usim(apdu)
    status = apdu.send(0xF2, 0x00, 0x00, le=0, proprietary=True)
    assert status.sw == 0x9000 and tlvs(status.data)[0x84] == TS48_USIM_AID
    name = apdu.send(0xF2, 0x00, 0x01, le=0, proprietary=True)
    assert name.data == b"\x84\x0c" + TS48_USIM_AID
    assert apdu.send(0xF2, 0x00, 0x00, le=0).sw == 0x6E00  # STATUS is a proprietary class


# -- reading and updating --------------------------------------------------------------------------


def test_ef_iccid_reads_the_enabled_profile_iccid(card: Euicc, apdu: Apdu) -> None:
    assert apdu.read_binary(0, 10, sfi=0x02).data == card.state.enabled_profile.iccid  # type: ignore[union-attr]


def test_imsi_needs_pin1_then_reads(apdu: Apdu) -> None:
    select_usim(apdu)
    assert apdu.read_binary(0, 9, sfi=0x07).sw == 0x6982
    assert apdu.verify(0x01, PIN1).sw == 0x9000
    assert apdu.read_binary(0, 9, sfi=0x07).data == TS48_IMSI_EF
    assert apdu.read_binary(9, 1).sw == 0x6B00  # offset beyond the end


def test_update_binary_needs_adm_and_stays_across_reset_and_profile_switch() -> None:
    card = new_card(TS48[-1].read_bytes(), TS48[0].read_bytes())
    apdu = Apdu(card.transmit)
    select_usim(apdu)
    new_imsi = bytes.fromhex("080910101032547698")
    assert apdu.select(0x00, b"\x6f\x07", 0x0C).sw == 0x9000
    assert apdu.send(0xD6, 0, 0, new_imsi).sw == 0x6982
    assert apdu.verify(0x0A, ADM1).sw == 0x9000
    assert apdu.verify(0x01, PIN1).sw == 0x9000
    assert apdu.send(0xD6, 0, 0, new_imsi).sw == 0x9000
    assert apdu.read_binary(0, 9).data == new_imsi
    first, second = card.state.profiles
    card.reset()
    select_usim(apdu)
    apdu.verify(0x01, PIN1)
    assert apdu.read_binary(0, 9, sfi=0x07).data == new_imsi
    # Switch to the other profile: its file system shows after the reset only.

    t = rules.enable(card.state, iccid=second.iccid, actor=rules.Actor.EIM)
    card.context.commit(t.state)
    assert apdu.read_binary(0, 10, sfi=0x07).data == new_imsi  # still the old profile
    card.reset()
    select_usim(apdu)
    apdu.verify(0x01, PIN1)
    assert apdu.read_binary(0, 9, sfi=0x07).data == TS48_IMSI_EF
    t = rules.enable(card.state, iccid=first.iccid, actor=rules.Actor.EIM)
    card.context.commit(t.state)
    card.reset()
    select_usim(apdu)
    apdu.verify(0x01, PIN1)
    assert apdu.read_binary(0, 9, sfi=0x07).data == new_imsi


def test_update_binary_checks_bounds_and_structure(apdu: Apdu) -> None:
    select_usim(apdu)
    apdu.verify(0x0A, ADM1)
    apdu.verify(0x01, PIN1)
    assert apdu.select(0x00, b"\x6f\x07", 0x0C).sw == 0x9000
    assert apdu.send(0xD6, 0, 8, b"\x01\x02").sw == 0x6700
    assert apdu.send(0xD6, 0, 9, b"\x01").sw == 0x6B00
    assert apdu.select(0x00, b"\x6f\x06", 0x0C).sw == 0x9000
    assert apdu.read_binary(0, 1).sw == 0x6981


def test_read_record_modes_and_wrong_le(apdu: Apdu) -> None:
    assert apdu.select(0x00, b"\x2f\x00", 0x0C).sw == 0x9000
    first = apdu.read_record(1).data
    length = len(first)
    assert apdu.read_record(0, 0x02).data == first  # next from no current record: first
    second = apdu.read_record(0, 0x02).data
    assert apdu.read_record(0, 0x04).data == second  # current
    assert apdu.read_record(0, 0x03).data == first  # previous
    assert apdu.read_record(0, 0x03).sw == 0x6A83
    assert apdu.read_record(1, le=length - 1).sw == 0x6C00 | length
    assert apdu.read_record(1, 0x05).sw == 0x6A86


def test_update_record_and_search_record(apdu: Apdu) -> None:
    select_usim(apdu)
    apdu.verify(0x01, PIN1)
    apdu.verify(0x81, b"9999\xff\xff\xff\xff")
    assert apdu.select(0x00, b"\x6f\x3b", 0x0C).sw == 0x9000  # EF.FDN: update needs PIN2
    length = len(apdu.read_record(1).data)
    entry = b"TEST" + b"\xff" * (length - 4)
    assert apdu.send(0xDC, 2, 0x04, entry).sw == 0x9000
    assert apdu.send(0xDC, 2, 0x04, entry[:-1]).sw == 0x6700
    assert apdu.read_record(2).data == entry
    found = apdu.send(0xA2, 1, 0x04, b"TEST")
    assert found.sw == 0x9000 and found.data == b"\x02"
    assert apdu.send(0xA2, 1, 0x04, b"NOPE").sw == 0x6A83


def test_cyclic_update_writes_the_oldest_record_as_record_one(apdu: Apdu) -> None:
    select_usim(apdu)
    apdu.verify(0x01, PIN1)
    apdu.verify(0x0A, ADM1)
    apdu.verify(0x81, b"9999\xff\xff\xff\xff")
    assert apdu.select(0x00, b"\x6f\x39", 0x0C).sw == 0x9000  # EF.ACM, cyclic
    records = []
    for value in (b"\x00\x00\x01", b"\x00\x00\x02"):
        assert apdu.send(0xDC, 0, 0x03, value).sw == 0x9000
        records.append(value)
    assert apdu.read_record(1).data == b"\x00\x00\x02"
    assert apdu.read_record(2).data == b"\x00\x00\x01"
    assert apdu.send(0xDC, 1, 0x04, b"\x00\x00\x03").sw == 0x6981


# -- PINs -------------------------------------------------------------------------------------


def test_pin_counter_survives_reset_and_blocks(card: Euicc, apdu: Apdu) -> None:
    wrong = b"1111\xff\xff\xff\xff"
    assert apdu.verify(0x01, wrong).sw == 0x63C2
    card.reset()
    assert apdu.verify(0x01, None).sw == 0x63C2
    assert apdu.verify(0x01, wrong).sw == 0x63C1
    assert apdu.verify(0x01, wrong).sw == 0x63C0
    assert apdu.verify(0x01, PIN1).sw == 0x6983
    assert apdu.send(0x2C, 0, 0x01).sw == 0x63CA  # PUK retries
    new_pin = b"4321\xff\xff\xff\xff"
    assert apdu.send(0x2C, 0, 0x01, PUK1 + new_pin).sw == 0x9000
    assert apdu.verify(0x01, None).sw == 0x9000  # verified by the unblock
    card.reset()
    assert apdu.verify(0x01, new_pin).sw == 0x9000


def test_disable_pin1_opens_the_imsi_without_verification(card: Euicc, apdu: Apdu) -> None:
    assert apdu.send(0x26, 0, 0x01, PIN1).sw == 0x9000
    card.reset()
    select_usim(apdu)
    assert apdu.read_binary(0, 9, sfi=0x07).data == TS48_IMSI_EF
    fcp = tlvs(apdu.select(0x04, TS48_USIM_AID).data)
    assert fcp[0xC6][2] & 0x40 == 0  # PIN1 (second key reference) shown disabled
    assert apdu.send(0x28, 0, 0x01, PIN1).sw == 0x9000
    card.reset()
    select_usim(apdu)
    assert apdu.read_binary(0, 9, sfi=0x07).sw == 0x6982


def test_change_pin_and_pin_command_errors(card: Euicc, apdu: Apdu) -> None:
    new_pin = b"2468\xff\xff\xff\xff"
    assert apdu.send(0x24, 0, 0x01, PIN1 + new_pin).sw == 0x9000
    card.reset()
    assert apdu.verify(0x01, PIN1).sw == 0x63C2
    assert apdu.verify(0x01, new_pin).sw == 0x9000
    assert apdu.verify(0x01, b"12").sw == 0x6700
    assert apdu.verify(0x03, PIN1).sw == 0x6A88  # no such PIN in this profile
    assert apdu.verify(0x81, PIN1).sw == 0x6A88  # a local PIN outside any ADF
    assert apdu.send(0x20, 0x01, 0x01, PIN1).sw == 0x6A86
    assert apdu.send(0x26, 0, 0x0A, ADM1).sw == 0x6985  # ADM cannot be disabled


# -- channels ---------------------------------------------------------------------------------


def test_each_logical_channel_has_its_own_selection(card: Euicc, apdu: Apdu) -> None:
    select_usim(apdu)
    apdu.verify(0x01, PIN1)
    assert apdu.select(0x00, b"\x6f\x07", 0x0C).sw == 0x9000
    assert card.transmit(bytes.fromhex("0070000001")) == bytes.fromhex("019000")
    other = Apdu(card.transmit, channel=1)
    assert other.select(0x00, b"\x2f\xe2", 0x0C).sw == 0x9000
    assert len(other.read_binary(0, 10).data) == 10
    assert apdu.read_binary(0, 9).data == TS48_IMSI_EF  # channel 0 still on EF.IMSI
    assert tlvs(other.send(0xF2, 0, 0, le=0, proprietary=True).data)[0x83] == b"\x3f\x00"
    assert tlvs(apdu.send(0xF2, 0, 0, le=0, proprietary=True).data)[0x84] == TS48_USIM_AID


# -- AUTHENTICATE -------------------------------------------------------------------------------


def test_authenticate_test_algorithm_round_trip_and_resync(apdu: Apdu) -> None:
    algo = TestAlgorithm(TS48_K)
    select_usim(apdu)
    assert apdu.authenticate(RAND, make_autn(algo, RAND, 32)).sw == 0x6982  # PIN1 first
    apdu.verify(0x01, PIN1)
    ok = apdu.authenticate(RAND, make_autn(algo, RAND, 32))
    assert ok.sw == 0x9000
    res, ck, ik, kc = parse_auth_success(ok.data)
    expected = algo.f2345(RAND)
    assert (res, ck, ik) == (expected.res, expected.ck, expected.ik) and len(res) == 8
    assert kc == c3(ck, ik)  # the TS.48 USIM offers GSM access (service n°27)
    stale = apdu.authenticate(RAND, make_autn(algo, RAND, 32))
    assert stale.sw == 0x9000 and stale.data[:2] == b"\xdc\x0e"
    assert resync_sqn(algo, RAND, stale.data[2:]) == 32
    assert apdu.authenticate(RAND, make_autn(algo, RAND, 64)).sw == 0x9000
    bad = bytearray(make_autn(algo, RAND, 96))
    bad[-1] ^= 1
    assert apdu.authenticate(RAND, bytes(bad)).sw == 0x9862


def test_authenticate_gsm_context_and_isim(apdu: Apdu) -> None:
    algo = TestAlgorithm(TS48_K)
    select_usim(apdu)
    apdu.verify(0x01, PIN1)
    gsm = apdu.authenticate(RAND, None, p2=0x80)
    out = algo.f2345(RAND)
    assert gsm.sw == 0x9000 and gsm.data == b"\x04" + gsm.data[1:5] + b"\x08" + c3(out.ck, out.ik)
    assert apdu.select(0x04, TS48_ISIM_AID, 0x0C).sw == 0x9000
    assert apdu.authenticate(RAND, None, p2=0x80).sw == 0x6A86  # no GSM context in the ISIM
    ims = apdu.authenticate(RAND, make_autn(algo, RAND, 32))
    res, ck, ik, kc = parse_auth_success(ims.data)
    assert (res, ck, ik, kc) == (out.res, out.ck, out.ik, None)


def test_authenticate_errors(apdu: Apdu) -> None:
    assert apdu.authenticate(RAND, bytes(16)).sw == 0x6985  # no application selected
    select_usim(apdu)
    apdu.verify(0x01, PIN1)
    assert apdu.send(0x88, 0, 0x81, b"\x10" + RAND).sw == 0x6700
    assert apdu.send(0x88, 0, 0x81, b"\x11" + RAND + b"\x10" + bytes(16)).sw == 0x6A80
    assert apdu.send(0x88, 0, 0x82, b"\x10" + RAND + b"\x10" + bytes(16)).sw == 0x6A86


def _with_aka(package: bytes, algorithm: int, key: bytes, opc: bytes) -> bytes:
    """The package with every akaParameter switched to another algorithm (re-encoded)."""
    spec = schema.spec()
    out, pos = b"", 0
    while pos < len(package):
        (name, value), used = spec.decode_with_length("ProfileElement", package[pos:])
        if name == "akaParameter":
            kind, algo = value["algoConfiguration"]
            algo = dict(algo, algorithmID=algorithm, key=key, opc=opc)
            value = dict(value, algoConfiguration=(kind, algo))
            out += spec.encode("ProfileElement", (name, value))
        else:
            out += package[pos : pos + used]
        pos += used
    return out


def test_authenticate_with_a_ts48_package_switched_to_milenage() -> None:
    k = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")
    opc = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")
    card = new_card(_with_aka(TS48[-1].read_bytes(), 1, k, opc))
    apdu = Apdu(card.transmit)
    select_usim(apdu)
    apdu.verify(0x01, PIN1)
    algo = Milenage(k, opc)
    rand = bytes.fromhex("23553cbe9637a89d218ae64dae47bf35")
    res, ck, ik, _ = parse_auth_success(apdu.authenticate(rand, make_autn(algo, rand, 32)).data)
    assert (res, ck, ik) == (
        bytes.fromhex("a54211d5e3ba50bf"),
        bytes.fromhex("b40ba9a3c58b2a05bbf0d987b21bf8cb"),
        bytes.fromhex("f769bcd751044604127672711c6d3441"),
    )
    stale = apdu.authenticate(rand, make_autn(algo, rand, 32))
    assert stale.data[:2] == b"\xdc\x0e" and resync_sqn(algo, rand, stale.data[2:]) == 32


def test_authenticate_with_a_ts48_package_switched_to_tuak() -> None:
    k = bytes.fromhex("abababababababababababababababab")
    topc = bytes.fromhex("bd04d9530e87513c5d837ac2ad954623a8e2330c115305a73eb45d1f40cccbff")
    card = new_card(_with_aka(TS48[-1].read_bytes(), 2, k, topc))
    apdu = Apdu(card.transmit)
    select_usim(apdu)
    apdu.verify(0x01, PIN1)
    algo = Tuak(k, topc)
    res, ck, ik, _ = parse_auth_success(apdu.authenticate(RAND, make_autn(algo, RAND, 64)).data)
    out = algo.f2345(RAND)
    assert (res, ck, ik) == (out.res, out.ck, out.ik)


# -- persistence -------------------------------------------------------------------------------


def test_a_failed_save_changes_nothing(
    card: Euicc, apdu: Apdu, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(data: bytes) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(card.storage, "put_blob", broken)
    assert apdu.verify(0x01, b"1111\xff\xff\xff\xff").sw == 0x6581
    monkeypatch.undo()
    assert apdu.verify(0x01, None).sw == 0x63C3


def test_update_is_crash_safe(tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    new_card(TS48[-1].read_bytes(), directory=origin).close()
    commands = [bytes.fromhex("00A4040C07A0000000871002"), b"\x00\x20\x00\x0a\x08" + ADM1,
                b"\x00\x20\x00\x01\x08" + PIN1, bytes.fromhex("00A4000C026F07")]  # fmt: skip
    update = bytes.fromhex("00D6000009080910101032547698")

    def run(io: CrashingIO, where: Path) -> None:
        with Euicc(DirectoryStorage(where, fsync=False, io=io)) as card:  # closed: power off
            for c in commands:
                card.transmit(c)
            card.transmit(update)

    counter = CrashingIO()
    shutil.copytree(origin, tmp_path / "count")
    run(counter, tmp_path / "count")
    counted = counter.count
    assert counted > 0
    seen = []
    for k in range(counted + 1):
        where = tmp_path / f"crash{k}"
        shutil.copytree(origin, where)
        try:
            run(CrashingIO(k if k < counted else None), where)
        except SimulatedCrash:
            pass
        card = Euicc.open(where, fsync=False)
        apdu = Apdu(card.transmit)
        select_usim(apdu)
        apdu.verify(0x01, PIN1)
        seen.append(apdu.read_binary(0, 9, sfi=0x07).data)
    assert set(seen) <= {TS48_IMSI_EF, bytes.fromhex("080910101032547698")}
    assert seen[0] == TS48_IMSI_EF and seen[-1] != TS48_IMSI_EF
    first_new = seen.index(seen[-1])
    assert all(s == seen[-1] for s in seen[first_new:])  # one commit point


_FUZZ_CARD: list[Euicc] = []


@settings(max_examples=300, deadline=None)
@given(
    cla=st.sampled_from([0x00, 0x01, 0x40, 0x80, 0x81]),
    ins=st.sampled_from(
        [0xA4, 0xB0, 0xD6, 0xB2, 0xDC, 0xA2, 0xF2, 0x20, 0x24, 0x26, 0x28, 0x2C, 0x88]
    ),
    p1=st.integers(0, 255),
    p2=st.integers(0, 255),
    data=st.binary(max_size=40),
    le=st.one_of(st.none(), st.integers(0, 255)),
)
def test_malformed_uicc_commands_get_a_status_word_never_6f00(
    cla: int, ins: int, p1: int, p2: int, data: bytes, le: int | None
) -> None:
    if not _FUZZ_CARD:
        _FUZZ_CARD.append(new_card(TS48[-1].read_bytes()))
        Apdu(_FUZZ_CARD[0].transmit).select(0x04, TS48_USIM_AID, 0x0C)
    apdu = bytes((cla, ins, p1, p2))
    if data:
        apdu += bytes((len(data),)) + data
    if le is not None:
        apdu += bytes((le,))
    response = _FUZZ_CARD[0].transmit(apdu)
    assert len(response) >= 2 and response[-2:] != b"\x6f\x00"


def test_damaged_stored_state_falls_back_to_the_package(card: Euicc) -> None:
    apdu = Apdu(card.transmit)
    assert apdu.verify(0x01, b"1111\xff\xff\xff\xff").sw == 0x63C2
    profile = card.state.enabled_profile
    assert profile is not None and profile.uicc_digest is not None
    digest = card.storage.put_blob(b'{"format": 99}')
    state = card.state
    damaged = tuple(
        replace(p, uicc_digest=digest) if p.iccid == profile.iccid else p for p in state.profiles
    )
    card.context.commit(replace(state, profiles=damaged))
    card.reset()
    assert apdu.verify(0x01, None).sw == 0x63C3  # counters as the package sets them
