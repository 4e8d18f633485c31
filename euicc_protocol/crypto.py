"""Elliptic-curve primitives used by SGP.22 / SGP.32, with no protocol logic.

Everything here works on the two RSP curves (NIST P-256 and brainpoolP256r1) and follows the
formats of the GSMA specifications:

* signatures inside GSMA ASN.1 structures (``5F37``) are ECDSA-SHA256 as plain ``r || s``,
  each 32 bytes big-endian and left-padded (BSI TR-03111), not the DER form X.509 uses;
* public keys on the wire (``5F49``, ``euiccOtpk``) are uncompressed points ``04 || X || Y``;
* the ECKA shared secret is the x-coordinate of the ECDH point;
* key identifiers are SHA-1 of the uncompressed point (RFC 5280 §4.2.1.2, method 1).

Private keys are ``cryptography`` key objects, whose repr never shows key material.
"""

from __future__ import annotations

import enum
import hashlib

from cryptography.exceptions import InvalidSignature as _LibInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "RAW_SIGNATURE_LENGTH",
    "Curve",
    "CryptoError",
    "InvalidPublicKey",
    "InvalidSignature",
    "UnsupportedKey",
    "der_to_raw",
    "ecdh_shared_secret",
    "generate_private_key",
    "private_key_from_scalar",
    "public_key_from_point",
    "public_point",
    "raw_to_der",
    "sign_raw",
    "subject_key_identifier",
    "verify_raw",
]

#: Byte length of one coordinate / scalar on the supported 256-bit curves.
_FIELD_LENGTH = 32
#: Length of a ``5F37`` signature value (r || s).
RAW_SIGNATURE_LENGTH = 2 * _FIELD_LENGTH


class CryptoError(Exception):
    """Base class of the errors raised by :mod:`euicc_protocol.crypto`."""


class InvalidSignature(CryptoError):
    """A signature is malformed or does not verify."""


class InvalidPublicKey(CryptoError):
    """Bytes that should encode a public key (a curve point) do not."""


class UnsupportedKey(CryptoError):
    """A key is not an EC key on one of the supported curves, or two keys' curves differ."""


class Curve(enum.Enum):
    """The curves SGP.22 allows, valued by their OpenSSL / RFC 5480 names."""

    NIST_P256 = "prime256v1"
    BRAINPOOL_P256R1 = "brainpoolP256r1"

    @property
    def oid(self) -> str:
        """The namedCurve OBJECT IDENTIFIER of the curve."""
        return _CURVE_OIDS[self]

    @property
    def suffix(self) -> str:
        """The file-name suffix SGP.26 uses for the curve (``NIST`` or ``BRP``)."""
        return "NIST" if self is Curve.NIST_P256 else "BRP"

    def ec_curve(self) -> ec.EllipticCurve:
        """Return a fresh ``cryptography`` curve object for this curve."""
        if self is Curve.NIST_P256:
            return ec.SECP256R1()
        return ec.BrainpoolP256R1()

    @classmethod
    def from_ec_curve(cls, curve: ec.EllipticCurve) -> Curve:
        """Map a ``cryptography`` curve object to a :class:`Curve`.

        Raises:
            UnsupportedKey: the curve is not one SGP.22 allows.
        """
        found = _CURVES_BY_LIB_NAME.get(curve.name)
        if found is None:
            raise UnsupportedKey(
                f"curve {curve.name} is not supported (only P-256 and brainpoolP256r1)"
            )
        return found

    @classmethod
    def of_key(cls, key: object) -> Curve:
        """Return the curve of an EC public or private key.

        Raises:
            UnsupportedKey: not an EC key, or on an unsupported curve.
        """
        if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
            raise UnsupportedKey(f"expected an EC key, got {type(key).__name__}")
        return cls.from_ec_curve(key.curve)

    @classmethod
    def from_name(cls, name: str) -> Curve:
        """Parse a curve name: ``prime256v1``/``secp256r1``/``P-256``/``NIST`` or
        ``brainpoolP256r1``/``BRP`` (case-insensitive), or the curve's OID.

        Raises:
            ValueError: the name is not recognised.
        """
        found = _CURVE_ALIASES.get(name.strip().lower())
        if found is None:
            raise ValueError(f"unknown curve name {name!r}")
        return found


_CURVE_OIDS = {
    Curve.NIST_P256: "1.2.840.10045.3.1.7",
    Curve.BRAINPOOL_P256R1: "1.3.36.3.3.2.8.1.1.7",
}
_CURVES_BY_LIB_NAME = {
    ec.SECP256R1.name: Curve.NIST_P256,
    ec.BrainpoolP256R1.name: Curve.BRAINPOOL_P256R1,
}
_CURVE_ALIASES = {
    "prime256v1": Curve.NIST_P256,
    "secp256r1": Curve.NIST_P256,
    "p-256": Curve.NIST_P256,
    "p256": Curve.NIST_P256,
    "nist": Curve.NIST_P256,
    "nist_p256": Curve.NIST_P256,
    "1.2.840.10045.3.1.7": Curve.NIST_P256,
    "brainpoolp256r1": Curve.BRAINPOOL_P256R1,
    "brp": Curve.BRAINPOOL_P256R1,
    "brainpool": Curve.BRAINPOOL_P256R1,
    "brainpool_p256r1": Curve.BRAINPOOL_P256R1,
    "1.3.36.3.3.2.8.1.1.7": Curve.BRAINPOOL_P256R1,
}

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_ECDSA_SHA256_DETERMINISTIC = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)


