"""SM-DP+ configuration: its address, its credentials per CI, and its policy knobs.

An SM-DP+ holds one DPauth/DPpb pair per Certificate Issuer it is certified under (SGP.22
§2.6). :class:`DpCredentials` is one such pair with its CI; :class:`SmdpConfig` bundles them
with the address the server answers to, the CIs it trusts for eUICC chains, the TLS
credential and the limits (session timeout, confirmation-code attempts).

Credentials come from a test PKI directory written by
:meth:`euicc_protocol.testpki.TestPki.save` (one
set per curve found in it) or from the GSMA SGP.26 set shipped with :mod:`euicc_protocol.testpki`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from euicc_protocol import bpp, pki
from euicc_protocol.crypto import Curve
from euicc_protocol.testpki import Credential, TestPki

from ..common.limits import DEFAULT_LIMITS, Limits
from ..common.pkisets import SGP26, PkiSetError, load_pki_sets

__all__ = [
    "SGP26",
    "ConfigError",
    "DpCredentials",
    "SmdpConfig",
    "load_pki_sets",
]

log = logging.getLogger(__name__)

#: Default session lifetime (seconds of inactivity) before a transactionId is forgotten.
DEFAULT_SESSION_TIMEOUT = 300.0
#: Default number of wrong confirmation codes after which an order is refused.
DEFAULT_MAX_CC_ATTEMPTS = 3


class ConfigError(ValueError):
    """The configuration is unusable (no credentials, mismatched keys, bad address)."""


@dataclass(frozen=True)
class DpCredentials:
    """The SM-DP+ credentials under one CI: CERT.DPauth and CERT.DPpb with their keys."""

    ci_cert: x509.Certificate
    dp_auth: Credential
    dp_pb: Credential

    def __post_init__(self) -> None:
        # Fail at start-up, not in the middle of a download, if the set does not fit together.
        for role, cred in ((pki.CertRole.DP_AUTH, self.dp_auth), (pki.CertRole.DP_PB, self.dp_pb)):
            try:
                pki.check_server_certificate(cred.cert, {self.ci_ski: self.ci_public_key}, role)
            except pki.CertificateError as exc:
                raise ConfigError(
                    f"{role.label} does not fit CI {self.ci_ski.hex()}: {exc}"
                ) from exc
        if self.auth_oid != self.pb_oid:
            raise ConfigError(f"DPauth OID {self.auth_oid} differs from DPpb OID {self.pb_oid}")

    @property
    def ci_ski(self) -> bytes:
        """The CI public key identifier (what euiccCiPKIdToBeUsed names)."""
        ski = pki.subject_key_id(self.ci_cert)
        if ski is None:
            raise ConfigError("CI certificate has no SubjectKeyIdentifier")
        return ski

    @property
    def ci_public_key(self) -> ec.EllipticCurvePublicKey:
        """The CI public key."""
        key = self.ci_cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ConfigError("CI certificate does not hold an EC key")
        return key

    @property
    def curve(self) -> Curve:
        """The curve of this chain (DPpb's curve is also the ECKA curve of the BPP)."""
        return pki.cert_curve(self.dp_pb.cert)

    @property
    def auth_oid(self) -> str:
        """The SM-DP+ OID in CERT.DPauth (smdpOid of EuiccCancelSessionSigned)."""
        return _oid(self.dp_auth.cert)

    @property
    def pb_oid(self) -> str:
        """The SM-DP+ OID in CERT.DPpb (smdpOid of ProfileInstallationResultData)."""
        return _oid(self.dp_pb.cert)

    @classmethod
    def from_test_pki(cls, test_pki: TestPki) -> DpCredentials:
        """The SM-DP+ part of a test PKI."""
        return cls(ci_cert=test_pki.ci.cert, dp_auth=test_pki.dp_auth, dp_pb=test_pki.dp_pb)


def _oid(cert: x509.Certificate) -> str:
    oid = pki.rid_oid(cert)
    if oid is None:
        raise ConfigError("server certificate has no subjectAltName registeredID")
    return oid


@dataclass(frozen=True)
class SmdpConfig:
    """Everything the protocol core needs besides its orders.

    ``address`` is the SM-DP+ address (FQDN or IP, optional ``:port``) that initiateAuthentication
    must name and that profile metadata gives as notification address. ``trusted_ci_keys``
    (CI SKI → key) verify EUM certificates; by default the CIs of ``credentials``.
    ``session_timeout`` is in seconds of inactivity. ``tls`` is the HTTPS server credential
    (CERT.DP.TLS); ``None`` serves plain HTTP only. ``admin_token`` is required as
    ``Authorization: Bearer <token>`` on the operator API; without it the core makes one
    (:class:`euicc_servers.common.auth.OperatorAuth`) unless ``open_operator_api`` is set.
    ``limits`` bound what clients may send (:class:`euicc_servers.common.limits.Limits`).
    """

    address: str
    credentials: tuple[DpCredentials, ...]
    trusted_ci_keys: Mapping[bytes, ec.EllipticCurvePublicKey] = field(default_factory=dict)
    tls: Credential | None = None
    session_timeout: float = DEFAULT_SESSION_TIMEOUT
    max_cc_attempts: int = DEFAULT_MAX_CC_ATTEMPTS
    host_id: bytes = bpp.DEFAULT_HOST_ID
    default_service_provider: str = "euicc-sim SM-DP+"
    check_validity: bool = True
    admin_token: str | None = field(default=None, repr=False)
    open_operator_api: bool = False
    limits: Limits = DEFAULT_LIMITS

    def __post_init__(self) -> None:
        if not self.credentials:
            raise ConfigError("an SM-DP+ needs DPauth/DPpb credentials under at least one CI")
        if not self.address or any(c.isspace() for c in self.address):
            raise ConfigError(f"invalid SM-DP+ address {self.address!r}")
        if self.session_timeout <= 0:
            raise ConfigError("session_timeout must be positive")
        if self.max_cc_attempts < 1:
            raise ConfigError("max_cc_attempts must be at least 1")
        if not 1 <= len(self.host_id) <= 16:
            raise ConfigError("host_id must be 1..16 bytes")
        if not self.trusted_ci_keys:
            keys = {c.ci_ski: c.ci_public_key for c in self.credentials}
            object.__setattr__(self, "trusted_ci_keys", keys)

    def credentials_for(self, ci_ski: bytes) -> DpCredentials | None:
        """The credentials issued under the CI ``ci_ski``, if the server has any."""
        for cred in self.credentials:
            if cred.ci_ski == ci_ski:
                return cred
        return None

    @classmethod
    def from_test_pki(
        cls, pkis: TestPki | Iterable[TestPki], address: str, **options: object
    ) -> SmdpConfig:
        """A configuration serving with the SM-DP+ credentials of one or more test PKIs.

        The TLS credential is the DPtls of the first NIST P-256 set (brainpool TLS does not
        work with common OpenSSL builds), else of the first set. ``options`` are the other
        :class:`SmdpConfig` fields.
        """
        sets = [pkis] if isinstance(pkis, TestPki) else list(pkis)
        if not sets:
            raise ConfigError("no test PKI given")
        nist = [s for s in sets if s.curve is Curve.NIST_P256]
        tls = (nist or sets)[0].dp_tls
        if not nist:
            log.warning("no NIST P-256 PKI: serving TLS with a brainpool certificate")
        kwargs: dict[str, object] = {"tls": tls, **options}
        return cls(
            address=address,
            credentials=tuple(DpCredentials.from_test_pki(s) for s in sets),
            **kwargs,  # type: ignore[arg-type]
        )

    @classmethod
    def from_pki_dir(
        cls, directory: str | os.PathLike[str], address: str, **options: object
    ) -> SmdpConfig:
        """A configuration from a test PKI directory or :data:`SGP26` (:func:`load_pki_sets`)."""
        try:
            sets = load_pki_sets(directory)
        except PkiSetError as exc:
            raise ConfigError(str(exc)) from exc
        return cls.from_test_pki(sets, address, **options)
