"""The card is the strictest party on the wire: what the strict decoder refuses gets ``6A80``
(never ``6F00``), and a spliced eUICC package never runs.

The splices of issue 9: ``BF51 { 30 <forged>, 5F37 <x>, 30 <genuine>, 5F37 <sig> }`` in both
orders, with a genuine package of another device, bytes after the signature, and a second
psmoList inside correctly signed data. Each is refused with 6A80 and leaves every file of the
card directory byte-identical.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_euicc_package import (
    ICCID_A,
    ICCID_B,
    OTHER_EID,
    TestEim,
    add_initial_eim,
    enabled,
    new_card,
    preload_profiles,
    results,
    send,
)

from euicc_protocol import schema, tlv
from euicc_protocol.crypto import Curve
from euicc_protocol.testpki import generate_test_pki
from euicc_sim.card import Euicc
from ipa.errors import StatusWordError


def files(path: Path) -> dict[str, bytes]:
    """Every file of a card directory, by relative path, with its bytes."""
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def refused(card: Euicc, path: Path, request: bytes) -> None:
    """``request`` gets 6A80 and changes no byte of the card directory."""
    before = files(path)
    state = card.state
    with pytest.raises(StatusWordError) as caught:
        send(card, request)
    assert caught.value.sw == 0x6A80
    assert files(path) == before
    assert card.state is state


@pytest.fixture
def associated(tmp_path: Path) -> tuple[Euicc, Path, TestEim]:
    path = tmp_path / "card"
    card = new_card(path)
    eim = TestEim()
    add_initial_eim(card, eim)
    return card, path, eim


def _parts(package: bytes) -> tuple[bytes, bytes]:
    """(euiccPackageSigned TLV, eimSignature TLV) of a ``BF51``."""
    outer = tlv.read_tlv(package)
    signed, signature = tlv.iter_tlvs(package, outer.value_start, outer.value_end)
    return package[signed.value_start - 2 : signed.end], package[signature.value_start - 3 :]


def _splice(*parts: bytes) -> bytes:
    return tlv.encode_tlv(b"\xbf\x51", b"".join(parts))


# --- the signed-package splice ------------------------------------------------------------------


@pytest.mark.parametrize("order", ["forged first", "genuine first"])
def test_a_spliced_package_is_refused_and_runs_nothing(
    associated: tuple[Euicc, Path, TestEim], order: str
) -> None:
    card, path, eim = associated
    eid = bytes.fromhex(card.eid)
    genuine = eim.package(eid, [("getRAT", {})], counter=5)
    forged = eim.package(eid, [("enable", {"iccid": ICCID_B})], counter=6, key=eim.key)
    forged_signed, _ = _parts(forged)
    forged_pair = forged_signed + tlv.encode_tlv(b"\x5f\x37", b"\x00" * 64)
    genuine_pair = b"".join(_parts(genuine))
    pairs = [forged_pair, genuine_pair] if order == "forged first" else [genuine_pair, forged_pair]
    refused(card, path, _splice(*pairs))
    assert enabled(card) == ICCID_A


def test_a_splice_with_a_genuine_package_of_another_device_is_refused(
    associated: tuple[Euicc, Path, TestEim],
) -> None:
    card, path, eim = associated
    other_device = eim.package(OTHER_EID, [("getRAT", {})], counter=7)
    forged = eim.package(bytes.fromhex(card.eid), [("delete", {"iccid": ICCID_B})], counter=8)
    forged_signed, _ = _parts(forged)
    refused(
        card,
        path,
        _splice(forged_signed, tlv.encode_tlv(b"\x5f\x37", b"\x01" * 64), *_parts(other_device)),
    )
    assert card.state.profile_by_iccid(ICCID_B) is not None


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p + b"\x00",  # a byte after the request
        lambda p: p + b"\x5f\x37\x00",  # a third TLV after the request
        lambda p: _splice(*_parts(p), b"\x5f"),  # a broken TLV after the signature
        lambda p: _splice(*_parts(p), _parts(p)[1]),  # the signature twice
    ],
    ids=["trailing byte", "trailing TLV", "broken TLV after the signature", "signature twice"],
)
def test_bytes_after_the_signature_are_refused(
    associated: tuple[Euicc, Path, TestEim], damage: Any
) -> None:
    card, path, eim = associated
    package = eim.package(bytes.fromhex(card.eid), [("enable", {"iccid": ICCID_B})], counter=3)
    refused(card, path, damage(package))
    assert results(card, send(card, package), eim) == [("enableResult", 0)]  # still good


@pytest.mark.parametrize("second", ["psmoList", "ecoList"])
def test_a_second_package_list_inside_correctly_signed_data_is_refused(
    associated: tuple[Euicc, Path, TestEim], second: str
) -> None:
    """The eIM signed these bytes: only the strict decoder stands between them and a card
    that would run the first list and ignore the second (or the reverse)."""
    card, path, eim = associated
    eid = bytes.fromhex(card.eid)
    signed = schema.encode(
        "EuiccPackageSigned",
        {
            "eimId": eim.eim_id,
            "eidValue": eid,
            "counterValue": 4,
            "euiccPackage": ("psmoList", [("getRAT", {})]),
        },
    )
    extra = schema.encode(
        "EuiccPackage",
        (second, [("enable", {"iccid": ICCID_B})] if second == "psmoList" else [("listEim", {})]),
    )
    outer = tlv.read_tlv(signed)
    doubled = tlv.encode_tlv(b"\x30", signed[outer.value_start :] + extra)
    refused(card, path, eim.sign(doubled))
    assert enabled(card) == ICCID_A


# --- every class of undecodable ES10 request is 6A80 --------------------------------------------


def _authenticate_server(transaction_id: bytes) -> bytes:
    pki = generate_test_pki(Curve.NIST_P256)
    return schema.encode(
        "AuthenticateServerRequest",
        {
            "serverSigned1": {
                "transactionId": transaction_id,
                "euiccChallenge": bytes(16),
                "serverAddress": "smdp.example",
                "serverChallenge": bytes(16),
            },
            "serverSignature1": bytes(64),
            "euiccCiPKIdToBeUsed": pki.ci_ski,
            "serverCertificate": schema.decode("Certificate", pki.dp_auth.cert_der),
            "ctxParams1": (
                "ctxParamsForCommonAuthentication",
                {"deviceInfo": {"tac": b"\x35\x29\x06\x11", "deviceCapabilities": {}}},
            ),
        },
    )


ES10_REFUSALS = {
    "trailing bytes": "BF2E00" + "00",
    "duplicate field": "BF3E06" + "5C015A" + "5C015A",
    "child past parent": "BF3E03" + "5C055A" + "00000000",
    "missing unused-bits octet": "BF3403" + "820120",
    "unused bits above 7": "BF3404" + "82020820",
    "indefinite length": "BF3E80" + "5C015A" + "0000",
    "non-minimal length": "BF3E8103" + "5C015A",
    "SIZE of tagList": "BF3E04" + "5C025A5A",
    "INTEGER not minimal": "BF3004" + "80020001",
}


@pytest.mark.parametrize("request_hex", list(ES10_REFUSALS.values()), ids=list(ES10_REFUSALS))
def test_an_undecodable_es10_request_is_6a80(tmp_path: Path, request_hex: str) -> None:
    path = tmp_path / "card"
    # BF34 is the SGP.22 memory reset: a consumer card's function (an IoT card answers 6A88).
    kind = "consumer" if request_hex.startswith("BF34") else "iot"
    card = preload_profiles(Euicc.create(path, fsync=False, kind=kind))
    refused(card, path, bytes.fromhex(request_hex))


@pytest.mark.parametrize("size", [0, 17, 64])
def test_an_authenticate_server_transaction_id_outside_1_to_16_bytes_is_6a80(
    tmp_path: Path, size: int
) -> None:
    path = tmp_path / "card"
    card = new_card(path)
    refused(card, path, _authenticate_server(bytes(range(size))))


@pytest.mark.parametrize("size", [1, 16])
def test_an_authenticate_server_transaction_id_of_1_to_16_bytes_decodes(
    tmp_path: Path, size: int
) -> None:
    card = new_card(tmp_path / "card")
    answer = send(card, _authenticate_server(bytes(size)))
    kind, value = schema.decode("SGP32-AuthenticateServerResponse", answer)
    assert (kind, value["authenticateErrorCode"]) == ("authenticateResponseError", 4)
