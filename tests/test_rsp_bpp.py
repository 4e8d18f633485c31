"""euicc_protocol.bpp: the SM-DP+ side builds BPPs the conformant vector describes, and the LPA
side cuts
any BPP into the exact LoadBoundProfilePackage payloads (SGP.22 v2.5 §5.7.6)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from euicc_protocol import bpp, crypto, schema, scp03t, tlv
from euicc_protocol.crypto import Curve
from euicc_protocol.testpki import load_sgp26

ROOT = Path(__file__).resolve().parent.parent
TS48 = ROOT / "profiles" / "ts48"
VECTOR = json.loads((Path(__file__).parent / "data" / "bpp_conformant_nist.json").read_text())
EID = bytes.fromhex(VECTOR["eid"])
UPP = (TS48 / "TS48V5-SAIP2-3-NOBERTLV-UNIQUE.der").read_bytes()


def h(name: str) -> bytes:
    return bytes.fromhex(VECTOR[name])


def vector_bpp(**overrides: Any) -> bpp.BoundProfilePackage:
    """The conformant vector's BPP rebuilt from its inputs."""
    nist = Curve.NIST_P256
    kwargs: dict[str, Any] = {
        "transaction_id": h("transaction_id"),
        "eid": EID,
        "euicc_otpk_point": h("euicc_otpk"),
        "smdp_pb_key": load_sgp26(nist).dp_pb.key,
        "store_metadata": h("plain_store_metadata"),
        "host_id": h("host_id"),
        "smdp_otsk": crypto.private_key_from_scalar(nist, h("smdp_otsk")),
        "ppk": bpp.PpkKeys(h("ppk_enc"), h("ppk_mac"), h("ppk_initial_mcv")),
        "profile_chunk_size": VECTOR["upp_plaintext_chunk_size"],
    }
    kwargs.update(overrides)
    return bpp.build_bound_profile_package(UPP, **kwargs)


class EuiccSide:
    """An independent reading of a BPP as an eUICC would (keys from otSK.EUICC)."""

    def __init__(self, payloads: list[bytes], otsk: Any, eid: bytes) -> None:
        self.payloads = payloads
        first = payloads[0]
        isc_start = tlv.read_length(first, 2)[1]
        isc = schema.decode("InitialiseSecureChannelRequest", first[isc_start:])
        curve = Curve.of_key(otsk)
        shs = crypto.ecdh_shared_secret(otsk, crypto.public_key_from_point(curve, isc["smdpOtpk"]))
        keys = scp03t.derive_session_keys(shs, host_id=isc["controlRefTemplate"]["hostId"], eid=eid)
        self.channel = scp03t.SecureChannel.from_session_keys(keys)
        self.isc = isc

    def read(self) -> dict[str, bytes]:
        out: dict[str, bytes] = {"88": b"", "86": b""}
        for piece in self.payloads[1:]:
            tag = piece[0]
            if tag in (0xA0, 0xA2):
                plain = b"".join(self.channel.unprotect(s) for s in _children(piece))
                out["A0" if tag == 0xA0 else "A2"] = plain
                if tag == 0xA2:
                    rsk = schema.decode("ReplaceSessionKeysRequest", plain)
                    self.channel.replace_keys(
                        rsk["ppkEnc"], rsk["ppkCmac"], rsk["initialMacChainingValue"]
                    )
            elif tag in (0x88, 0x86):
                out[f"{tag:02X}"] += self.channel.unprotect(piece)
        return out


def test_split_of_the_vector_gives_its_payload_sequence() -> None:
    payloads = bpp.split_bpp_for_loading(base64.b64decode(VECTOR["bpp_b64"]))
    assert payloads == [bytes.fromhex(p) for p in VECTOR["es10b_load_bpp_payloads_hex"]]


def test_build_reproduces_every_vector_segment_and_a_valid_smdp_sign() -> None:
    built = vector_bpp()
    expected = [bytes.fromhex(p) for p in VECTOR["es10b_load_bpp_payloads_hex"]]
    payloads = built.payloads()
    assert payloads[1:] == expected[1:]
    # smdpSign is a randomised ECDSA signature: all bytes before it are the vector's.
    assert payloads[0][:-64] == expected[0][:-64]
    assert built.smdp_otpk == h("smdp_otpk")
    dp_pb = load_sgp26(Curve.NIST_P256).dp_pb.public_key
    crypto.verify_raw(dp_pb, payloads[0][-64:], h("smdp_sign_signed_data"))
    crypto.verify_raw(dp_pb, expected[0][-64:], h("smdp_sign_signed_data"))
    assert len(built.encoded) == len(base64.b64decode(VECTOR["bpp_b64"]))


