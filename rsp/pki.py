"""RSP certificates the way SGP.22 defines them, and a test PKI in the SGP.26 shape.

Chain checks here are GSMA checks, not RFC 5280 path validation (PROTOCOL.md §8.2, 21a):

* every link is checked by AuthorityKeyIdentifier == issuer SubjectKeyIdentifier, by an
  ECDSA-SHA256 signature and by both keys being on the same supported curve;
* the issuer of EUM and SM-DP+/SM-DS certificates is a CI looked up by SKI in the trusted CI
  keys (the eUICC holds CI public keys, not CI certificates);
* each certificate carries exactly one GSMA role in certificatePolicies (2.23.146.1.2.1.x);
* the EUM's nameConstraints are read with GSMA semantics: the ``serialNumber`` of a permitted
  directoryName (and, if present, the SGP.22 v3 permittedEins extension) is an EIN prefix
  that the EID in the eUICC certificate's subject serialNumber must start with.

Validity periods are checked only when the caller passes ``at`` (an eUICC has no clock;
servers pass the current time).

Decision for eIM certificates (SGP.32 ``eimCertificate``): trust in an eIM key comes from its
configuration in the eUICC, so :func:`check_eim_certificate` accepts a self-signed
certificate (what onomondo-eim and :func:`generate_test_pki` use) or one whose AKI names a
trusted CI; either way the signature is checked, no GSMA role is required, and the key is
returned for verifying ``eimSignature``.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature as _LibInvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

from rsp import crypto
from rsp.crypto import Curve
from rsp.eid import InvalidEid, is_valid_eid, make_eid

__all__ = [
    "SGP26_DIR",
    "BadCertificateSignature",
    "CertRole",
    "CertificateError",
    "CertificateExpired",
    "Credential",
    "EidNotPermitted",
    "InvalidCertificate",
    "IssuerMismatch",
    "TestPki",
    "UnknownCi",
    "UnsupportedCurve",
    "WrongRole",
    "authority_key_id",
    "cert_curve",
    "cert_role",
    "cert_roles",
    "check_ci_certificate",
    "check_eim_certificate",
    "check_euicc_chain",
    "check_server_certificate",
    "check_validity",
    "generate_test_pki",
    "issue_euicc_certificate",
    "issue_server_certificate",
    "load_certificate",
    "load_private_key",
    "load_public_key",
    "load_sgp26",
    "permitted_eid_prefixes",
    "rid_oid",
    "subject_key_id",
    "subject_serial_number",
    "trusted_ci_keys",
    "verify_issued_by",
]

#: The SGP.26 test set shipped with the package (see its README.md).
SGP26_DIR = Path(__file__).with_name("data") / "sgp26"

#: id-rsp-cert-objects 2.0: permittedEins of SGP.22 v3 EUM certificates (unconfirmed OID).
_PERMITTED_EINS_OID = x509.ObjectIdentifier("2.23.146.1.2.2.0")
_FAR_FUTURE = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)


class CertRole(enum.Enum):
    """GSMA RSP certificate roles, valued by their certificatePolicies OID (id-rspRole-*)."""

    CI = "2.23.146.1.2.1.0"
    EUICC = "2.23.146.1.2.1.1"
    EUM = "2.23.146.1.2.1.2"
    DP_TLS = "2.23.146.1.2.1.3"
    DP_AUTH = "2.23.146.1.2.1.4"
    DP_PB = "2.23.146.1.2.1.5"
    DS_TLS = "2.23.146.1.2.1.6"
    DS_AUTH = "2.23.146.1.2.1.7"

    @property
    def label(self) -> str:
        """The short name SGP.22 uses for certificates of this role (``DPauth``, ...)."""
        return _ROLE_LABELS[self]


_ROLE_LABELS = {
    CertRole.CI: "CI",
    CertRole.EUICC: "eUICC",
    CertRole.EUM: "EUM",
    CertRole.DP_TLS: "DPtls",
    CertRole.DP_AUTH: "DPauth",
    CertRole.DP_PB: "DPpb",
    CertRole.DS_TLS: "DStls",
    CertRole.DS_AUTH: "DSauth",
}
_SERVER_ROLES = frozenset(
    {CertRole.DP_AUTH, CertRole.DP_PB, CertRole.DP_TLS, CertRole.DS_AUTH, CertRole.DS_TLS}
)
_TLS_ROLES = frozenset({CertRole.DP_TLS, CertRole.DS_TLS})


# --------------------------------------------------------------------------- errors


class CertificateError(Exception):
    """Base class of certificate errors; ``which`` names the certificate (``EUM``, ...)."""

    def __init__(self, message: str, *, which: str | None = None) -> None:
        super().__init__(f"{which} certificate: {message}" if which else message)
        self.which = which


class InvalidCertificate(CertificateError):
    """A certificate is malformed or fails a check (SGP.22 ``invalidCertificate``)."""


class BadCertificateSignature(InvalidCertificate):
    """The certificate's signature does not verify with its issuer's key."""


class IssuerMismatch(InvalidCertificate):
    """The AuthorityKeyIdentifier does not match the SKI of the expected issuer."""


class WrongRole(InvalidCertificate):
    """The certificatePolicies role is not the one this use requires."""


class EidNotPermitted(InvalidCertificate):
    """The EID of an eUICC certificate is outside its EUM's permitted EIN prefixes."""


