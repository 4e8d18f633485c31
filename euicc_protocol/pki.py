"""RSP certificates the way SGP.22 defines them (test-PKI generator: :mod:`euicc_protocol.testpki`).

Chain checks here are GSMA checks (SGP.22 certificate profiles), not RFC 5280 path validation:
the EUM's nameConstraints do not follow RFC 5280 subtree semantics, and a generic PKIX
verifier such as OpenSSL's rejects the genuine SGP.26 test chain. What is checked:

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
certificate (what some open-source eIMs and :func:`generate_test_pki` use) or one whose AKI names a
trusted CI; either way the signature is checked, no GSMA role is required, and the key is
returned for verifying ``eimSignature``.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping

from cryptography import x509
from cryptography.exceptions import InvalidSignature as _LibInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

from euicc_protocol import crypto
from euicc_protocol.crypto import Curve
from euicc_protocol.eid import is_valid_eid

__all__ = [
    "BadCertificateSignature",
    "CertRole",
    "CertificateError",
    "CertificateExpired",
    "EidNotPermitted",
    "InvalidCertificate",
    "IssuerMismatch",
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
    "load_certificate",
    "load_private_key",
    "load_public_key",
    "permitted_eid_prefixes",
    "rid_oid",
    "subject_key_id",
    "subject_serial_number",
    "trusted_ci_keys",
    "verify_issued_by",
]

#: id-rsp-cert-objects 2.0: permittedEins of SGP.22 v3 EUM certificates (unconfirmed OID).
_PERMITTED_EINS_OID = x509.ObjectIdentifier("2.23.146.1.2.2.0")


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
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(data)
    except UnsupportedAlgorithm as exc:
        raise UnsupportedCurve(f"unsupported public key algorithm: {exc}") from None
    _curve_of(key)
    if not isinstance(key, ec.EllipticCurvePublicKey):  # for the type checker
        raise UnsupportedCurve("not an EC public key")
    return key


def _ec_key(cert: x509.Certificate, which: str | None = None) -> ec.EllipticCurvePublicKey:
    try:
        key = cert.public_key()
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise UnsupportedCurve(f"unsupported public key: {exc}", which=which) from None
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
