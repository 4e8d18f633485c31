"""What the reference eIM is: its identity, signing key, trust anchors and defaults
(:class:`EimSettings`, given to :class:`~.esipa.EimCore`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec

from ..common import spki
from ..common.addresses import is_valid_address
from ..common.limits import DEFAULT_LIMITS, Limits

__all__ = ["EimSettings"]


@dataclass(frozen=True)
class EimSettings:
    """What the core needs besides its state: identity, key, trust anchors, defaults.

    ``eim_fqdn`` is where IPAds reach the eIM (``host:port``; set by the server when it binds
    a port). ``tls_trust_certificate`` (DER) is given to eUICCs as trustedCertificateTls (the
    CA of the eIM's TLS certificate); ``None`` when serving plain HTTP. ``trusted_ci_keys``
    verify eUICC certificate chains; ``euicc_ci_pkid`` is the default euiccCiPKId.

    ``admin_token`` is required as ``Authorization: Bearer <token>`` on the operator API;
    without it the core makes one (kept in the state directory, see
    :class:`euicc_servers.common.auth.OperatorAuth`) unless ``open_operator_api`` is set.
    ``smdp_addresses`` are SM-DP+s the eIM may relay to besides ``default_smdp_address`` and
    those of its own download orders. ``limits`` bound what clients may send
    (:class:`euicc_servers.common.limits.Limits`).
    """

    eim_id: str
    signing_key: ec.EllipticCurvePrivateKey = field(repr=False)
    eim_fqdn: str | None = None
    eim_id_type: int | None = None
    tls_trust_certificate: bytes | None = None
    trusted_ci_keys: Mapping[bytes, ec.EllipticCurvePublicKey] = field(default_factory=dict)
    euicc_ci_pkid: bytes | None = None
    default_smdp_address: str | None = None
    smdp_addresses: frozenset[str] = frozenset()
    session_timeout: float = 3600.0
    admin_token: str | None = field(default=None, repr=False)
    open_operator_api: bool = False
    limits: Limits = DEFAULT_LIMITS

    def __post_init__(self) -> None:
        if not self.eim_id or len(self.eim_id.encode()) > 128:
            raise ValueError("eimId must be 1..128 bytes")
        for address in (self.default_smdp_address, *self.smdp_addresses):
            if address is not None and not is_valid_address(address):
                raise ValueError(f"invalid SM-DP+ address {address!r}")
        if self.eim_id_type is None:
            object.__setattr__(self, "eim_id_type", _guess_id_type(self.eim_id))

    @property
    def public_key_info(self) -> bytes:
        """The eIM's SubjectPublicKeyInfo (DER): eimPublicKeyData for eUICCs."""
        return spki(self.signing_key.public_key())


def _guess_id_type(eim_id: str) -> int:
    parts = eim_id.split(".")
    if len(parts) > 1 and all(p.isdigit() for p in parts):
        return 1  # eimIdTypeOid
    if len(parts) > 1 and all(p and p.replace("-", "").isalnum() for p in parts):
        return 2  # eimIdTypeFqdn
    return 3  # eimIdTypeProprietary
