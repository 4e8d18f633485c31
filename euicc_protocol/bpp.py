"""Bound Profile Packages from the SM-DP+ side: binding a profile package with real SCP03t,
and cutting a BPP into the ES10b LoadBoundProfilePackage payloads (GSMA SGP.22 v2.5 §2.5,
§5.7.6 ES10b.LoadBoundProfilePackage; SCP03t key derivation in Annex G).

Pure functions, no I/O. The SM-DP+ calls :func:`build_bound_profile_package` once it holds
otPK.EUICC.ECKA (from PrepareDownload); the LPA/IPAd calls :func:`split_bpp_for_loading` on
the ``BF36`` it received and sends each payload as its own STORE DATA sequence.

Layout built here (every ``86``/``87``/``88`` TLV is at most :data:`MAX_SEGMENT` bytes)::

    BF36 { BF23 InitialiseSecureChannelRequest (signed with SK.DPpb),
           A0 { 87 ConfigureISDP },
           A1 { 88 StoreMetadata ... },
           [A2 { 87 ReplaceSessionKeys }],
           A3 { 86 profile package ... } }

One SCP03t context runs from ``87`` ConfigureISDP through every ``88`` (and the ``87``
ReplaceSessionKeys); with ``replace_session_keys`` the ``86`` segments use the new PPK context,
otherwise they continue the session-key context.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from euicc_protocol import crypto, schema, scp03t, tlv
from euicc_protocol.crypto import Curve

__all__ = [
    "DEFAULT_HOST_ID",
    "MAX_SEGMENT",
    "BoundProfilePackage",
    "BppFormatError",
    "PpkKeys",
    "build_bound_profile_package",
    "build_initialise_secure_channel",
    "max_plaintext",
    "smdp_sign_data",
    "split_bpp_for_loading",
]

#: Largest ``86``/``87``/``88`` TLV, tag, length and C-MAC included (SGP.22 §2.5.5).
MAX_SEGMENT = 1020
#: hostId of the CRT when the caller gives none (1..16 bytes, chosen by the SM-DP+).
DEFAULT_HOST_ID = b"EUICC-SIM-SMDP"
#: ConfigureISDPRequest without dpProprietaryData.
CONFIGURE_ISDP_EMPTY = b"\xbf\x24\x00"

_TAG_BPP = b"\xbf\x36"
_TAG_ISC = b"\xbf\x23"
_TAG_CONFIGURE_ISDP = b"\xa0"
_TAG_METADATA = b"\xa1"
_TAG_REPLACE_KEYS = b"\xa2"
_TAG_PROFILE = b"\xa3"
_TAG_SIGNATURE = b"\x5f\x37"
_TAG_OTPK = b"\x5f\x49"
_REMOTE_OP_INSTALL_BPP = 1


class BppFormatError(ValueError):
    """Bytes that should be a Bound Profile Package break its layout (SGP.22 v2.5 §2.5)."""


@dataclass(frozen=True, repr=False)
class PpkKeys:
    """The ReplaceSessionKeys values: new S-ENC (PPK-ENC), S-MAC (PPK-MAC) and initial MCV."""

    ppk_enc: bytes
    ppk_mac: bytes
    initial_mcv: bytes

    def __repr__(self) -> str:  # secrets never reach logs
        return "PpkKeys(<secret>)"


@dataclass(frozen=True)
class BoundProfilePackage:
    """A built BPP: the complete ``BF36`` TLV and the SM-DP+'s one-time public key in it."""

    encoded: bytes
    smdp_otpk: bytes  # otPK.DP.ECKA, uncompressed point

    def payloads(self) -> list[bytes]:
        """The LoadBoundProfilePackage payloads of this BPP, see :func:`split_bpp_for_loading`."""
        return split_bpp_for_loading(self.encoded)


def smdp_sign_data(isc_without_signature: bytes, euicc_otpk: bytes) -> bytes:
    """The bytes smdpSign covers: the ``BF23`` value up to (not including) the smdpSign TLV,
    followed by the ``5F49`` euiccOtpk TLV the eUICC sent in PrepareDownload (SGP.22
    §5.7.5); smdpSign is part of ES8+.InitialiseSecureChannel."""
    return isc_without_signature + tlv.encode_tlv(_TAG_OTPK, euicc_otpk)


