"""EimConfigurationData (SGP.32 v1.2), encoded by hand so that the bytes are exactly what the
card stores and what an eIM sends: the card answers it in GetEimConfigurationData, an eIM puts
it in AddInitialEim and in the addEim/updateEim eCOs (implicit tags ``A8``/``AA``)."""

from __future__ import annotations

from collections.abc import Iterable

from euicc_protocol import schema, tlv

__all__ = ["encode_eim_configuration"]


def encode_eim_configuration(
    *,
    eim_id: str,
    eim_fqdn: str | None = None,
    eim_id_type: int | None = None,
    counter_value: int | None = None,
    association_token: int | None = None,
    eim_public_key: bytes | None = None,
    eim_certificate: bytes | None = None,
    trusted_eim_pk_tls: bytes | None = None,
    trusted_certificate_tls: bytes | None = None,
    supported_protocols: Iterable[int] | None = None,
    euicc_ci_pkid: bytes | None = None,
    indirect_profile_download: bool = False,
    tag: bytes = b"\x30",
) -> bytes:
    """The DER TLV of one EimConfigurationData; keys are SubjectPublicKeyInfo DER and
    certificates DER (each goes in with its ``30`` replaced by the CHOICE's ``A0``/``A1``)."""
    parts = [tlv.encode_tlv(b"\x80", eim_id.encode("utf-8"))]
    if eim_fqdn is not None:
        parts.append(tlv.encode_tlv(b"\x81", eim_fqdn.encode("utf-8")))
    numbers = ((b"\x82", eim_id_type), (b"\x83", counter_value), (b"\x84", association_token))
    for t, number in numbers:
        if number is not None:
            parts.append(tlv.encode_tlv(t, tlv.der_integer(number)))
    for t, key, cert in (
        (b"\xa5", eim_public_key, eim_certificate),
        (b"\xa6", trusted_eim_pk_tls, trusted_certificate_tls),
    ):
        # [5]/[6] wrap a CHOICE explicitly; its [0]/[1] replace the 30 of the DER.
        if key is not None:
            parts.append(tlv.encode_tlv(t, b"\xa0" + key[1:]))
        elif cert is not None:
            parts.append(tlv.encode_tlv(t, b"\xa1" + cert[1:]))
    if supported_protocols is not None:
        data, nbits = schema.bits(supported_protocols)
        parts.append(tlv.encode_tlv(b"\x87", bytes([len(data) * 8 - nbits]) + data))
    if euicc_ci_pkid is not None:
        parts.append(tlv.encode_tlv(b"\x88", euicc_ci_pkid))
    if indirect_profile_download:
        parts.append(b"\x89\x00")
    return tlv.encode_tlv(tag, b"".join(parts))
