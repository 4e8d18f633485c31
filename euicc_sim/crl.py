"""ES10b.LoadCRL (``BF35``): certificate revocation lists from a CI, and what they revoke.

LoadCRL is optional in SGP.22 v2.5 and part of the ES10 module SGP.32 v1.2 uses; this card
supports it and says so (``rspCapability.crlSupport``).

Rules
=====

1. The request is ``BF35 { A0 <CertificateList content> }`` (the CRL's ``30`` replaced by the
   automatic tag). Not that shape: status word ``6A80``. Checks, in order; the first failure
   answers ``loadCRLResponseError`` and changes nothing:

   ====================================================  =====================================
   condition                                             error
   ====================================================  =====================================
   not an X.509 CRL, or no authorityKeyIdentifier or     invalidCRLFormat (2) (the SGP.22 CRL
   no cRLNumber extension                                profile requires both)
   the AKI names no CI key of the card                   verificationKeyNotFound (4)
   the CI key does not verify the signature              invalidSignature (1)
   a delta CRL whose base the card does not hold         baseCrlMissing (6)
   (no CRL of that CI with crlNumber >= baseCRLNumber)
   the card holds a CRL of that CI with a higher         fresherCrlAlreadyLoaded (5)
   crlNumber
   more than ``CardConfig.max_crl_entries`` revoked      notEnoughMemorySpace (3)
   serial numbers over all CIs afterwards
   ====================================================  =====================================

2. A full CRL replaces the CI's list (the same crlNumber again changes nothing). A delta CRL
   adds its entries to the base and removes those whose reason is removeFromCRL.
3. A partial CRL (extensions id-rsp-totalPartialCrlNumber and id-rsp-partialCrlNumber) is one
   part of a set sharing a crlNumber: parts add up; the answer lists the ``missingParts``.
   Until the set is complete the card keeps applying the list it replaces as well, so a
   half-loaded set never un-revokes anything.
4. Effect: a CERT.DPauth (AuthenticateServer) or CERT.DPpb (PrepareDownload) whose serial
   number is revoked by its CI is refused with invalidCertificate (1).
5. The card has no trusted clock: thisUpdate/nextUpdate are not checked.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ObjectIdentifier

from euicc_protocol import schema, tlv

from .apdu import StatusWordError
from .isdr import IsdrContext, RawHandler
from .registry import HandlerTable
from .state import StoredCrl

__all__ = ["HANDLERS", "load_crl"]

log = logging.getLogger(__name__)

HANDLERS = HandlerTable()

INVALID_SIGNATURE = 1
INVALID_CRL_FORMAT = 2
NOT_ENOUGH_MEMORY = 3
VERIFICATION_KEY_NOT_FOUND = 4
FRESHER_CRL_ALREADY_LOADED = 5
BASE_CRL_MISSING = 6

TOTAL_PARTIAL_CRL_NUMBER = ObjectIdentifier("2.23.146.1.2.0.2")
PARTIAL_CRL_NUMBER = ObjectIdentifier("2.23.146.1.2.0.3")


class _Refused(Exception):
    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code


def _response(value: tuple[str, object]) -> bytes:
    return schema.encode("LoadCRLResponse", value)


def load_crl(ctx: IsdrContext, request: bytes) -> bytes:
    """ES10b.LoadCRL (see the module rules)."""
    der = _crl_der(request)
    try:
        new = _apply(ctx, der)
    except _Refused as refused:
        log.info("LoadCRL refused (%d): %s", refused.code, refused)
        return _response(("loadCRLResponseError", refused.code))
    kept = tuple(c for c in ctx.state.crls if c.ci_pkid != new.ci_pkid) + (new,)
    ctx.commit(replace(ctx.state, crls=kept))
    ok = {"missingParts": new.missing_parts} if new.missing_parts else {}
    return _response(("loadCRLResponseOk", ok))


def _crl_der(request: bytes) -> bytes:
    """The CertificateList DER inside ``BF35 { A0 ... }``."""
    try:
        outer = tlv.read_tlv(request)
        inner = tlv.read_tlv(request, outer.value_start)
    except tlv.TlvError:
        raise StatusWordError(0x6A80) from None
    if (
        outer.tag != b"\xbf\x35"
        or outer.end != len(request)
        or inner.tag != b"\xa0"
        or inner.end != outer.value_end
    ):
        raise StatusWordError(0x6A80)
    return b"\x30" + request[outer.value_start + 1 : inner.end]


def _apply(ctx: IsdrContext, der: bytes) -> StoredCrl:
    """The CI's CRL entry after loading ``der``; raises :class:`_Refused`."""
    try:
        crl = x509.load_der_x509_crl(der)
        aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        entries = {r.serial_number: _removed(r) for r in crl}
        total, part = _partial(crl)
    except (ValueError, x509.ExtensionNotFound) as exc:
        raise _Refused(INVALID_CRL_FORMAT, f"not a CRL of the SGP.22 profile: {exc}") from None
    ci_pkid = aki.key_identifier
    key = ctx.credentials.ci_public_keys.get(ci_pkid) if ci_pkid else None
    if ci_pkid is None or key is None:
        raise _Refused(VERIFICATION_KEY_NOT_FOUND, "the CRL's issuer is no CI of this card")
    if not isinstance(key, ec.EllipticCurvePublicKey) or not crl.is_signature_valid(key):
        raise _Refused(INVALID_SIGNATURE, "the CI key does not verify the CRL")
    stored = ctx.state.crl_for(ci_pkid)
    revoked = frozenset(serial for serial, removed in entries.items() if not removed)
    new = _merge(stored, ci_pkid, number, crl, revoked, entries, total, part)
    others = sum(len(c.applied) for c in ctx.state.crls if c.ci_pkid != ci_pkid)
    if others + len(new.applied) > ctx.config.max_crl_entries:
        raise _Refused(NOT_ENOUGH_MEMORY, "no room for that many revoked certificates")
    return new


