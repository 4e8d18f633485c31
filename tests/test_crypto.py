"""Tests of euicc_protocol.crypto: curves, raw ECDSA signatures, points, key ids and ECDH."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from euicc_protocol import crypto
from euicc_protocol.crypto import Curve
from euicc_protocol.pki import load_certificate
from euicc_protocol.testpki import load_sgp26

DATA = Path(__file__).with_name("data")
CURVES = list(Curve)
# Key generation is cheap, but hypothesis tests run many examples per key.
_keys = {curve: crypto.generate_private_key(curve) for curve in CURVES}


def _flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# ------------------------------------------------------------------ curves


@pytest.mark.parametrize(
    ("curve", "oid", "lib_name"),
    [
        (Curve.NIST_P256, "1.2.840.10045.3.1.7", "secp256r1"),
        (Curve.BRAINPOOL_P256R1, "1.3.36.3.3.2.8.1.1.7", "brainpoolP256r1"),
    ],
)
def test_curve_facts(curve: Curve, oid: str, lib_name: str) -> None:
    assert curve.oid == oid
    assert curve.ec_curve().name == lib_name
    key = crypto.generate_private_key(curve)
    assert Curve.of_key(key) is curve
    assert Curve.of_key(key.public_key()) is curve


@pytest.mark.parametrize(
    ("name", "curve"),
    [
        ("prime256v1", Curve.NIST_P256),
        ("secp256r1", Curve.NIST_P256),
        ("P-256", Curve.NIST_P256),
        ("NIST", Curve.NIST_P256),
        ("brainpoolP256r1", Curve.BRAINPOOL_P256R1),
        ("BRP", Curve.BRAINPOOL_P256R1),
        ("1.3.36.3.3.2.8.1.1.7", Curve.BRAINPOOL_P256R1),
    ],
)
def test_curve_from_name(name: str, curve: Curve) -> None:
    assert Curve.from_name(name) is curve


def test_curve_from_unknown_name_fails() -> None:
    with pytest.raises(ValueError, match="secp384r1"):
        Curve.from_name("secp384r1")


def test_other_curves_are_unsupported() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(crypto.UnsupportedKey, match="secp384r1"):
        Curve.of_key(key)
    with pytest.raises(crypto.UnsupportedKey):
        crypto.sign_raw(key, b"data")
    with pytest.raises(crypto.UnsupportedKey, match="EC key"):
        Curve.of_key(b"not a key")


# ------------------------------------------------------------------ signatures


@pytest.mark.parametrize("curve", CURVES)
def test_sign_raw_gives_64_bytes_that_verify(curve: Curve) -> None:
    key = crypto.generate_private_key(curve)
    signature = crypto.sign_raw(key, b"euiccSigned1")
    assert len(signature) == 64
    crypto.verify_raw(key.public_key(), signature, b"euiccSigned1")
    # The raw form is the DER form re-encoded, so the library accepts it after conversion.
    key.public_key().verify(
        crypto.raw_to_der(signature), b"euiccSigned1", ec.ECDSA(hashes.SHA256())
    )


@pytest.mark.parametrize("curve", CURVES)
@given(bit=st.integers(min_value=0, max_value=64 * 8 - 1))
def test_any_flipped_signature_bit_is_rejected(curve: Curve, bit: int) -> None:
    key = _keys[curve]
    signature = crypto.sign_raw(key, b"data", deterministic=True)
    with pytest.raises(crypto.InvalidSignature):
        crypto.verify_raw(key.public_key(), _flip_bit(signature, bit), b"data")


@pytest.mark.parametrize("curve", CURVES)
def test_signature_does_not_verify_other_data_or_key(curve: Curve) -> None:
    key = _keys[curve]
    signature = crypto.sign_raw(key, b"data")
    with pytest.raises(crypto.InvalidSignature, match="does not verify"):
        crypto.verify_raw(key.public_key(), signature, b"datb")
    other = crypto.generate_private_key(curve)
    with pytest.raises(crypto.InvalidSignature):
        crypto.verify_raw(other.public_key(), signature, b"data")


@pytest.mark.parametrize("length", [0, 63, 65, 70, 72])
def test_wrong_signature_length_is_invalid_signature(length: int) -> None:
    key = _keys[Curve.NIST_P256]
    with pytest.raises(crypto.InvalidSignature, match="64 bytes"):
        crypto.verify_raw(key.public_key(), b"\x01" * length, b"data")


def test_der_signature_is_not_accepted_as_raw() -> None:
    key = _keys[Curve.NIST_P256]
    der = key.sign(b"data", ec.ECDSA(hashes.SHA256()))
    with pytest.raises(crypto.InvalidSignature):
        crypto.verify_raw(key.public_key(), der, b"data")


def test_deterministic_signatures_repeat_and_random_ones_do_not() -> None:
    key = _keys[Curve.BRAINPOOL_P256R1]
    assert crypto.sign_raw(key, b"x", deterministic=True) == crypto.sign_raw(
        key, b"x", deterministic=True
    )
    assert crypto.sign_raw(key, b"x") != crypto.sign_raw(key, b"x")


def test_raw_der_conversion_keeps_leading_zeros() -> None:
    r = b"\x00\x00\x7f" + b"\x11" * 29
    s = b"\x00" * 31 + b"\x01"
    der = crypto.raw_to_der(r + s)
    # INTEGER r is 30 bytes (leading zeros dropped), INTEGER s is 1 byte.
    assert der == bytes.fromhex("3023021e7f" + "11" * 29 + "020101")
    assert crypto.der_to_raw(der) == r + s


def test_der_with_high_bit_values_converts_to_32_bytes_each() -> None:
    r = b"\x80" + b"\x00" * 31
    s = b"\xff" * 32
    der = crypto.raw_to_der(r + s)
    assert der[:4] == bytes.fromhex("30460221")  # DER adds a 00 sign byte
    assert crypto.der_to_raw(der) == r + s


@given(st.binary(min_size=64, max_size=64))
def test_raw_der_round_trip(raw: bytes) -> None:
    assert crypto.der_to_raw(crypto.raw_to_der(raw)) == raw


@pytest.mark.parametrize(
    "der",
    [b"", b"\x30\x00", b"garbage", bytes.fromhex("30250221" + "01" * 33 + "020101")],
)
def test_der_to_raw_rejects_malformed_or_oversized(der: bytes) -> None:
    with pytest.raises(crypto.InvalidSignature):
        crypto.der_to_raw(der)


def test_smdp_sign_of_conformant_bpp_vector_verifies_with_sgp26_dppb() -> None:
    vector = json.loads((DATA / "bpp_conformant_nist.json").read_text())
    dppb = load_sgp26(Curve.NIST_P256).dp_pb.public_key
    signed = bytes.fromhex(vector["smdp_sign_signed_data"])
    signature = bytes.fromhex(vector["smdp_sign"])
    crypto.verify_raw(dppb, signature, signed)
    with pytest.raises(crypto.InvalidSignature):
        crypto.verify_raw(dppb, signature, signed[:-1] + b"\x00")


def test_production_server_signature1_verifies() -> None:
    capture = json.loads((DATA / "es9p_initiateAuthentication_production.json").read_text())
    body = capture["http_response_body"]
    cert = load_certificate(base64.b64decode(body["serverCertificate"]))
    tlv = base64.b64decode(body["serverSignature1"])
    assert tlv[:3] == b"\x5f\x37\x40"
    public_key = cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    crypto.verify_raw(public_key, tlv[3:], base64.b64decode(body["serverSigned1"]))


# ------------------------------------------------------------------ points and key ids


@pytest.mark.parametrize("curve", CURVES)
def test_public_point_round_trip(curve: Curve) -> None:
    public_key = _keys[curve].public_key()
    point = crypto.public_point(public_key)
    assert len(point) == 65 and point[0] == 0x04
    again = crypto.public_key_from_point(curve, point)
    assert crypto.public_point(again) == point


@pytest.mark.parametrize("curve", CURVES)
def test_bad_points_are_rejected(curve: Curve) -> None:
    point = crypto.public_point(_keys[curve].public_key())
    with pytest.raises(crypto.InvalidPublicKey, match="not on"):
        crypto.public_key_from_point(curve, point[:-1] + bytes([point[-1] ^ 1]))
    with pytest.raises(crypto.InvalidPublicKey, match="uncompressed"):
        crypto.public_key_from_point(curve, point[:33])
    with pytest.raises(crypto.InvalidPublicKey, match="uncompressed"):
        crypto.public_key_from_point(curve, b"\x05" + point[1:])
    with pytest.raises(crypto.CryptoError):
        crypto.public_key_from_point(curve, b"")


def test_point_of_one_curve_is_not_on_the_other() -> None:
    point = crypto.public_point(_keys[Curve.NIST_P256].public_key())
    with pytest.raises(crypto.InvalidPublicKey):
        crypto.public_key_from_point(Curve.BRAINPOOL_P256R1, point)


@pytest.mark.parametrize(
    ("curve", "ski"),
    [
        (Curve.NIST_P256, "F54172BDF98A95D65CBEB88A38A1C11D800A85C3"),
        (Curve.BRAINPOOL_P256R1, "C0BC70BA36929D43B467FF57570530E57AB8FCD8"),
    ],
)
def test_subject_key_identifier_matches_sgp26_ci(curve: Curve, ski: str) -> None:
    ci = load_sgp26(curve).ci
    assert crypto.subject_key_identifier(ci.public_key).hex().upper() == ski


# ------------------------------------------------------------------ ECDH and private keys


@pytest.mark.parametrize("curve", CURVES)
def test_ecdh_both_sides_agree(curve: Curve) -> None:
    a, b = crypto.generate_private_key(curve), crypto.generate_private_key(curve)
    shs = crypto.ecdh_shared_secret(a, b.public_key())
    assert len(shs) == 32
    assert shs == crypto.ecdh_shared_secret(b, a.public_key())


def test_ecdh_of_conformant_bpp_vector() -> None:
    vector = json.loads((DATA / "bpp_conformant_nist.json").read_text())
    euicc_otsk = crypto.private_key_from_scalar(
        Curve.NIST_P256, bytes.fromhex(vector["euicc_otsk"])
    )
    assert crypto.public_point(euicc_otsk.public_key()).hex() == vector["euicc_otpk"]
    smdp_otpk = crypto.public_key_from_point(Curve.NIST_P256, bytes.fromhex(vector["smdp_otpk"]))
    assert crypto.ecdh_shared_secret(euicc_otsk, smdp_otpk).hex() == vector["shared_secret"]


def test_ecdh_across_curves_is_refused() -> None:
    with pytest.raises(crypto.UnsupportedKey, match="different curves"):
        crypto.ecdh_shared_secret(
            _keys[Curve.NIST_P256], _keys[Curve.BRAINPOOL_P256R1].public_key()
        )


@pytest.mark.parametrize("scalar", [b"\x00" * 32, b"\xff" * 32, b"\x01" * 31])
def test_private_key_from_scalar_rejects_out_of_range(scalar: bytes) -> None:
    with pytest.raises(crypto.CryptoError) as info:
        crypto.private_key_from_scalar(Curve.NIST_P256, scalar)
    assert scalar.hex() not in str(info.value)


def test_private_key_repr_shows_no_key_material() -> None:
    scalar = bytes(range(1, 33))
    key = crypto.private_key_from_scalar(Curve.NIST_P256, scalar)
    assert scalar.hex() not in repr(key)
    assert str(int.from_bytes(scalar, "big")) not in repr(key)