class CertificateExpired(InvalidCertificate):
    """The certificate is not valid at the time given (expired or not yet valid)."""


class UnsupportedCurve(CertificateError):
    """A key is not on P-256 or brainpoolP256r1 (SGP.22 ``unsupportedCurve``)."""


class UnknownCi(CertificateError):
    """The certificate's AKI names no trusted CI (SGP.22 ``ciPKUnknown``)."""


# --------------------------------------------------------------------------- loading


def load_certificate(data: bytes) -> x509.Certificate:
    """Load an X.509 certificate from DER or PEM bytes.

    Raises:
        InvalidCertificate: the bytes are not a certificate.
    """
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise InvalidCertificate(f"cannot parse certificate: {exc}") from None


def load_private_key(data: bytes) -> ec.EllipticCurvePrivateKey:
    """Load an unencrypted EC private key from PEM (SEC1 or PKCS#8) or DER.

    Raises:
        UnsupportedCurve: not an EC key on a supported curve.
        ValueError: the bytes are not a private key.
    """
    if data.lstrip().startswith(b"-----BEGIN"):
        key = serialization.load_pem_private_key(data, password=None)
    else:
        key = serialization.load_der_private_key(data, password=None)
    _curve_of(key)
    if not isinstance(key, ec.EllipticCurvePrivateKey):  # for the type checker
        raise UnsupportedCurve("not an EC private key")
    return key


def load_public_key(data: bytes) -> ec.EllipticCurvePublicKey:
    """Load an EC public key from a PEM or DER SubjectPublicKeyInfo (e.g. eimPublicKey).

    Raises:
        UnsupportedCurve: not an EC key on a supported curve.
        ValueError: the bytes are not a public key.
    """
    if data.lstrip().startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(data)
    else:
        key = serialization.load_der_public_key(data)
    _curve_of(key)
    if not isinstance(key, ec.EllipticCurvePublicKey):  # for the type checker
        raise UnsupportedCurve("not an EC public key")
    return key


def _ec_key(cert: x509.Certificate, which: str | None = None) -> ec.EllipticCurvePublicKey:
    key = cert.public_key()
    _curve_of(key, which)
    if not isinstance(key, ec.EllipticCurvePublicKey):  # for the type checker
        raise UnsupportedCurve("not an EC key", which=which)
    return key


def _curve_of(key: object, which: str | None = None) -> Curve:
    try:
        return Curve.of_key(key)
    except crypto.UnsupportedKey as exc:
        raise UnsupportedCurve(str(exc), which=which) from None


# --------------------------------------------------------------------------- inspection


def cert_curve(cert: x509.Certificate) -> Curve:
    """Return the curve of the certificate's public key.

    Raises:
        UnsupportedCurve: not an EC key on a supported curve.
    """
    return _curve_of(cert.public_key())


def _extension(cert: x509.Certificate, ext_type: type[x509.ExtensionType]) -> object | None:
    try:
        return cert.extensions.get_extension_for_class(ext_type).value
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:
        # cryptography parses extensions lazily; a malformed one surfaces here.
        raise InvalidCertificate(f"malformed extension: {exc}") from None


def cert_roles(cert: x509.Certificate) -> frozenset[CertRole]:
    """Return every GSMA role found in the certificatePolicies extension."""
    policies = _extension(cert, x509.CertificatePolicies)
    if not isinstance(policies, x509.CertificatePolicies):
        return frozenset()
    known = {role.value: role for role in CertRole}
    return frozenset(
        known[p.policy_identifier.dotted_string]
        for p in policies
        if p.policy_identifier.dotted_string in known
    )


def cert_role(cert: x509.Certificate) -> CertRole | None:
    """Return the certificate's GSMA role, or ``None`` if it has none.

    Raises:
        InvalidCertificate: it carries more than one GSMA role.
    """
    roles = cert_roles(cert)
    if len(roles) > 1:
        names = ", ".join(sorted(r.label for r in roles))
        raise InvalidCertificate(f"has several GSMA roles ({names})")
    return next(iter(roles), None)


def rid_oid(cert: x509.Certificate) -> str | None:
    """Return the first subjectAltName registeredID (the entity OID), or ``None``."""
    san = _extension(cert, x509.SubjectAlternativeName)
    if not isinstance(san, x509.SubjectAlternativeName):
        return None
    rids = san.get_values_for_type(x509.RegisteredID)
    return rids[0].dotted_string if rids else None


def subject_key_id(cert: x509.Certificate) -> bytes | None:
    """Return the SubjectKeyIdentifier value, or ``None`` if absent."""
    ski = _extension(cert, x509.SubjectKeyIdentifier)
    return ski.digest if isinstance(ski, x509.SubjectKeyIdentifier) else None


def authority_key_id(cert: x509.Certificate) -> bytes | None:
    """Return the keyIdentifier of the AuthorityKeyIdentifier, or ``None`` if absent."""
    aki = _extension(cert, x509.AuthorityKeyIdentifier)
    return aki.key_identifier if isinstance(aki, x509.AuthorityKeyIdentifier) else None


def subject_serial_number(cert: x509.Certificate) -> str | None:
    """Return the subject's serialNumber attribute (the EID of an eUICC certificate)."""
    attrs = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    return str(attrs[0].value) if attrs else None