def build_initialise_secure_channel(
    *,
    transaction_id: bytes,
    host_id: bytes,
    smdp_otpk: bytes,
    euicc_otpk: bytes,
    smdp_pb_key: ec.EllipticCurvePrivateKey,
    key_type: int = scp03t.KEY_TYPE_AES,
    key_length: int = scp03t.KEY_LENGTH_AES128,
    remote_op_id: int = _REMOTE_OP_INSTALL_BPP,
) -> bytes:
    """The ``BF23`` InitialiseSecureChannelRequest, signed with SK.DPpb.

    ``key_type``/``key_length``/``remote_op_id`` other than ``88``/``10``/``1`` make a request
    an eUICC must refuse; they exist for negative tests.
    """
    crt = (
        tlv.encode_tlv(b"\x80", bytes([key_type]))
        + tlv.encode_tlv(b"\x81", bytes([key_length]))
        + tlv.encode_tlv(b"\x84", host_id)
    )
    body = (
        tlv.encode_tlv(b"\x82", _minimal_int(remote_op_id))
        + tlv.encode_tlv(b"\x80", transaction_id)
        + tlv.encode_tlv(b"\xa6", crt)
        + tlv.encode_tlv(_TAG_OTPK, smdp_otpk)
    )
    signature = crypto.sign_raw(smdp_pb_key, smdp_sign_data(body, euicc_otpk))
    return tlv.encode_tlv(_TAG_ISC, body + tlv.encode_tlv(_TAG_SIGNATURE, signature))


def _minimal_int(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True)


def _tlv_size(value_length: int) -> int:
    return 1 + len(tlv.encode_length(value_length)) + value_length