def generate_private_key(curve: Curve) -> ec.EllipticCurvePrivateKey:
    """Generate a fresh key pair on ``curve``."""
    return ec.generate_private_key(curve.ec_curve())


def private_key_from_scalar(curve: Curve, scalar: bytes) -> ec.EllipticCurvePrivateKey:
    """Build a private key from its big-endian scalar (test vectors, deterministic cards).

    Raises:
        CryptoError: the scalar is not 32 bytes or not in ``[1, n-1]``.
    """
    if len(scalar) != _FIELD_LENGTH:
        raise CryptoError(f"private scalar must be {_FIELD_LENGTH} bytes, got {len(scalar)}")
    try:
        return ec.derive_private_key(int.from_bytes(scalar, "big"), curve.ec_curve())
    except ValueError:
        # Deliberately not echoing the scalar: it is secret.
        raise CryptoError(f"private scalar is out of range for {curve.value}") from None


def sign_raw(
    private_key: ec.EllipticCurvePrivateKey, data: bytes, *, deterministic: bool = False
) -> bytes:
    """Sign ``data`` with ECDSA-SHA256 and return the 64-byte ``r || s`` form (``5F37`` value).

    With ``deterministic=True`` the nonce follows RFC 6979, so equal inputs give equal
    signatures (useful for reproducible traces); the result verifies the same either way.
    """
    Curve.of_key(private_key)
    algorithm = _ECDSA_SHA256_DETERMINISTIC if deterministic else _ECDSA_SHA256
    return der_to_raw(private_key.sign(data, algorithm))


def verify_raw(public_key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> None:
    """Verify a 64-byte ``r || s`` ECDSA-SHA256 signature over ``data``.

    Raises:
        InvalidSignature: the signature has the wrong length or does not verify.
        UnsupportedKey: the key is not on a supported curve.
    """
    Curve.of_key(public_key)
    der = raw_to_der(signature)
    try:
        public_key.verify(der, data, _ECDSA_SHA256)
    except _LibInvalidSignature:
        raise InvalidSignature("ECDSA-SHA256 signature does not verify with this key") from None


def raw_to_der(signature: bytes) -> bytes:
    """Convert a 64-byte ``r || s`` signature to DER ``SEQUENCE { INTEGER r, INTEGER s }``.

    Raises:
        InvalidSignature: the input is not exactly 64 bytes.
    """
    if len(signature) != RAW_SIGNATURE_LENGTH:
        raise InvalidSignature(
            f"raw ECDSA signature must be {RAW_SIGNATURE_LENGTH} bytes, got {len(signature)}"
        )
    r = int.from_bytes(signature[:_FIELD_LENGTH], "big")
    s = int.from_bytes(signature[_FIELD_LENGTH:], "big")
    return encode_dss_signature(r, s)


def der_to_raw(signature: bytes) -> bytes:
    """Convert a DER ECDSA signature to the 64-byte ``r || s`` form, keeping leading zeros.

    Raises:
        InvalidSignature: the input is not a DER ECDSA signature or r/s exceed 32 bytes.
    """
    try:
        r, s = decode_dss_signature(signature)
    except ValueError:
        raise InvalidSignature("not a DER-encoded ECDSA signature") from None
    limit = 1 << (8 * _FIELD_LENGTH)
    if not (0 <= r < limit and 0 <= s < limit):
        raise InvalidSignature(f"ECDSA signature values exceed {_FIELD_LENGTH} bytes")
    return r.to_bytes(_FIELD_LENGTH, "big") + s.to_bytes(_FIELD_LENGTH, "big")


def public_point(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """Return the 65-byte uncompressed point ``04 || X || Y`` of a public key."""
    return public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def public_key_from_point(curve: Curve, point: bytes) -> ec.EllipticCurvePublicKey:
    """Build a public key from an uncompressed point ``04 || X || Y`` on ``curve``.

    Raises:
        InvalidPublicKey: not 65 bytes starting with 04, or not a point on the curve.
    """
    if len(point) != 1 + 2 * _FIELD_LENGTH or point[0] != 0x04:
        raise InvalidPublicKey(
            f"public key must be a 65-byte uncompressed point (04||X||Y), "
            f"got {len(point)} bytes starting {point[:1].hex() or 'empty'}"
        )
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve.ec_curve(), point)
    except ValueError:
        raise InvalidPublicKey(f"the point is not on {curve.value}") from None


def subject_key_identifier(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """Return SHA-1 of the uncompressed point: the key identifier used by all RSP certificates."""
    return hashlib.sha1(public_point(public_key)).digest()


def ecdh_shared_secret(
    private_key: ec.EllipticCurvePrivateKey, peer_public_key: ec.EllipticCurvePublicKey
) -> bytes:
    """Compute the ECKA shared secret ShS: the 32-byte x-coordinate of ``d * Q``.

    Raises:
        UnsupportedKey: the keys are on different or unsupported curves.
    """
    own = Curve.of_key(private_key)
    peer = Curve.of_key(peer_public_key)
    if own is not peer:
        raise UnsupportedKey(f"ECDH between different curves ({own.value} vs {peer.value})")
    return private_key.exchange(ec.ECDH(), peer_public_key)