def _permitted_dir_names(eum_cert: x509.Certificate) -> list[x509.Name]:
    constraints = _extension(eum_cert, x509.NameConstraints)
    if not isinstance(constraints, x509.NameConstraints):
        return []
    return [
        subtree.value
        for subtree in constraints.permitted_subtrees or ()
        if isinstance(subtree, x509.DirectoryName)
    ]


def permitted_eid_prefixes(eum_cert: x509.Certificate) -> tuple[str, ...]:
    """Return the EIN prefixes an EUM may issue EIDs under.

    Read from the serialNumber of nameConstraints' permitted directoryNames (SGP.22 v2) and
    from the permittedEins extension of SGP.22 v3 EUM variants, if present.
    """
    prefixes = [
        str(attr.value)
        for name in _permitted_dir_names(eum_cert)
        for attr in name.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    ]
    try:
        ext = eum_cert.extensions.get_extension_for_oid(_PERMITTED_EINS_OID).value
    except x509.ExtensionNotFound:
        ext = None
    except ValueError as exc:
        raise InvalidCertificate(f"malformed extension: {exc}", which="EUM") from None
    if isinstance(ext, x509.UnrecognizedExtension):
        prefixes.extend(_parse_permitted_eins(ext.value))
    return tuple(dict.fromkeys(prefixes))


def _parse_permitted_eins(der: bytes) -> list[str]:
    """Parse ``SEQUENCE OF PrintableString`` (short-form or long-form lengths)."""

    def read(data: bytes, pos: int) -> tuple[int, bytes, int]:
        if pos + 2 > len(data):
            raise InvalidCertificate("permittedEins extension is truncated", which="EUM")
        tag, length, pos = data[pos], data[pos + 1], pos + 2
        if length & 0x80:
            count = length & 0x7F
            length, pos = int.from_bytes(data[pos : pos + count], "big"), pos + count
        if pos + length > len(data):
            raise InvalidCertificate("permittedEins extension is truncated", which="EUM")
        return tag, data[pos : pos + length], pos + length

    tag, body, end = read(der, 0)
    if tag != 0x30 or end != len(der):
        raise InvalidCertificate("permittedEins extension is not a SEQUENCE", which="EUM")
    eins, pos = [], 0
    while pos < len(body):
        tag, value, pos = read(body, pos)
        if tag not in (0x13, 0x0C):  # PrintableString; UTF8String tolerated
            raise InvalidCertificate(f"permittedEins item has tag {tag:#04x}", which="EUM")
        eins.append(value.decode("ascii", errors="replace"))
    return eins


# --------------------------------------------------------------------------- checks


def verify_issued_by(
    cert: x509.Certificate,
    issuer_public_key: ec.EllipticCurvePublicKey,
    issuer_ski: bytes,
    *,
    which: str | None = None,
) -> None:
    """Check one chain link: algorithm, same curve, AKI == ``issuer_ski``, signature.

    Raises:
        UnsupportedCurve: a key is not on a supported curve.
        InvalidCertificate: wrong signature algorithm, curves differ, or no AKI.
        IssuerMismatch: the AKI names another key.
        BadCertificateSignature: the signature does not verify.
    """
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        raise InvalidCertificate(
            f"signature algorithm {cert.signature_algorithm_oid.dotted_string} is not "
            "ecdsa-with-SHA256",
            which=which,
        )
    issuer_curve = _curve_of(issuer_public_key, which=which)
    own_curve = _curve_of(cert.public_key(), which=which)
    if own_curve is not issuer_curve:
        raise InvalidCertificate(
            f"key is on {own_curve.value} but the issuer's is on {issuer_curve.value}",
            which=which,
        )
    aki = authority_key_id(cert)
    if aki is None:
        raise InvalidCertificate("has no AuthorityKeyIdentifier", which=which)
    if aki != issuer_ski:
        raise IssuerMismatch(
            f"AuthorityKeyIdentifier {aki.hex().upper()} does not match the issuer's "
            f"SubjectKeyIdentifier {issuer_ski.hex().upper()}",
            which=which,
        )
    try:
        issuer_public_key.verify(
            cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256())
        )
    except _LibInvalidSignature:
        raise BadCertificateSignature(
            "signature does not verify with the issuer's public key", which=which
        ) from None


def check_validity(cert: x509.Certificate, at: dt.datetime, *, which: str | None = None) -> None:
    """Check that ``at`` lies within the certificate's validity period.

    Raises:
        CertificateExpired: it does not.
    """
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    if at < cert.not_valid_before_utc:
        raise CertificateExpired(f"not valid before {cert.not_valid_before_utc}", which=which)
    if at > cert.not_valid_after_utc:
        raise CertificateExpired(f"expired at {cert.not_valid_after_utc}", which=which)


def _require_role(cert: x509.Certificate, role: CertRole, which: str) -> None:
    found = cert_role(cert)
    if found is not role:
        got = found.label if found else "no GSMA role"
        raise WrongRole(
            f"has role {got} ({found.value if found else '-'}) but {role.label} "
            f"({role.value}) is required",
            which=which,
        )


