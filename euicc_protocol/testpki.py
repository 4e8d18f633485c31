"""A test PKI in the SGP.26 shape: CI, EUM, eUICC, SM-DP+ (auth, pb, tls) and eIM credentials.

Generated sets (:func:`generate_test_pki`) for either curve, the published GSMA SGP.26 set
shipped in ``euicc_protocol/data/sgp26`` (:func:`load_sgp26`), and issuing of further eUICC and
server
certificates under an existing CI or EUM. What makes these certificates acceptable is checked
by :mod:`euicc_protocol.pki`.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from euicc_protocol import crypto
from euicc_protocol.crypto import Curve
from euicc_protocol.eid import InvalidEid, is_valid_eid, make_eid
from euicc_protocol.pki import (  # the underscored names are package-internal helpers
    _SERVER_ROLES,
    _TLS_ROLES,
    CertRole,
    EidNotPermitted,
    InvalidCertificate,
    _ec_key,
    _permitted_dir_names,
    cert_curve,
    load_certificate,
    load_private_key,
    permitted_eid_prefixes,
    subject_key_id,
    subject_serial_number,
)

_FAR_FUTURE = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)

#: The SGP.26 test set shipped with the package (see its README.md).
SGP26_DIR = Path(__file__).with_name("data") / "sgp26"

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
        euicc_protocol.eid.InvalidEid: ``eid`` is not a valid EID.
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


TOTAL_PARTIAL_CRL_NUMBER = x509.ObjectIdentifier("2.23.146.1.2.0.2")
PARTIAL_CRL_NUMBER = x509.ObjectIdentifier("2.23.146.1.2.0.3")


def issue_crl(
    ci: Credential,
    revoked: Iterable[int],
    crl_number: int,
    *,
    delta_of: int | None = None,
    removed: Iterable[int] = (),
    partial: tuple[int, int] | None = None,
    next_update_days: int = 30,
    now: dt.datetime | None = None,
) -> bytes:
    """A CRL (DER) signed by ``ci`` in the SGP.22 profile: authorityKeyIdentifier (the CI's
    SKI) and cRLNumber, ecdsa-with-SHA256.

    ``revoked``: serial numbers revoked; ``delta_of``: make it a delta CRL on that base CRL
    number, with ``removed`` serials listed as removeFromCRL; ``partial``: (total, part)
    for one part of a partitioned CRL (id-rsp-totalPartialCrlNumber/partialCrlNumber).
    """
    start = _now(now)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ci.cert.subject)
        .last_update(start)
        .next_update(start + dt.timedelta(days=next_update_days))
        .add_extension(x509.AuthorityKeyIdentifier(ci.ski, None, None), critical=False)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
    )
    if delta_of is not None:
        builder = builder.add_extension(x509.DeltaCRLIndicator(delta_of), critical=True)
    if partial is not None:
        oids = (TOTAL_PARTIAL_CRL_NUMBER, PARTIAL_CRL_NUMBER)
        for oid, number in zip(oids, partial, strict=True):
            value = number.to_bytes(max(1, (number.bit_length() + 8) // 8), "big")
            ext = x509.UnrecognizedExtension(oid, b"\x02" + bytes([len(value)]) + value)
            builder = builder.add_extension(ext, critical=False)
    entries: list[tuple[int, x509.ReasonFlags | None]] = [(serial, None) for serial in revoked]
    entries += [(serial, x509.ReasonFlags.remove_from_crl) for serial in removed]
    for serial, reason in entries:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(start)
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(ci.key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.DER)


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
    """Load the published SGP.26 test set shipped in ``euicc_protocol/data/sgp26`` (cached).

    EID 89049032123451234512345678901235; SM-DP+ OID 2.999.10; the TLS certificate is the
    "VARO" re-issue for testsmdpplus1.example.com (valid 2026-07-21 … 2027-02-06); the eIM
    is a self-signed sample as published with an open-source eIM.
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
    """Generate a fresh test PKI in the shape of the GSMA SGP.26 test certificates on ``curve``.

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