def max_plaintext(*, encrypted: bool, max_segment: int = MAX_SEGMENT) -> int:
    """The largest plaintext one segment TLV of at most ``max_segment`` bytes can carry."""

    def size(n: int) -> int:
        body = (n // scp03t.BLOCK_SIZE + 1) * scp03t.BLOCK_SIZE if encrypted else n
        return _tlv_size(body + scp03t.MAC_LENGTH)

    n = max_segment
    while n > 0 and size(n) > max_segment:
        n -= 1
    if n <= 0:
        raise ValueError(f"no plaintext fits a segment of {max_segment} bytes")
    return n


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def _protect(channel: scp03t.SecureChannel, tag: int, plaintext: bytes, chunk: int) -> list[bytes]:
    if tag == scp03t.TAG_MAC_ONLY:
        return [channel.protect_mac_only(part) for part in _chunks(plaintext, chunk)]
    return [channel.protect(tag, part) for part in _chunks(plaintext, chunk)]


def build_bound_profile_package(
    upp: bytes,
    *,
    transaction_id: bytes,
    eid: bytes,
    euicc_otpk_point: bytes,
    smdp_pb_key: ec.EllipticCurvePrivateKey,
    store_metadata: bytes,
    host_id: bytes = DEFAULT_HOST_ID,
    replace_session_keys: bool = True,
    configure_isdp: bytes = CONFIGURE_ISDP_EMPTY,
    smdp_otsk: ec.EllipticCurvePrivateKey | None = None,
    ppk: PpkKeys | None = None,
    profile_chunk_size: int | None = None,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> BoundProfilePackage:
    """Bind ``upp`` (an unprotected SAIP profile package) to one eUICC and download session.

    ``eid`` is the 16-byte EID (the ``5A`` value), ``euicc_otpk_point`` the euiccOtpk of the
    eUICC's PrepareDownload response, ``smdp_pb_key`` SK.DPpb (same curve), ``store_metadata``
    the complete ``BF25`` StoreMetadataRequest TLV. A fresh otSK.DP.ECKA is generated unless
    ``smdp_otsk`` is given; the PPKs of ReplaceSessionKeys are random unless ``ppk`` is given
    (both only to reproduce test vectors). ``profile_chunk_size`` is the plaintext per ``86``
    segment (default: the most that fits :data:`MAX_SEGMENT`).

    Raises:
        ValueError: the keys are on different or unsupported curves, the point is invalid,
            ``host_id`` is not 1..16 bytes, or a chunk size does not fit a segment.
    """
    if not 1 <= len(host_id) <= 16:
        raise ValueError(f"hostId must be 1..16 bytes, got {len(host_id)}")
    curve = Curve.of_key(smdp_pb_key)
    euicc_otpk = crypto.public_key_from_point(curve, euicc_otpk_point)
    otsk = smdp_otsk if smdp_otsk is not None else crypto.generate_private_key(curve)
    smdp_otpk = crypto.public_point(otsk.public_key())
    isc = build_initialise_secure_channel(
        transaction_id=transaction_id,
        host_id=host_id,
        smdp_otpk=smdp_otpk,
        euicc_otpk=euicc_otpk_point,
        smdp_pb_key=smdp_pb_key,
    )
    keys = scp03t.derive_session_keys(
        crypto.ecdh_shared_secret(otsk, euicc_otpk), host_id=host_id, eid=eid
    )
    channel = scp03t.SecureChannel.from_session_keys(keys)
    encrypted_chunk = max_plaintext(encrypted=True)
    chunk = encrypted_chunk if profile_chunk_size is None else profile_chunk_size
    if not 0 < chunk <= encrypted_chunk:
        raise ValueError(f"profile_chunk_size must be 1..{encrypted_chunk}, got {chunk}")

    body = isc
    body += _sequence(_TAG_CONFIGURE_ISDP, _protect(channel, 0x87, configure_isdp, encrypted_chunk))
    mac_chunk = max_plaintext(encrypted=False)
    body += _sequence(_TAG_METADATA, _protect(channel, 0x88, store_metadata, mac_chunk))
    if replace_session_keys:
        if ppk is None:
            ppk = PpkKeys(random_bytes(16), random_bytes(16), random_bytes(16))
        request = schema.encode(
            "ReplaceSessionKeysRequest",
            {
                "initialMacChainingValue": ppk.initial_mcv,
                "ppkEnc": ppk.ppk_enc,
                "ppkCmac": ppk.ppk_mac,
            },
        )
        body += _sequence(_TAG_REPLACE_KEYS, _protect(channel, 0x87, request, encrypted_chunk))
        channel.replace_keys(ppk.ppk_enc, ppk.ppk_mac, ppk.initial_mcv)
    body += _sequence(_TAG_PROFILE, _protect(channel, 0x86, upp, chunk))
    return BoundProfilePackage(tlv.encode_tlv(_TAG_BPP, body), smdp_otpk)


def _sequence(tag: bytes, segments: list[bytes]) -> bytes:
    return tlv.encode_tlv(tag, b"".join(segments))


def split_bpp_for_loading(bpp: bytes) -> list[bytes]:
    """The ES10b LoadBoundProfilePackage payloads of ``bpp``, in sending order (SGP.22 §5.7.6).

    ``BF36`` header + the complete ``BF23``; the complete ``A0``; the ``A1`` header; each
    ``88``; the complete ``A2`` (if present); the ``A3`` header; each ``86``. Headers are
    sliced from ``bpp`` as they are (no re-encoding).

    Raises:
        BppFormatError: ``bpp`` is not one BF36 TLV with that layout.
    """
    bpp = bytes(bpp)
    try:
        return _split(bpp)
    except tlv.TlvError as exc:
        raise BppFormatError(f"malformed BPP: {exc}") from None


def _split(bpp: bytes) -> list[bytes]:
    outer = tlv.read_tlv(bpp)
    if outer.tag != _TAG_BPP or outer.end != len(bpp):
        raise BppFormatError("not exactly one BF36 TLV")
    children = _with_starts(bpp, outer.value_start, outer.value_end)
    tags = [child.tag for _, child in children]
    expected = [_TAG_ISC, _TAG_CONFIGURE_ISDP, _TAG_METADATA, _TAG_REPLACE_KEYS, _TAG_PROFILE]
    if tags not in (expected, expected[:3] + expected[4:]):
        shown = " ".join(t.hex().upper() for t in tags)
        raise BppFormatError(f"BF36 holds {shown}, expected BF23 A0 A1 [A2] A3")
    payloads = []
    for start, child in children:
        if child.tag == _TAG_ISC:
            payloads.append(bpp[: outer.value_start] + bpp[start : child.end])
        elif child.tag in (_TAG_METADATA, _TAG_PROFILE):
            segment_tag = b"\x88" if child.tag == _TAG_METADATA else b"\x86"
            payloads.append(bpp[start : child.value_start])
            for seg_start, segment in _with_starts(bpp, child.value_start, child.value_end):
                if segment.tag != segment_tag:
                    raise BppFormatError(
                        f"{child.tag.hex().upper()} holds a {segment.tag.hex().upper()} TLV"
                    )
                payloads.append(bpp[seg_start : segment.end])
        else:
            payloads.append(bpp[start : child.end])
    return payloads


def _with_starts(data: bytes, start: int, end: int) -> list[tuple[int, tlv.Tlv]]:
    """The TLVs in ``data[start:end]`` with the offset where each one begins."""
    found = []
    pos = start
    for item in tlv.iter_tlvs(data, start, end):
        found.append((pos, item))
        pos = item.end
    return found