def _require_key_usage(cert: x509.Certificate, usage: str, which: str) -> None:
    ku = _extension(cert, x509.KeyUsage)
    if not isinstance(ku, x509.KeyUsage) or not getattr(ku, usage):
        raise InvalidCertificate(f"keyUsage does not include {usage}", which=which)


def _require_ski(cert: x509.Certificate, which: str) -> bytes:
    ski = subject_key_id(cert)
    if ski is None:
        raise InvalidCertificate("has no SubjectKeyIdentifier", which=which)
    return ski


def _is_ca(cert: x509.Certificate) -> bool:
    bc = _extension(cert, x509.BasicConstraints)
    return isinstance(bc, x509.BasicConstraints) and bc.ca


def _ci_key_for(
    cert: x509.Certificate, ci_keys: Mapping[bytes, ec.EllipticCurvePublicKey], which: str
) -> tuple[bytes, ec.EllipticCurvePublicKey]:
    aki = authority_key_id(cert)
    if aki is None:
        raise InvalidCertificate("has no AuthorityKeyIdentifier", which=which)
    key = ci_keys.get(aki)
    if key is None:
        raise UnknownCi(f"issued by unknown CI {aki.hex().upper()}", which=which)
    return aki, key


def check_ci_certificate(cert: x509.Certificate, *, at: dt.datetime | None = None) -> bytes:
    """Check a CI (root) certificate and return its SKI, the CI public key identifier.

    Raises:
        CertificateError: not a self-signed CA with role CI, keyCertSign and an SKI.
    """
    which = "CI"
    ski = _require_ski(cert, which)
    _require_role(cert, CertRole.CI, which)
    if not _is_ca(cert):
        raise InvalidCertificate("basicConstraints CA is not set", which=which)
    _require_key_usage(cert, "key_cert_sign", which)
    key = _ec_key(cert, which)
    if authority_key_id(cert) is None:
        # SGP.26 CIs have no AKI; check the self-signature directly.
        _verify_signature_only(cert, key, which)
    else:
        verify_issued_by(cert, key, ski, which=which)
    if at is not None:
        check_validity(cert, at, which=which)
    return ski


def _verify_signature_only(
    cert: x509.Certificate, key: ec.EllipticCurvePublicKey, which: str
) -> None:
    _curve_of(key, which)
    try:
        key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    except _LibInvalidSignature:
        raise BadCertificateSignature("self-signature does not verify", which=which) from None


def trusted_ci_keys(
    ci_certs: Iterable[x509.Certificate],
) -> dict[bytes, ec.EllipticCurvePublicKey]:
    """Check CI certificates and map each CI's SKI to its public key (the ``ci_keys`` input)."""
    keys: dict[bytes, ec.EllipticCurvePublicKey] = {}
    for cert in ci_certs:
        keys[check_ci_certificate(cert)] = _ec_key(cert, "CI")
    return keys


def check_euicc_chain(
    euicc_cert: x509.Certificate,
    eum_cert: x509.Certificate,
    ci_keys: Mapping[bytes, ec.EllipticCurvePublicKey],
    *,
    at: dt.datetime | None = None,
) -> str:
    """Check CI → EUM → eUICC with SGP.22 rules and return the EID.

    ``ci_keys`` maps CI SKIs to CI public keys. The EID is the eUICC subject serialNumber;
    it must be a valid EID starting with one of the EUM's permitted EIN prefixes (and the
    subject O must match the constraint's O where one is given).

    Raises:
        UnknownCi: the EUM's AKI is not in ``ci_keys``.
        UnsupportedCurve, InvalidCertificate (and its subclasses ``IssuerMismatch``,
        ``BadCertificateSignature``, ``WrongRole``, ``EidNotPermitted``,
        ``CertificateExpired``): the check that failed, with ``which`` = "EUM" or "eUICC".
    """
    ci_ski, ci_key = _ci_key_for(eum_cert, ci_keys, "EUM")
    verify_issued_by(eum_cert, ci_key, ci_ski, which="EUM")
    _require_role(eum_cert, CertRole.EUM, "EUM")
    if not _is_ca(eum_cert):
        raise InvalidCertificate("basicConstraints CA is not set", which="EUM")
    _require_key_usage(eum_cert, "key_cert_sign", "EUM")
    eum_ski = _require_ski(eum_cert, "EUM")
    eum_key = _ec_key(eum_cert, "EUM")

    verify_issued_by(euicc_cert, eum_key, eum_ski, which="eUICC")
    _require_role(euicc_cert, CertRole.EUICC, "eUICC")
    _require_key_usage(euicc_cert, "digital_signature", "eUICC")
    if _is_ca(euicc_cert):
        raise InvalidCertificate("an eUICC certificate must not be a CA", which="eUICC")
    eid = subject_serial_number(euicc_cert)
    if eid is None or not is_valid_eid(eid):
        raise InvalidCertificate(f"subject serialNumber {eid!r} is not a valid EID", which="eUICC")
    _check_eid_permitted(euicc_cert, eum_cert, eid)

    if at is not None:
        check_validity(eum_cert, at, which="EUM")
        check_validity(euicc_cert, at, which="eUICC")
    return eid


