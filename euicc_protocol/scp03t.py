"""SCP03t (SGP.22 v2; called BSP in v3): session-key derivation and segment protection.

Key derivation (SGP.22 Annex G): the ECKA shared secret ShS goes through the ANSI X9.63 KDF
with SHA-256; SharedInfo = keyType || keyLength || len(hostId) || hostId || len(EID) || EID.
The 48 output bytes are, in this order, the initial MAC chaining value, S-ENC and S-MAC.

Segment protection: one :class:`SecureChannel` holds {S-ENC, S-MAC, MCV, block counter}. The
counter starts at 1 and the MCV at the initial MCV; both run on across every segment type in
BPP order, including the MAC-only ``88`` segments. ReplaceSessionKeys installs new keys and
MCV and restarts the counter at 1.

For a segment with tag ``86``/``87`` and plaintext P::

    P'   = P || 80 || 00..   (always padded, to a multiple of 16)
    ICV  = AES-ECB(S-ENC, counter as 16 bytes big-endian); counter += 1
    C    = AES-CBC(S-ENC, IV=ICV, P')
    MAC  = AES-CMAC(S-MAC, MCV || tag || L || C) where L = BER length of len(C) + 8
    MCV  = MAC;  output = tag || L || C || MAC[:8]

A ``88`` segment is the same with C = P and no encryption (the counter still advances).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "BLOCK_SIZE",
    "KEY_LENGTH_AES128",
    "KEY_TYPE_AES",
    "MAC_LENGTH",
    "TAG_ENCRYPTED_SEGMENTS",
    "TAG_MAC_ONLY",
    "Scp03tError",
    "Scp03tSecurityError",
    "Scp03tStructureError",
    "SecureChannel",
    "SessionKeys",
    "derive_session_keys",
    "kdf_shared_info",
    "x963_kdf",
]

#: keyType of the CRT in InitialiseSecureChannelRequest: AES.
KEY_TYPE_AES = 0x88
#: keyLength of the CRT: 16 bytes (AES-128), the only length SGP.22 allows.
KEY_LENGTH_AES128 = 0x10
#: AES block size; also the size of the MAC chaining value and of the ICV.
BLOCK_SIZE = 16
#: Length of the truncated C-MAC appended to every segment.
MAC_LENGTH = 8
#: Tags of the segments that are encrypted and MACed (86 = profile data, 87 = ConfigureISDP /
#: ReplaceSessionKeys).
TAG_ENCRYPTED_SEGMENTS = frozenset({0x86, 0x87})
#: Tag of the MAC-only segments (StoreMetadata).
TAG_MAC_ONLY = 0x88

_HASH_LENGTH = hashlib.sha256().digest_size


class Scp03tError(Exception):
    """Base class of SCP03t errors."""


class Scp03tSecurityError(Scp03tError):
    """A segment's C-MAC does not verify (SGP.22 ``scp03tSecurityError``)."""


class Scp03tStructureError(Scp03tError):
    """A segment is malformed: bad TLV, tag, block alignment or padding
    (SGP.22 ``scp03tStructureError``)."""