def _merge(
    stored: StoredCrl | None,
    ci_pkid: bytes,
    number: int,
    crl: x509.CertificateRevocationList,
    revoked: frozenset[int],
    entries: dict[int, bool],
    total: int,
    part: int,
) -> StoredCrl:
    try:
        base = crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator).value.crl_number
    except x509.ExtensionNotFound:
        base = None
    if base is not None:
        if stored is None or stored.crl_number < base or stored.missing_parts:
            raise _Refused(BASE_CRL_MISSING, f"no base CRL {base} of this CI is loaded")
        if stored.crl_number > number:
            raise _Refused(FRESHER_CRL_ALREADY_LOADED, f"CRL {stored.crl_number} is newer")
        removed = {serial for serial, gone in entries.items() if gone}
        return replace(stored, crl_number=number, revoked=(stored.revoked | revoked) - removed)
    if stored is not None and stored.crl_number > number:
        raise _Refused(FRESHER_CRL_ALREADY_LOADED, f"CRL {stored.crl_number} is newer")
    if not total:
        return StoredCrl(ci_pkid, number, revoked)
    if stored is not None and (stored.crl_number, stored.total_parts) == (number, total):
        parts, so_far, previous = stored.parts | {part}, stored.revoked | revoked, stored.previous
    else:  # the first part of a new set: keep applying what it replaces until it is complete
        parts, so_far = frozenset({part}), revoked
        previous = stored.applied if stored is not None else frozenset()
    if len(parts) == total:
        previous = frozenset()
    return StoredCrl(ci_pkid, number, so_far, total, parts, previous)


def _removed(entry: x509.RevokedCertificate) -> bool:
    """Whether a delta CRL entry takes the certificate off the list (reason removeFromCRL)."""
    try:
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return False
    return reason is x509.ReasonFlags.remove_from_crl


def _partial(crl: x509.CertificateRevocationList) -> tuple[int, int]:
    """(totalPartialCrlNumber, partialCrlNumber), (0, 0) for a CRL that is not partial."""
    values = {}
    for oid in (TOTAL_PARTIAL_CRL_NUMBER, PARTIAL_CRL_NUMBER):
        try:
            ext = crl.extensions.get_extension_for_oid(oid).value
        except x509.ExtensionNotFound:
            continue
        assert isinstance(ext, x509.UnrecognizedExtension)
        values[oid] = _der_integer(ext.value)
    if not values:
        return 0, 0
    total, part = values.get(TOTAL_PARTIAL_CRL_NUMBER), values.get(PARTIAL_CRL_NUMBER)
    if total is None or part is None or not 1 <= part <= total:
        raise ValueError("partial CRL numbers missing or out of range")
    return total, part


def _der_integer(value: bytes) -> int:
    item = tlv.read_tlv(value)
    if item.tag != b"\x02" or item.end != len(value) or item.value_end == item.value_start:
        raise ValueError("not a DER INTEGER")
    return int.from_bytes(item.value(value), "big", signed=True)


HANDLERS.handles("LoadCRLRequest")(RawHandler(load_crl))