def test_the_vector_decrypts_to_its_plaintexts() -> None:
    otsk = crypto.private_key_from_scalar(Curve.NIST_P256, h("euicc_otsk"))
    payloads = [bytes.fromhex(p) for p in VECTOR["es10b_load_bpp_payloads_hex"]]
    plain = EuiccSide(payloads, otsk, EID).read()
    assert plain["A0"] == h("plain_configure_isdp")
    assert plain["88"] == h("plain_store_metadata")
    assert plain["A2"] == h("plain_replace_session_keys")
    assert hashlib.sha256(plain["86"]).hexdigest() == VECTOR["upp_sha256"]


def test_smdp_sign_data_is_the_isc_body_then_the_euicc_otpk_tlv() -> None:
    signed = h("smdp_sign_signed_data")
    body, otpk_tlv = signed[:-68], signed[-68:]
    assert otpk_tlv == b"\x5f\x49\x41" + h("euicc_otpk")
    assert bpp.smdp_sign_data(body, h("euicc_otpk")) == signed


@pytest.mark.parametrize("curve", list(Curve), ids=lambda c: c.suffix)
@pytest.mark.parametrize("package", sorted(p.name for p in TS48.glob("*.der")))
def test_every_ts48_package_binds_in_segments_of_at_most_1020_bytes(
    curve: Curve, package: str
) -> None:
    upp = (TS48 / package).read_bytes()
    otsk = crypto.generate_private_key(curve)
    metadata = schema.encode(
        "StoreMetadataRequest",
        {
            "iccid": b"\x98" * 10,
            "serviceProviderName": "SP",
            "profileName": package,
            "iconType": 1,
            "icon": bytes(range(256)) * 4,  # 1024 bytes: the metadata needs two 88s
        },
    )
    built = bpp.build_bound_profile_package(
        upp,
        transaction_id=b"\x01" * 16,
        eid=EID,
        euicc_otpk_point=crypto.public_point(otsk.public_key()),
        smdp_pb_key=load_sgp26(curve).dp_pb.key,
        store_metadata=metadata,
    )
    payloads = built.payloads()
    segments = [p for p in payloads if p[0] in (0x86, 0x87, 0x88)]
    segments += [s for p in payloads if p[0] in (0xA0, 0xA2) for s in _children(p)]
    assert all(len(s) <= bpp.MAX_SEGMENT for s in segments)
    assert sum(p[0] == 0x88 for p in payloads) == 2
    plain = EuiccSide(payloads, otsk, EID).read()
    assert plain["86"] == upp and plain["88"] == metadata and plain["A0"] == b"\xbf\x24\x00"


def _children(piece: bytes) -> list[bytes]:
    outer = tlv.read_tlv(piece)
    out, pos = [], outer.value_start
    for item in tlv.iter_tlvs(piece, outer.value_start, outer.value_end):
        out.append(piece[pos : item.end])
        pos = item.end
    return out


def test_without_replace_session_keys_the_86s_continue_the_session_context() -> None:
    built = vector_bpp(replace_session_keys=False, ppk=None)
    payloads = built.payloads()
    assert [p[0] for p in payloads[:5]] == [0xBF, 0xA0, 0xA1, 0x88, 0xA3]
    otsk = crypto.private_key_from_scalar(Curve.NIST_P256, h("euicc_otsk"))
    plain = EuiccSide(payloads, otsk, EID).read()
    assert "A2" not in plain and plain["86"] == UPP


def test_random_ppks_differ_between_builds() -> None:
    a = vector_bpp(ppk=None).payloads()
    b = vector_bpp(ppk=None).payloads()
    assert a[4] != b[4] and a[6] != b[6]