def x963_kdf(z: bytes, shared_info: bytes, length: int) -> bytes:
    """ANSI X9.63 key derivation with SHA-256.

    Output = SHA256(Z || counter_1 || SharedInfo) || SHA256(Z || counter_2 || SharedInfo) || ...
    with 32-bit big-endian counters starting at 1, truncated to ``length`` bytes.
    """
    if length < 0:
        raise ValueError("length must not be negative")
    blocks = -(-length // _HASH_LENGTH)
    if blocks >= 1 << 32:
        raise ValueError("length too large for X9.63 KDF")
    out = b"".join(
        hashlib.sha256(z + counter.to_bytes(4, "big") + shared_info).digest()
        for counter in range(1, blocks + 1)
    )
    return out[:length]


def _ber_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def kdf_shared_info(key_type: int, key_length: int, host_id: bytes, eid: bytes) -> bytes:
    """Build the SharedInfo of the SGP.22 key derivation (lengths are BER lengths)."""
    return (
        bytes([key_type, key_length])
        + _ber_length(len(host_id))
        + host_id
        + _ber_length(len(eid))
        + eid
    )


@dataclass(frozen=True, repr=False)
class SessionKeys:
    """The three values SCP03t derives from ShS. The repr hides them."""

    initial_mcv: bytes
    s_enc: bytes
    s_mac: bytes

    def __repr__(self) -> str:
        return "SessionKeys(<secret>)"


def derive_session_keys(
    shared_secret: bytes,
    key_type: int = KEY_TYPE_AES,
    key_length: int = KEY_LENGTH_AES128,
    *,
    host_id: bytes,
    eid: bytes,
) -> SessionKeys:
    """Derive the initial MCV, S-ENC and S-MAC from the ECKA shared secret (SGP.22 Annex G).

    ``eid`` is the 16-byte BCD form (:func:`euicc_protocol.eid.eid_to_bytes`); ``host_id`` the
    value of
    tag ``84`` of the CRT.

    Raises:
        ValueError: key type/length other than AES-128 (``88``/``10``); an eUICC answers
            those with ``unsupportedCrtValues``.
    """
    if key_type != KEY_TYPE_AES or key_length != KEY_LENGTH_AES128:
        raise ValueError(
            f"unsupported CRT values keyType={key_type:#04x} keyLength={key_length:#04x} "
            f"(only {KEY_TYPE_AES:#04x}/{KEY_LENGTH_AES128:#04x})"
        )
    info = kdf_shared_info(key_type, key_length, host_id, eid)
    key_data = x963_kdf(shared_secret, info, 3 * key_length)
    return SessionKeys(
        initial_mcv=key_data[:key_length],
        s_enc=key_data[key_length : 2 * key_length],
        s_mac=key_data[2 * key_length :],
    )


def _check_key(name: str, key: bytes) -> bytes:
    if len(key) != BLOCK_SIZE:
        raise ValueError(f"{name} must be {BLOCK_SIZE} bytes, got {len(key)}")
    return bytes(key)


def _pad(data: bytes) -> bytes:
    padded = data + b"\x80"
    return padded + b"\x00" * (-len(padded) % BLOCK_SIZE)


def _unpad(data: bytes) -> bytes:
    stripped = data.rstrip(b"\x00")
    # Padding is at most one block (80 plus up to 15 zeros); anything longer was not
    # produced by a conforming sender.
    if not stripped or stripped[-1] != 0x80 or len(data) - len(stripped) >= BLOCK_SIZE:
        raise Scp03tStructureError("segment padding is invalid (no 80 within the last block)")
    return stripped[:-1]


def _parse_segment(tlv: bytes) -> tuple[int, bytes, bytes]:
    """Split a segment TLV into (tag, header bytes as received, value)."""
    if len(tlv) < 2:
        raise Scp03tStructureError(f"segment of {len(tlv)} bytes is too short")
    tag, first = tlv[0], tlv[1]
    if first < 0x80:
        length, header_end = first, 2
    else:
        count = first & 0x7F
        if count == 0 or count > 3 or len(tlv) < 2 + count:
            field_hex = tlv[1 : 2 + count].hex()
            raise Scp03tStructureError(f"segment length field {field_hex} is invalid")
        length, header_end = int.from_bytes(tlv[2 : 2 + count], "big"), 2 + count
    value = tlv[header_end:]
    if len(value) != length:
        raise Scp03tStructureError(
            f"segment length field says {length} bytes but {len(value)} follow"
        )
    return tag, tlv[:header_end], value


class SecureChannel:
    """One SCP03t protection context: the SM-DP+ protects with it, the eUICC unprotects.

    Methods commit state only on success: a rejected segment leaves the counter and MCV as
    they were.
    """

    def __init__(self, s_enc: bytes, s_mac: bytes, initial_mcv: bytes) -> None:
        """Start a context with counter 1 and MCV = ``initial_mcv``."""
        self._s_enc = _check_key("S-ENC", s_enc)
        self._s_mac = _check_key("S-MAC", s_mac)
        self._mcv = _check_key("initial MCV", initial_mcv)
        self._counter = 1

    @classmethod
    def from_session_keys(cls, keys: SessionKeys) -> SecureChannel:
        """Start a context from the output of :func:`derive_session_keys`."""
        return cls(keys.s_enc, keys.s_mac, keys.initial_mcv)

    def __repr__(self) -> str:
        return f"SecureChannel(counter={self._counter})"

    @property
    def counter(self) -> int:
        """The block counter the next segment will use."""
        return self._counter

    def replace_keys(self, s_enc: bytes, s_mac: bytes, initial_mcv: bytes) -> None:
        """Apply ReplaceSessionKeys: new PPK-ENC/PPK-MAC, MCV from the request, counter 1."""
        self._s_enc = _check_key("PPK-ENC", s_enc)
        self._s_mac = _check_key("PPK-MAC", s_mac)
        self._mcv = _check_key("initial MCV", initial_mcv)
        self._counter = 1

    def _icv(self, counter: int) -> bytes:
        encryptor = Cipher(algorithms.AES(self._s_enc), modes.ECB()).encryptor()
        return encryptor.update(counter.to_bytes(BLOCK_SIZE, "big")) + encryptor.finalize()

    def _full_mac(self, header: bytes, body: bytes) -> bytes:
        mac = cmac.CMAC(algorithms.AES(self._s_mac))
        mac.update(self._mcv + header + body)
        return mac.finalize()

    def _seal(self, tag: int, body: bytes) -> bytes:
        header = bytes([tag]) + _ber_length(len(body) + MAC_LENGTH)
        full_mac = self._full_mac(header, body)
        self._mcv = full_mac
        self._counter += 1
        return header + body + full_mac[:MAC_LENGTH]

    def protect(self, tag: int, plaintext: bytes) -> bytes:
        """Pad, encrypt and MAC one ``86``/``87`` segment; return the complete TLV."""
        if tag not in TAG_ENCRYPTED_SEGMENTS:
            raise ValueError(f"tag {tag:#04x} is not an encrypted segment tag (86/87)")
        encryptor = Cipher(algorithms.AES(self._s_enc), modes.CBC(self._icv(self._counter)))
        ctx = encryptor.encryptor()
        ciphertext = ctx.update(_pad(plaintext)) + ctx.finalize()
        return self._seal(tag, ciphertext)

    def protect_mac_only(self, plaintext: bytes, tag: int = TAG_MAC_ONLY) -> bytes:
        """MAC one ``88`` segment (StoreMetadata) and return the complete TLV."""
        if tag != TAG_MAC_ONLY:
            raise ValueError(f"tag {tag:#04x} is not the MAC-only segment tag (88)")
        return self._seal(tag, plaintext)

    def unprotect(self, tlv: bytes) -> bytes:
        """Verify (and for ``86``/``87`` decrypt) one received segment; return the plaintext.

        The C-MAC is computed over the tag and length exactly as received.

        Raises:
            Scp03tSecurityError: the C-MAC does not match.
            Scp03tStructureError: unknown tag, bad length, misaligned ciphertext or padding.
        """
        tag, header, value = _parse_segment(tlv)
        if tag not in TAG_ENCRYPTED_SEGMENTS and tag != TAG_MAC_ONLY:
            raise Scp03tStructureError(f"tag {tag:#04x} is not an SCP03t segment tag (86/87/88)")
        if len(value) < MAC_LENGTH:
            raise Scp03tStructureError(f"segment value of {len(value)} bytes has no room for a MAC")
        body, received_mac = value[:-MAC_LENGTH], value[-MAC_LENGTH:]
        full_mac = self._full_mac(header, body)
        if not hmac.compare_digest(full_mac[:MAC_LENGTH], received_mac):
            raise Scp03tSecurityError(f"C-MAC of segment with tag {tag:#04x} does not verify")
        if tag == TAG_MAC_ONLY:
            plaintext = body
        else:
            if not body or len(body) % BLOCK_SIZE:
                raise Scp03tStructureError(
                    f"ciphertext of {len(body)} bytes is not a non-empty multiple of {BLOCK_SIZE}"
                )
            decryptor = Cipher(
                algorithms.AES(self._s_enc), modes.CBC(self._icv(self._counter))
            ).decryptor()
            plaintext = _unpad(decryptor.update(body) + decryptor.finalize())
        self._mcv = full_mac
        self._counter += 1
        return plaintext