def _check_eid_permitted(
    euicc_cert: x509.Certificate, eum_cert: x509.Certificate, eid: str
) -> None:
    prefixes = permitted_eid_prefixes(eum_cert)
    if not prefixes:
        raise InvalidCertificate(
            "has no permitted EIN (nameConstraints serialNumber / permittedEins)", which="EUM"
        )
    if not any(eid.startswith(prefix) for prefix in prefixes):
        raise EidNotPermitted(
            f"EID {eid} does not start with a permitted EIN of its EUM ({', '.join(prefixes)})",
            which="eUICC",
        )
    orgs = {
        str(attr.value)
        for name in _permitted_dir_names(eum_cert)
        for attr in name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    }
    subject_orgs = {
        str(a.value) for a in euicc_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    }
    if orgs and not orgs & subject_orgs:
        raise EidNotPermitted(
            f"subject O {sorted(subject_orgs)} is not the EUM's permitted O {sorted(orgs)}",
            which="eUICC",
        )


def check_server_certificate(
    cert: x509.Certificate,
    ci_keys: Mapping[bytes, ec.EllipticCurvePublicKey],
    role: CertRole,
    *,
    at: dt.datetime | None = None,
) -> str:
    """Check an SM-DP+ / SM-DS certificate issued by a trusted CI; return its entity OID.

    ``role`` is the role this use requires (DP_AUTH for serverCertificate, DP_PB for
    smdpCertificate, ...). TLS roles also need extendedKeyUsage serverAuth.

    Raises:
        ValueError: ``role`` is not a server role.
        UnknownCi, UnsupportedCurve, InvalidCertificate (``WrongRole`` when the certificate
        has another role, e.g. DPauth where DPpb is required).
    """
    if role not in _SERVER_ROLES:
        raise ValueError(f"{role.label} is not an SM-DP+/SM-DS role")
    which = role.label
    ci_ski, ci_key = _ci_key_for(cert, ci_keys, which)
    verify_issued_by(cert, ci_key, ci_ski, which=which)
    _require_role(cert, role, which)
    _require_key_usage(cert, "digital_signature", which)
    if role in _TLS_ROLES:
        eku = _extension(cert, x509.ExtendedKeyUsage)
        if not isinstance(eku, x509.ExtendedKeyUsage) or ExtendedKeyUsageOID.SERVER_AUTH not in eku:
            raise InvalidCertificate("extendedKeyUsage lacks serverAuth", which=which)
    oid = rid_oid(cert)
    if oid is None:
        raise InvalidCertificate("has no subjectAltName registeredID", which=which)
    if at is not None:
        check_validity(cert, at, which=which)
    return oid


def check_eim_certificate(
    cert: x509.Certificate,
    ci_keys: Mapping[bytes, ec.EllipticCurvePublicKey] | None = None,
    *,
    at: dt.datetime | None = None,
) -> ec.EllipticCurvePublicKey:
    """Check an eIM certificate and return its public key (for eimSignature).

    Accepted: self-signed (AKI absent or equal to its SKI) or issued by a CI in ``ci_keys``.
    If a keyUsage is present it must allow digitalSignature.

    Raises:
        UnknownCi: the AKI names neither the certificate itself nor a trusted CI.
        UnsupportedCurve, InvalidCertificate: the check that failed (``which`` = "eIM").
    """
    which = "eIM"
    key = _ec_key(cert, which)
    aki, ski = authority_key_id(cert), subject_key_id(cert)
    if aki is None or aki == ski:
        if cert.issuer != cert.subject:
            raise InvalidCertificate("is neither self-signed nor issued by a CI", which=which)
        if aki is None:
            _verify_signature_only(cert, key, which)
        else:
            verify_issued_by(cert, key, aki, which=which)
    else:
        ci_ski, ci_key = _ci_key_for(cert, ci_keys or {}, which)
        verify_issued_by(cert, ci_key, ci_ski, which=which)
    ku = _extension(cert, x509.KeyUsage)
    if isinstance(ku, x509.KeyUsage) and not ku.digital_signature:
        raise InvalidCertificate("keyUsage does not include digital_signature", which=which)
    if at is not None:
        check_validity(cert, at, which=which)
    return key


# --------------------------------------------------------------------------- issuing


