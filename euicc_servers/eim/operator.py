"""What the operator API of the reference eIM does (see :mod:`.app`): register eUICCs and
change what the eIM knows of them (rule 5 of :mod:`.esipa` for operator-given certificates),
give out the EimConfigurationData for AddInitialEim, and queue, cancel or requeue orders.
"""

from __future__ import annotations

import secrets
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from euicc_protocol import pki
from euicc_protocol.eid import is_valid_eid

from ..common import spki
from . import packages
from .packages import EimConfigurationData
from .relay import SmdpRelay
from .settings import EimSettings
from .store import Conflict, EimStore, EuiccRecord, NotFound, Order, OrderState

__all__ = ["EimOperator", "RegistrationError"]


class RegistrationError(ValueError):
    """Operator input for an eUICC registration is invalid."""


def _check_version(sgp32: str | None) -> None:
    if sgp32 not in (None, "1.0", "1.2"):
        raise RegistrationError('sgp32 must be "1.0" or "1.2"')


class EimOperator:
    """Part of :class:`~.esipa.EimCore`: the operations behind the operator API."""

    settings: EimSettings
    store: EimStore
    relay: SmdpRelay | None
    eim_fqdn: str | None

    def register(
        self,
        eid: str,
        *,
        euicc_certificate: bytes | None = None,
        eum_certificate: bytes | None = None,
        association_token: int | None = None,
        counter_value: int = 0,
        euicc_ci_pkid: bytes | None | str = "default",
        sgp32: str | None = None,
    ) -> EuiccRecord:
        """Register an eUICC (certificates DER).

        ``association_token``: 1..127, ``-1`` (the eUICC allocates one; learnt later) or
        ``None`` (the eIM picks one). ``euicc_ci_pkid``: bytes, ``None`` to leave it out of
        the configuration, or ``"default"`` (the EUM's CI if an EUM certificate is given,
        else the configured one). ``sgp32``: the SGP.32 version the eUICC speaks ("1.0" or
        "1.2"; None: learnt from its EUICCInfo2, v1.2 until then).

        Raises:
            RegistrationError: invalid EID, certificate, token or counter.
            Conflict: the EID is registered already.
        """
        if not is_valid_eid(eid):
            raise RegistrationError(f"{eid!r} is not a valid EID (32 digits, check digits)")
        if association_token is None:
            association_token = 1 + secrets.randbelow(127)
        if association_token != -1 and not 1 <= association_token <= 127:
            raise RegistrationError("associationToken must be 1..127, or -1 (eUICC allocates)")
        if not 0 <= counter_value < 2**31:
            raise RegistrationError("counterValue must be 0..2^31-1")
        _check_version(sgp32)
        key, ci = self._check_certificates(eid, euicc_certificate, eum_certificate)
        if euicc_ci_pkid == "default":
            euicc_ci_pkid = ci or self.settings.euicc_ci_pkid
        assert not isinstance(euicc_ci_pkid, str)
        return self.store.add_euicc(
            eid,
            counter=counter_value,
            euicc_certificate=euicc_certificate,
            eum_certificate=eum_certificate,
            public_key=key,
            key_source="operator" if key else None,
            association_token=None if association_token == -1 else association_token,
            token_source=None if association_token == -1 else "operator",
            euicc_ci_pkid=euicc_ci_pkid,
            sgp32=sgp32,
            sgp32_source=None if sgp32 is None else "operator",
        )

    def _check_certificates(
        self, eid: str, euicc_der: bytes | None, eum_der: bytes | None
    ) -> tuple[bytes | None, bytes | None]:
        """(SPKI of the eUICC key, CI SKI of the chain) of operator-given certificates."""
        if euicc_der is None:
            if eum_der is not None:
                raise RegistrationError("eumCertificate needs euiccCertificate")
            return None, None
        named: str | None
        try:
            cert = pki.load_certificate(euicc_der)
            if eum_der is not None:
                eum = pki.load_certificate(eum_der)
                named = pki.check_euicc_chain(cert, eum, self.settings.trusted_ci_keys)
                ci = pki.authority_key_id(eum)
            else:
                named, ci = pki.subject_serial_number(cert), None
            key = cert.public_key()
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise RegistrationError("the eUICC certificate holds no EC key")
        except (pki.CertificateError, ValueError) as exc:
            raise RegistrationError(f"eUICC certificate refused: {exc}") from None
        if named != eid:
            raise RegistrationError(f"the eUICC certificate is for EID {named}, not {eid}")
        return spki(key), ci

    def update_registration(
        self,
        eid: str,
        *,
        euicc_certificate: bytes | None = None,
        eum_certificate: bytes | None = None,
        association_token: int | None = None,
        counter_value: int | None = None,
        sgp32: str | None = None,
    ) -> EuiccRecord:
        """Change what the eIM knows of an eUICC (the certificate replaces the key; a version
        set here is never overridden by what the eUICC's EUICCInfo2 says).

        Raises:
            RegistrationError: as :meth:`register`; a counter may only grow.
            NotFound: the EID is not registered.
        """
        record = self.store.euicc(eid)
        if record is None:
            raise NotFound(f"EID {eid} is not registered")
        changes: dict[str, Any] = {}
        if euicc_certificate is not None:
            key, _ = self._check_certificates(eid, euicc_certificate, eum_certificate)
            changes.update(
                euicc_certificate=euicc_certificate,
                eum_certificate=eum_certificate,
                public_key=key,
                key_source="operator",
            )
        if association_token is not None:
            if not 1 <= association_token <= 127:
                raise RegistrationError("associationToken must be 1..127")
            changes["association_token"] = association_token
            changes["token_source"] = "operator"
        if counter_value is not None:
            if not record.counter <= counter_value < 2**31:
                raise RegistrationError(f"counterValue may only grow (now {record.counter})")
            changes["counter"] = counter_value
        if sgp32 is not None:
            _check_version(sgp32)
            changes.update(sgp32=sgp32, sgp32_source="operator")
        return self.store.update_euicc(eid, **changes) if changes else record

    def configuration(self, eid: str) -> EimConfigurationData:
        """The EimConfigurationData an eUICC needs for this eIM (AddInitialEim-ready).

        Raises:
            NotFound: the EID is not registered.
        """
        record = self.store.euicc(eid)
        if record is None:
            raise NotFound(f"EID {eid} is not registered")
        token = record.association_token
        return EimConfigurationData(
            eim_id=self.settings.eim_id,
            eim_fqdn=self.eim_fqdn,
            eim_id_type=self.settings.eim_id_type,
            counter_value=record.counter,
            association_token=token if token is not None else -1,
            eim_public_key=self.settings.public_key_info,
            trusted_certificate_tls=self.settings.tls_trust_certificate,
            eim_supported_protocol=frozenset({0}),  # eimRetrieveHttps
            euicc_ci_pkid=record.euicc_ci_pkid,
            indirect_profile_download=self.relay is not None,
        )

    def queue(self, eid: str, order: Any) -> Order:
        """Validate and queue an operator order (:func:`.packages.validate_order`).

        Raises:
            PackageError: invalid order. NotFound: unknown EID.
        """
        if self.store.euicc(eid) is None:
            raise NotFound(f"EID {eid} is not registered")
        kind, request = packages.validate_order(order)
        return self.store.add_order(eid, kind, request)

    def cancel(self, order_id: int) -> Order:
        """Cancel a queued order, or a sent one (it is not delivered again; a result that
        arrives later is still recorded).

        Raises:
            NotFound: no such order. Conflict: it is done, failed or cancelled already.
        """
        order = self.store.require_order(order_id)
        if order.state not in (OrderState.QUEUED, OrderState.SENT):
            raise Conflict(f"order {order_id} is {order.state}; only queued/sent orders cancel")
        return self.store.update_order(order_id, state=OrderState.CANCELLED)

    def requeue(self, order_id: int) -> Order:
        """Queue a sent or failed order again; a package gets a new counter when delivered.

        Raises:
            NotFound: no such order. Conflict: it is queued, done or cancelled.
        """
        order = self.store.require_order(order_id)
        if order.state not in (OrderState.SENT, OrderState.FAILED):
            raise Conflict(f"order {order_id} is {order.state}; only sent/failed requeue")
        return self.store.update_order(
            order_id,
            state=OrderState.QUEUED,
            package=None,
            counter_value=None,
            eim_transaction_id=None,
            error=None,
        )
