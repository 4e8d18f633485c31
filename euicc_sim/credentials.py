"""Choosing a new card's key material: given files, a test PKI, or the SGP.26 test EUMs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from euicc_protocol import pki, testpki
from euicc_protocol.crypto import Curve
from euicc_protocol.eid import InvalidEid, is_valid_eid, make_eid


@dataclass(frozen=True)
class Material:
    """What a new card is given: its EID, signing chains and trusted CI certificates."""

    eid: str
    chains: list[tuple[ec.EllipticCurvePrivateKey, bytes, bytes]]  # (SK.EUICC, CERT, EUM)
    ci_certificates: list[bytes]

    def __repr__(self) -> str:
        return f"Material(eid={self.eid}, chains={len(self.chains)})"


def _der(cert_bytes: bytes) -> bytes:
    return pki.load_certificate(cert_bytes).public_bytes(serialization.Encoding.DER)


def _from_files(
    euicc_key: bytes,
    euicc_certificate: bytes | None,
    eum_certificate: bytes | None,
    ci_certificates: list[bytes],
    eid: str | None,
) -> Material:
    if euicc_certificate is None or eum_certificate is None:
        raise ValueError("an eUICC key needs its eUICC and EUM certificates")
    cert = pki.load_certificate(euicc_certificate)
    cert_eid = pki.subject_serial_number(cert)
    if cert_eid is None or not is_valid_eid(cert_eid):
        raise InvalidEid("the eUICC certificate's subject serialNumber is not a valid EID")
    if eid is not None and eid != cert_eid:
        raise ValueError(f"EID {eid} does not match the certificate's EID {cert_eid}")
    if not ci_certificates:
        raise ValueError("give at least one CI certificate the card trusts")
    key = pki.load_private_key(euicc_key)
    return Material(
        cert_eid,
        [(key, _der(euicc_certificate), _der(eum_certificate))],
        [_der(c) for c in ci_certificates],
    )


def _issue(sets: list[testpki.TestPki], eid: str) -> Material:
    chains = []
    for s in sets:
        if s.euicc.cert is not None and s.eid == eid:
            key, cert = s.euicc.key, s.euicc.cert
        else:
            key, cert = testpki.issue_euicc_certificate(s.eum.cert, s.eum.key, eid)
        chains.append(
            (
                key,
                cert.public_bytes(serialization.Encoding.DER),
                s.eum.cert_der,
            )
        )
    return Material(eid, chains, [s.ci.cert_der for s in sets])


def credentials(
    *,
    eid: str | None,
    curves: Sequence[Curve],
    pki_dir: str | os.PathLike[str] | None = None,
    euicc_key: bytes | None = None,
    euicc_certificate: bytes | None = None,
    eum_certificate: bytes | None = None,
    ci_certificates: list[bytes] | None = None,
) -> Material:
    """Key material for a new card, see :meth:`euicc_sim.card.Euicc.create`."""
    if euicc_key is not None:
        return _from_files(
            euicc_key, euicc_certificate, eum_certificate, ci_certificates or [], eid
        )
    if not curves:
        raise ValueError("a card needs at least one curve")
    if pki_dir is not None:
        base = Path(pki_dir)
        sets = [testpki.TestPki.load(base, c) for c in curves if _has_set(base, c)]
        if not sets:
            raise FileNotFoundError(f"{base} holds no test PKI for {[c.name for c in curves]}")
    else:
        sets = [testpki.load_sgp26(c) for c in curves]
    if eid is None:
        prefixes = pki.permitted_eid_prefixes(sets[0].eum.cert)
        eid = make_eid(prefixes[0] if prefixes else "89049032")
    elif not is_valid_eid(eid):
        raise InvalidEid(f"{eid!r} is not a valid EID (32 digits, check digits mod 97 == 1)")
    return _issue(sets, eid)


def _has_set(base: Path, curve: Curve) -> bool:
    try:
        testpki.TestPki.load(base, curve)
    except (FileNotFoundError, OSError, ValueError):
        return False
    return True