@dataclass(frozen=True)
class Credential:
    """A private key and its certificate. The repr shows the subject, never the key."""

    key: ec.EllipticCurvePrivateKey = field(repr=False)
    cert: x509.Certificate

    def __repr__(self) -> str:
        return f"Credential(subject={self.cert.subject.rfc4514_string()!r})"

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The certificate's public key."""
        return _ec_key(self.cert)

    @property
    def ski(self) -> bytes:
        """The certificate's SubjectKeyIdentifier (SHA-1 of the point if it has none)."""
        return subject_key_id(self.cert) or crypto.subject_key_identifier(self.public_key)

    @property
    def cert_der(self) -> bytes:
        """The certificate in DER (as sent in ES9+/ES10 messages)."""
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def cert_pem(self) -> bytes:
        """The certificate in PEM (e.g. for ``ssl.SSLContext.load_cert_chain``)."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM. Test keys only: handle with care."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _now(now: dt.datetime | None) -> dt.datetime:
    return (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)


def _build(
    *,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer_ski: bytes | None,
    not_before: dt.datetime,
    not_after: dt.datetime,
    role: CertRole | None,
    extensions: Iterable[tuple[x509.ExtensionType, bool]] = (),
    role_critical: bool = True,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectKeyIdentifier(crypto.subject_key_identifier(public_key)), critical=False
        )
    )
    if issuer_ski is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier(issuer_ski, None, None), critical=False
        )
    if role is not None:
        policy = x509.PolicyInformation(x509.ObjectIdentifier(role.value), None)
        builder = builder.add_extension(x509.CertificatePolicies([policy]), critical=role_critical)
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def _key_usage(
    *, digital_signature: bool = False, cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _rid(oid: str) -> x509.RegisteredID:
    return x509.RegisteredID(x509.ObjectIdentifier(oid))


def _name(*attrs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attrs])


def _issue_ci(curve: Curve, oid: str, now: dt.datetime) -> Credential:
    key = crypto.generate_private_key(curve)
    name = _name(
        (NameOID.COMMON_NAME, "Test CI"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "TESTCERT"),
        (NameOID.ORGANIZATION_NAME, "RSPTEST"),
        (NameOID.COUNTRY_NAME, "IT"),
    )
    cert = _build(
        subject=name,
        public_key=key.public_key(),
        issuer=name,
        issuer_key=key,
        issuer_ski=None,  # as in SGP.26: no AKI on the root
        not_before=now - dt.timedelta(days=1),
        not_after=_FAR_FUTURE,
        role=CertRole.CI,
        extensions=[
            (x509.BasicConstraints(ca=True, path_length=None), True),
            (_key_usage(cert_sign=True, crl_sign=True), True),
            (x509.SubjectAlternativeName([_rid(oid)]), False),
        ],
    )
    return Credential(key, cert)


def _issue_eum(ci: Credential, ein_prefix: str, org: str, oid: str, now: dt.datetime) -> Credential:
    key = crypto.generate_private_key(cert_curve(ci.cert))
    permitted = _name((NameOID.ORGANIZATION_NAME, org), (NameOID.SERIAL_NUMBER, ein_prefix))
    cert = _build(
        subject=_name(
            (NameOID.COUNTRY_NAME, "ES"),
            (NameOID.ORGANIZATION_NAME, org),
            (NameOID.COMMON_NAME, "EUM Test"),
        ),
        public_key=key.public_key(),
        issuer=ci.cert.subject,
        issuer_key=ci.key,
        issuer_ski=ci.ski,
        not_before=now - dt.timedelta(days=1),
        not_after=_FAR_FUTURE,
        role=CertRole.EUM,
        extensions=[
            (_key_usage(cert_sign=True), True),
            (x509.SubjectAlternativeName([_rid(oid)]), False),
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (x509.NameConstraints([x509.DirectoryName(permitted)], None), True),
        ],
    )
    return Credential(key, cert)


def issue_euicc_certificate(
    eum_cert: x509.Certificate,
    eum_key: ec.EllipticCurvePrivateKey,
    eid: str,
    curve: Curve | None = None,
    *,
    enforce_prefix: bool = True,
    key: ec.EllipticCurvePrivateKey | None = None,
    now: dt.datetime | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Create an eUICC key pair and certificate for ``eid`` under an EUM (e.g. SGP.26's).

    ``curve`` defaults to the EUM's curve. The subject copies C and O from the EUM (O from
    its name constraint when it has one) and sets serialNumber = EID, CN = "Test eUICC";
    notAfter is 9999-12-31 (GeneralizedTime). ``enforce_prefix=False`` allows an EID outside
    the EUM's permitted prefixes (for negative tests); ``key`` certifies an existing key
    instead of generating one (then ``curve`` is ignored).

    Raises:
        rsp.eid.InvalidEid: ``eid`` is not a valid EID.
        EidNotPermitted: ``eid`` is outside the EUM's prefixes and ``enforce_prefix`` is set.
    """
    if not is_valid_eid(eid):
        raise InvalidEid(f"{eid!r} is not a valid EID")
    prefixes = permitted_eid_prefixes(eum_cert)
    if enforce_prefix and prefixes and not any(eid.startswith(p) for p in prefixes):
        raise EidNotPermitted(f"EID {eid} is outside the EUM's prefixes {', '.join(prefixes)}")
    eum_ski = subject_key_id(eum_cert)
    if eum_ski is None:
        raise InvalidCertificate("has no SubjectKeyIdentifier", which="EUM")
    if key is None:
        key = crypto.generate_private_key(curve or cert_curve(eum_cert))

    def first(name: x509.Name, oid: x509.ObjectIdentifier, default: str) -> str:
        attrs = name.get_attributes_for_oid(oid)
        return str(attrs[0].value) if attrs else default

    constraint_orgs = [
        first(n, NameOID.ORGANIZATION_NAME, "") for n in _permitted_dir_names(eum_cert)
    ]
    org = next((o for o in constraint_orgs if o), None) or first(
        eum_cert.subject, NameOID.ORGANIZATION_NAME, "RSP Test EUM"
    )
    subject = _name(
        (NameOID.COUNTRY_NAME, first(eum_cert.subject, NameOID.COUNTRY_NAME, "ES")),
        (NameOID.ORGANIZATION_NAME, org),
        (NameOID.SERIAL_NUMBER, eid),
        (NameOID.COMMON_NAME, "Test eUICC"),
    )
    cert = _build(
        subject=subject,
        public_key=key.public_key(),
        issuer=eum_cert.subject,
        issuer_key=eum_key,
        issuer_ski=eum_ski,
        not_before=_now(now) - dt.timedelta(days=1),
        not_after=_FAR_FUTURE,
        role=CertRole.EUICC,
        extensions=[(_key_usage(digital_signature=True), True)],
    )
    return key, cert


