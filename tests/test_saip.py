"""SAIP package reading: the nine TS.48 test profiles, and malformed packages."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from euicc_protocol.iccid import luhn_valid
from euicc_protocol.saip import SaipError, read_package

TS48 = Path(__file__).resolve().parent.parent / "profiles" / "ts48"

# file, bytes, SAIP version, ICCID digits, ICCID EF coding, number of PEs, mandatory services
BASE = ("usim", "isim", "csim", "usim-test-algorithm")
SAIP23 = ("get-identity", "profile-a-x25519", "profile-b-p256")
PROFILES = [
    ("TS48V1-A-UNIQUE", 11768, (2, 1), "8949449999999990023", "989444999999990920F3", 28,
     ("usim", "isim", "csim", "javacard", "usim-test-algorithm")),
    ("TS48V1-B-UNIQUE", 11785, (2, 1), "8949449999999990031", "989444999999990930F1", 29,
     ("usim", "isim", "csim", "javacard", "usim-test-algorithm")),
    ("TS48V3-SAIP2-1-BERTLV-UNIQUE", 12117, (2, 1), "8949449999999990064",
     "989444999999990960F4", 28, BASE + ("ber-tlv",)),
    ("TS48V3-SAIP2-1-NOBERTLV-UNIQUE", 12065, (2, 1), "8949449999999990072",
     "989444999999990970F2", 28, BASE),
    ("TS48V4-SAIP2-3-BERTLV-UNIQUE", 12180, (2, 3), "8949449999999990122",
     "989444999999990921F2", 30, BASE + ("ber-tlv",) + SAIP23),
    ("TS48V5-SAIP2-1A-NOBERTLV-UNIQUE", 12060, (2, 1), "8949449999999990148",
     "989444999999990941F8", 28, BASE),
    ("TS48V5-SAIP2-1B-NOBERTLV-UNIQUE", 12140, (2, 1), "8949449999999990155",
     "989444999999990951F5", 29, BASE),
    ("TS48V5-SAIP2-3-BERTLV-SUCI-UNIQUE", 12284, (2, 3), "8949449999999990163",
     "989444999999990961F3", 30, BASE + ("ber-tlv",) + SAIP23),
    ("TS48V5-SAIP2-3-NOBERTLV-UNIQUE", 12163, (2, 3), "8949449999999990171",
     "989444999999990971F1", 30, BASE + SAIP23),
]  # fmt: skip


@cache
def package_bytes(name: str) -> bytes:
    return (TS48 / f"{name}.der").read_bytes()


def test_all_nine_packages_are_shipped() -> None:
    assert sorted(p.stem for p in TS48.glob("*.der")) == sorted(p[0] for p in PROFILES)


@pytest.mark.parametrize(
    ("name", "size", "version", "iccid", "iccid_ef", "n_pes", "services"),
    PROFILES,
    ids=[p[0] for p in PROFILES],
)
def test_ts48_package(
    name: str,
    size: int,
    version: tuple[int, int],
    iccid: str,
    iccid_ef: str,
    n_pes: int,
    services: tuple[str, ...],
) -> None:
    data = package_bytes(name)
    pkg = read_package(data)
    assert pkg.size == len(data) == size
    assert (pkg.major_version, pkg.minor_version) == version
    assert pkg.profile_type == "GSMA Generic eUICC Test Profile"
    assert pkg.iccid == iccid and luhn_valid(iccid)
    assert pkg.iccid_ef == bytes.fromhex(iccid_ef)
    assert pkg.ef_iccid == pkg.iccid_ef  # MF EF.ICCID agrees with the header
    assert pkg.mandatory_services == services
    assert "2.23.143.1.2.1" in pkg.mandatory_gfste  # the MF template
    assert len(pkg.pes) == n_pes
    types = pkg.pe_types()
    assert types[0] == "header" and types[-1] == "end"
    assert types.count("akaParameter") == 2 and types.count("rfm") == 4
    assert b"".join(pe.raw for pe in pkg.pes) == data
    assert pkg.imsi == "001010123456063"
    assert pkg.usim_aid == bytes.fromhex("A0000000871002FF49FF0589")
    assert pkg.service_provider_name == "GSMA_TEST"


# --- malformed packages ---------------------------------------------------------------------

GOOD = "TS48V5-SAIP2-3-NOBERTLV-UNIQUE"


def _pes() -> list[bytes]:
    return [pe.raw for pe in read_package(package_bytes(GOOD)).pes]


def _error(data: bytes) -> SaipError:
    with pytest.raises(SaipError) as info:
        read_package(data)
    return info.value


def test_saip_error_is_a_value_error() -> None:
    assert issubclass(SaipError, ValueError)


def test_empty_package() -> None:
    assert "empty" in str(_error(b""))


@pytest.mark.parametrize("cut", [1, 2, 3, 100, 159, 160, 161, 5000, -1, -9])
def test_truncated_package(cut: int) -> None:
    data = package_bytes(GOOD)
    err = _error(data[:cut])
    assert err.offset is not None


def test_truncation_names_the_pe() -> None:
    pes = _pes()
    data = b"".join(pes[:5]) + pes[5][:-1]
    err = _error(data)
    assert err.pe_index == 5 or err.offset == len(b"".join(pes[:5]))
    assert "remain" in str(err)


def test_missing_header() -> None:
    err = _error(b"".join(_pes()[1:]))
    assert "not header" in str(err) and err.pe_index == 0 and err.offset == 0


def test_second_header() -> None:
    pes = _pes()
    err = _error(b"".join([pes[0], pes[1], pes[0], *pes[2:]]))
    assert "header PE after the first" in str(err) and err.pe_index == 2


def test_missing_end() -> None:
    assert "end PE" in str(_error(b"".join(_pes()[:-1])))


def test_data_after_end() -> None:
    pes = _pes()
    err = _error(b"".join(pes) + pes[1])
    assert "after the end" in str(err) and err.pe_index == len(pes)


def test_garbage_pe() -> None:
    pes = _pes()
    offset = len(b"".join(pes[:3]))
    err = _error(b"".join(pes[:3]) + b"\x30\x03\x02\x01\x00" + b"".join(pes[3:]))
    assert err.pe_index == 3 and err.offset == offset and "tag 30" in str(err)


def test_pe_with_broken_content() -> None:
    pes = _pes()
    broken = pes[2][:2] + b"\x04" + pes[2][3:]  # first inner tag A0 (PEHeader) -> 04
    err = _error(b"".join([*pes[:2], broken, *pes[3:]]))
    assert err.pe_index == 2


@pytest.mark.parametrize("tlv", ["BF7F00", "AB00"], ids=["unknown", "reserved"])
def test_unknown_or_reserved_pe(tlv: str) -> None:
    pes = _pes()
    err = _error(b"".join([*pes[:3], bytes.fromhex(tlv), *pes[3:]]))
    assert err.pe_index == 3 and ("BF7F" in str(err) or "rfu1" in str(err))


def test_indefinite_length_is_refused() -> None:
    pes = _pes()
    assert "indefinite" in str(_error(pes[0] + b"\xb0\x80" + b"".join(pes[1:])))


def test_header_iccid_must_be_bcd() -> None:
    pes = _pes()
    header = pes[0]
    i = header.index(bytes.fromhex("830A")) + 2
    bad = header[:i] + bytes.fromhex("8949449999999990171A") + header[i + 10 :]
    err = _error(b"".join([bad, *pes[1:]]))
    assert "ICCID" in str(err) and err.pe_index == 0


@given(
    st.lists(
        st.tuples(st.integers(0, 12_162), st.integers(0, 255), st.sampled_from(["set", "cut"])),
        min_size=1,
        max_size=3,
    )
)
@settings(max_examples=120, deadline=None)
def test_damaged_packages_raise_only_saip_error(edits: list[tuple[int, int, str]]) -> None:
    data = bytearray(package_bytes(GOOD))
    for pos, value, kind in edits:
        pos %= len(data)
        if kind == "set":
            data[pos] = value
        else:
            del data[pos:]
            break
    try:
        read_package(bytes(data))
    except SaipError:
        pass