def test_largest_plaintexts_fill_a_1020_byte_segment() -> None:
    assert bpp.max_plaintext(encrypted=True) == 1007
    assert bpp.max_plaintext(encrypted=False) == 1008
    channel = scp03t.SecureChannel(b"\x01" * 16, b"\x02" * 16, b"\x03" * 16)
    assert len(channel.protect(0x86, b"\x00" * 1007)) == 1020
    assert len(channel.protect(0x86, b"\x00" * 1008)) > 1020
    assert len(channel.protect_mac_only(b"\x00" * 1008)) == 1020


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"host_id": b""}, "hostId"),
        ({"host_id": b"\x01" * 17}, "hostId"),
        ({"profile_chunk_size": 1008}, "profile_chunk_size"),
        ({"profile_chunk_size": 0}, "profile_chunk_size"),
    ],
)
def test_build_refuses_bad_arguments(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        vector_bpp(**overrides)


def test_build_refuses_keys_on_different_curves() -> None:
    with pytest.raises(crypto.CryptoError):
        vector_bpp(smdp_pb_key=load_sgp26(Curve.BRAINPOOL_P256R1).dp_pb.key)


def test_wrong_crt_values_make_a_signed_request_an_euicc_refuses() -> None:
    key = load_sgp26(Curve.NIST_P256).dp_pb.key
    isc = bpp.build_initialise_secure_channel(
        transaction_id=b"\x01",
        host_id=b"\x02",
        smdp_otpk=h("smdp_otpk"),
        euicc_otpk=h("euicc_otpk"),
        smdp_pb_key=key,
        key_type=0x89,
        remote_op_id=2,
    )
    value = schema.decode("InitialiseSecureChannelRequest", isc)
    assert value["controlRefTemplate"]["keyType"] == b"\x89" and value["remoteOpId"] == 2
    body = b"".join(_children(isc)[:-1])
    signed = bpp.smdp_sign_data(body, h("euicc_otpk"))
    crypto.verify_raw(key.public_key(), value["smdpSign"], signed)


def _bf36(*children: str) -> bytes:
    return tlv.encode_tlv(b"\xbf\x36", bytes.fromhex("".join(children)))


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "malformed"),
        (bytes.fromhex("BF3700"), "exactly one BF36"),
        (_bf36("BF2300") + b"\x00", "exactly one BF36"),
        (_bf36("A000", "A100", "A300"), "expected BF23"),
        (_bf36("BF2300", "A000", "A100", "A200", "A300", "A000"), "expected BF23"),
        (_bf36("BF2300", "A100", "A000", "A300"), "expected BF23"),
        (_bf36("BF2300", "A000", "A1028600", "A300"), "A1 holds a 86"),
        (_bf36("BF2300", "A000", "A100", "A3028800"), "A3 holds a 88"),
        (bytes.fromhex("BF3608BF2300A000A105"), "malformed"),
        (_bf36("BF2300", "A000", "A100", "A3028605"), "malformed"),
    ],
)
def test_split_refuses_what_is_no_bpp(data: bytes, message: str) -> None:
    with pytest.raises(bpp.BppFormatError, match=message):
        bpp.split_bpp_for_loading(data)


def test_split_refuses_a_non_minimal_header_length() -> None:
    # A long-form length where a short one would do is not DER: refused, not re-encoded.
    data = bytes.fromhex("BF3681 0F BF2300 A000 A18103 880100 A3028600".replace(" ", ""))
    with pytest.raises(bpp.BppFormatError):
        bpp.split_bpp_for_loading(data)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    upp=st.binary(max_size=4000),
    metadata_size=st.integers(0, 2500),
    chunk=st.integers(1, 1007),
    replace_keys=st.booleans(),
)
def test_any_package_round_trips_through_build_split_and_decrypt(
    upp: bytes, metadata_size: int, chunk: int, replace_keys: bool
) -> None:
    curve = Curve.NIST_P256
    otsk = crypto.private_key_from_scalar(curve, h("euicc_otsk"))
    metadata = tlv.encode_tlv(b"\xbf\x25", bytes(metadata_size))
    built = bpp.build_bound_profile_package(
        upp,
        transaction_id=b"\x07",
        eid=EID,
        euicc_otpk_point=h("euicc_otpk"),
        smdp_pb_key=load_sgp26(curve).dp_pb.key,
        store_metadata=metadata,
        replace_session_keys=replace_keys,
        profile_chunk_size=chunk,
    )
    payloads = built.payloads()
    assert b"".join(payloads) == built.encoded  # contiguous slices, nothing re-encoded
    plain = EuiccSide(payloads, otsk, EID).read()
    assert plain["86"] == upp and plain["88"] == metadata
    assert sum(p[0] == 0x86 for p in payloads) == max(1, -(-len(upp) // chunk))