def issue_server_certificate(
    ci: Credential,
    role: CertRole,
    oid: str,
    *,
    common_name: str = "TEST SM-DP+",
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str] = (),
    valid_days: int = 3650,
    now: dt.datetime | None = None,
) -> Credential:
    """Issue an SM-DP+/SM-DS certificate (DPauth, DPpb, DPtls, ...) under a CI.

    SAN = the DNS names, IP addresses and registeredID ``oid``; TLS roles get
    extendedKeyUsage serverAuth+clientAuth (critical) and a non-critical policy, as SGP.26.
    """
    if role not in _SERVER_ROLES:
        raise ValueError(f"{role.label} is not an SM-DP+/SM-DS role")
    start = _now(now)
    key = crypto.generate_private_key(cert_curve(ci.cert))
    san: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    san += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    san.append(_rid(oid))
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (_key_usage(digital_signature=True), True),
        (x509.SubjectAlternativeName(san), False),
    ]
    is_tls = role in _TLS_ROLES
    if is_tls:
        usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        extensions.append((x509.ExtendedKeyUsage(usages), True))
    cert = _build(
        subject=_name((NameOID.ORGANIZATION_NAME, "ACME"), (NameOID.COMMON_NAME, common_name)),
        public_key=key.public_key(),
        issuer=ci.cert.subject,
        issuer_key=ci.key,
        issuer_ski=ci.ski,
        not_before=start - dt.timedelta(days=1),
        not_after=start + dt.timedelta(days=valid_days),
        role=role,
        extensions=extensions,
        role_critical=not is_tls,
    )
    return Credential(key, cert)


def _issue_eim(curve: Curve, name: str, now: dt.datetime) -> Credential:
    key = crypto.generate_private_key(curve)
    subject = _name((NameOID.ORGANIZATION_NAME, "ACME"), (NameOID.COMMON_NAME, name))
    ski = crypto.subject_key_identifier(key.public_key())
    cert = _build(
        subject=subject,
        public_key=key.public_key(),
        issuer=subject,
        issuer_key=key,
        issuer_ski=ski,
        not_before=now - dt.timedelta(days=1),
        not_after=_FAR_FUTURE,
        role=None,
        extensions=[(_key_usage(digital_signature=True), True)],
    )
    return Credential(key, cert)


# --------------------------------------------------------------------------- test PKI

# Files of one curve; "{s}" is NIST/BRP, "{n}" nist/brainpool. Flat layout for save/load.
_FLAT_FILES = {
    "ci": ("CERT_CI_ECDSA_{s}.der", "SK_CI_ECDSA_{s}.pem"),
    "eum": ("CERT_EUM_ECDSA_{s}.der", "SK_EUM_ECDSA_{s}.pem"),
    "euicc": ("CERT_EUICC_ECDSA_{s}.der", "SK_EUICC_ECDSA_{s}.pem"),
    "dp_auth": ("CERT_S_SM_DPauth_ECDSA_{s}.der", "SK_S_SM_DPauth_ECDSA_{s}.pem"),
    "dp_pb": ("CERT_S_SM_DPpb_ECDSA_{s}.der", "SK_S_SM_DPpb_ECDSA_{s}.pem"),
    "dp_tls": ("CERT_S_SM_DP_TLS_{s}.der", "SK_S_SM_DP_TLS_{s}.pem"),
    "eim": ("CERT_EIM_ECDSA_{s}.der", "SK_EIM_ECDSA_{s}.pem"),
}
# The shipped SGP.26 set keeps the published folder layout and names.
_SGP26_FILES = {
    "ci": ("CertificateIssuer/CERT_CI_ECDSA_{s}.der", "CertificateIssuer/SK_CI_ECDSA_{s}.pem"),
    "eum": ("EUM/CERT_EUM_ECDSA_{s}.der", "EUM/SK_EUM_ECDSA_{s}.pem"),
    "euicc": ("eUICC/CERT_EUICC_ECDSA_{s}.der", "eUICC/SK_EUICC_ECDSA_{s}.pem"),
    "dp_auth": ("DPauth/CERT_S_SM_DPauth_ECDSA_{s}.der", "DPauth/SK_S_SM_DPauth_ECDSA_{s}.pem"),
    "dp_pb": ("DPpb/CERT_S_SM_DPpb_ECDSA_{s}.der", "DPpb/SK_S_SM_DPpb_ECDSA_{s}.pem"),
    "dp_tls": ("DPtls/CERT_S_SM_DP_VARO_TLS_{s}.der", "DPtls/SK_S_SM_DP_TLS_{s}.pem"),
    "eim": ("eim-sample/sample_eim_cert_{n}.crt", "eim-sample/sample_eim_cert_{n}.key"),
}


@dataclass(frozen=True)
class TestPki:
    """One curve's worth of RSP test credentials: CI, EUM, eUICC, SM-DP+ and eIM."""

    __test__: ClassVar[bool] = False  # not a pytest test class despite its name

    curve: Curve
    ci: Credential
    eum: Credential
    euicc: Credential
    dp_auth: Credential
    dp_pb: Credential
    dp_tls: Credential
    eim: Credential

    @property
    def eid(self) -> str:
        """The EID of the eUICC certificate."""
        eid = subject_serial_number(self.euicc.cert)
        if eid is None:
            raise InvalidCertificate("has no subject serialNumber", which="eUICC")
        return eid

    @property
    def ci_ski(self) -> bytes:
        """The CI public key identifier (for EUICCInfo's CI PK id lists)."""
        return self.ci.ski

    def ci_keys(self) -> dict[bytes, ec.EllipticCurvePublicKey]:
        """The ``ci_keys`` mapping that trusts this PKI's CI."""
        return {self.ci.ski: self.ci.public_key}

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write certificates (DER) and keys (PKCS#8 PEM) with SGP.26 file names.

        Layout (flat; ``{s}`` is NIST or BRP, so both curves can share a folder):
        ``CERT_CI_ECDSA_{s}.der``, ``CERT_EUM_ECDSA_{s}.der``, ``CERT_EUICC_ECDSA_{s}.der``,
        ``CERT_S_SM_DPauth_ECDSA_{s}.der``, ``CERT_S_SM_DPpb_ECDSA_{s}.der``,
        ``CERT_S_SM_DP_TLS_{s}.der``, ``CERT_EIM_ECDSA_{s}.der`` and an ``SK_...pem`` for each.
        """
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for attr, (cert_name, key_name) in _FLAT_FILES.items():
            cred: Credential = getattr(self, attr)
            (path / self._fmt(cert_name)).write_bytes(cred.cert_der)
            (path / self._fmt(key_name)).write_bytes(cred.key_pem())

    def _fmt(self, template: str) -> str:
        return _format_name(template, self.curve)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], curve: Curve) -> TestPki:
        """Load a set written by :meth:`save`."""
        return _load_set(Path(directory), curve, _FLAT_FILES)


def _format_name(template: str, curve: Curve) -> str:
    long_name = "nist" if curve is Curve.NIST_P256 else "brainpool"
    return template.format(s=curve.suffix, n=long_name)


def _load_set(base: Path, curve: Curve, files: Mapping[str, tuple[str, str]]) -> TestPki:
    creds: dict[str, Credential] = {}
    for attr, (cert_name, key_name) in files.items():
        cert = load_certificate((base / _format_name(cert_name, curve)).read_bytes())
        key = load_private_key((base / _format_name(key_name, curve)).read_bytes())
        if crypto.public_point(key.public_key()) != crypto.public_point(_ec_key(cert)):
            raise InvalidCertificate(f"{key_name} does not match {cert_name}")
        creds[attr] = Credential(key, cert)
    return TestPki(curve=curve, **creds)


@functools.cache
def load_sgp26(curve: Curve) -> TestPki:
    """Load the published SGP.26 test set shipped in ``rsp/data/sgp26`` (cached).

    EID 89049032123451234512345678901235; SM-DP+ OID 2.999.10; the TLS certificate is the
    "VARO" re-issue for testsmdpplus1.example.com (valid 2026-07-21 … 2027-02-06); the eIM
    is onomondo-eim's self-signed sample.
    """
    return _load_set(SGP26_DIR, curve, _SGP26_FILES)


def generate_test_pki(
    curve: Curve,
    eid: str | None = None,
    *,
    eum_ein_prefix: str = "89049032",
    smdp_oid: str = "2.999.10",
    smdp_host: str = "testsmdpplus1.example.com",
    ci_oid: str = "2.999.1",
    eum_oid: str = "2.999.5",
    eum_org: str = "RSP Test EUM",
    eim_name: str = "Test eIM",
    now: dt.datetime | None = None,
) -> TestPki:
    """Generate a fresh test PKI in the SGP.26 shape (PROTOCOL.md §6.5) on ``curve``.

    The eUICC gets ``eid`` (random under ``eum_ein_prefix`` when ``None``). DPtls has SAN
    DNS ``smdp_host`` and ``localhost``, IP 127.0.0.1 and RID ``smdp_oid`` so it can serve
    HTTPS on loopback. The eIM certificate is self-signed.
    """
    start = _now(now)
    ci = _issue_ci(curve, ci_oid, start)
    eum = _issue_eum(ci, eum_ein_prefix, eum_org, eum_oid, start)
    euicc_key, euicc_cert = issue_euicc_certificate(
        eum.cert, eum.key, eid if eid is not None else make_eid(eum_ein_prefix), now=start
    )
    return TestPki(
        curve=curve,
        ci=ci,
        eum=eum,
        euicc=Credential(euicc_key, euicc_cert),
        dp_auth=issue_server_certificate(ci, CertRole.DP_AUTH, smdp_oid, now=start),
        dp_pb=issue_server_certificate(ci, CertRole.DP_PB, smdp_oid, now=start),
        dp_tls=issue_server_certificate(
            ci,
            CertRole.DP_TLS,
            smdp_oid,
            common_name=smdp_host,
            dns_names=(smdp_host, "localhost"),
            ip_addresses=("127.0.0.1",),
            now=start,
        ),
        eim=_issue_eim(curve, eim_name, start),
    )
