"""ECASD: the eUICC's keys and certificate chains, and the trusted CI public keys.

A card holds one signing chain (SK.EUICC.ECDSA, CERT.EUICC, CERT.EUM) per CI it can present
(``euiccCiPKIdListForSigning``) and the public keys of the CIs whose signatures it can
verify (``euiccCiPKIdListForVerification``). Real cards carry a NIST and a brainpool chain;
so do ours by default.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from euicc_protocol import crypto

from . import gp
from .apdu import StatusWordError

ECASD_AID = bytes.fromhex("A0000005591010FFFFFFFF8900000200")

_MANIFEST = "ecasd.json"


@dataclass(frozen=True)
class SigningChain:
    """One eUICC key pair with its certificate chain up to a CI."""

    ci_pkid: bytes  # SKI of the CI at the top of this chain
    private_key: ec.EllipticCurvePrivateKey
    euicc_certificate: bytes  # DER
    eum_certificate: bytes  # DER

    def __repr__(self) -> str:  # never show the private key
        return f"SigningChain(ci_pkid={self.ci_pkid.hex()})"

    def sign(self, data: bytes) -> bytes:
        """ECDSA-SHA256 over ``data`` as raw r||s (the ``5F37`` format)."""
        return crypto.sign_raw(self.private_key, data)


@dataclass(frozen=True)
class Credentials:
    """Everything in the ECASD."""

    chains: tuple[SigningChain, ...]
    ci_public_keys: Mapping[bytes, ec.EllipticCurvePublicKey]  # SKI -> key

    def chain_for(self, ci_pkid: bytes | None = None) -> SigningChain | None:
        """The signing chain under ``ci_pkid`` (the first chain when ``None``)."""
        if ci_pkid is None:
            return self.chains[0] if self.chains else None
        return next((c for c in self.chains if c.ci_pkid == ci_pkid), None)

    @property
    def pkids_for_signing(self) -> list[bytes]:
        return [c.ci_pkid for c in self.chains]

    @property
    def pkids_for_verification(self) -> list[bytes]:
        return list(self.ci_public_keys)


def _ski_of(cert: x509.Certificate) -> bytes:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return bytes(ext.value.digest)
    except x509.ExtensionNotFound:
        return crypto.subject_key_identifier(cert.public_key())  # type: ignore[arg-type]


def _aki_of(cert: x509.Certificate) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
        return bytes(ext.value.key_identifier) if ext.value.key_identifier else None
    except x509.ExtensionNotFound:
        return None


def store_credentials(
    storage,
    chains: list[tuple[ec.EllipticCurvePrivateKey, bytes, bytes]],
    ci_certificates: list[bytes],
) -> None:
    """Write key material into a new card's storage.

    ``chains`` holds (SK.EUICC, CERT.EUICC DER, CERT.EUM DER); the CI of each chain is the
    AKI of its EUM certificate. ``ci_certificates`` are the CIs the card trusts.
    """
    manifest: dict[str, list] = {"chains": [], "cis": []}
    for i, (key, euicc_der, eum_der) in enumerate(chains):
        eum = x509.load_der_x509_certificate(eum_der)
        ci_pkid = _aki_of(eum)
        if ci_pkid is None:
            raise ValueError("EUM certificate has no authority key identifier")
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        names = [f"sk_euicc_{i}.pem", f"cert_euicc_{i}.der", f"cert_eum_{i}.der"]
        for name, data in zip(names, (pem, euicc_der, eum_der), strict=True):
            storage.write_file(name, data)
        manifest["chains"].append({"ci_pkid": ci_pkid.hex(), "files": names})
    for i, ci_der in enumerate(ci_certificates):
        name = f"cert_ci_{i}.der"
        storage.write_file(name, ci_der)
        manifest["cis"].append(name)
    storage.write_file(_MANIFEST, json.dumps(manifest, indent=2).encode())


def load_credentials(storage) -> Credentials:
    """Read the key material written by :func:`store_credentials`."""
    raw = storage.read_file(_MANIFEST)
    if raw is None:
        raise FileNotFoundError("card directory has no ECASD manifest (ecasd.json)")
    try:
        manifest = json.loads(raw)
        names = [name for entry in manifest["chains"] for name in entry["files"]]
        names += list(manifest["cis"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"ecasd.json is damaged: {exc!r}") from None
    files: dict[str, bytes] = {}
    for name in names:
        content = storage.read_file(name)
        if content is None:
            raise FileNotFoundError(f"card directory has no {name} (listed in ecasd.json)")
        files[name] = content
    current = _MANIFEST
    try:  # a damaged file is named: the message tells which one to restore
        chains = []
        for entry in manifest["chains"]:
            key_name, euicc_name, eum_name = entry["files"]
            current = key_name
            key = serialization.load_pem_private_key(files[key_name], password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError("SK.EUICC is not an EC key")
            current = _MANIFEST
            chains.append(
                SigningChain(
                    bytes.fromhex(entry["ci_pkid"]), key, files[euicc_name], files[eum_name]
                )
            )
        cis: dict[bytes, ec.EllipticCurvePublicKey] = {}
        for name in manifest["cis"]:
            current = name
            cert = x509.load_der_x509_certificate(files[name])
            pub = cert.public_key()
            if isinstance(pub, ec.EllipticCurvePublicKey):
                cis[_ski_of(cert)] = pub
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{current} is damaged: {exc}") from None
    return Credentials(tuple(chains), cis)


class Ecasd:
    """The ECASD as a selectable application (it holds keys; it has no ES10 functions).

    It answers GlobalPlatform GET DATA (EID ``5A``, its key information, the card-wide
    objects) and GET STATUS about itself (:mod:`euicc_sim.gp`).
    """

    aid = ECASD_AID

    def __init__(
        self,
        eid: bytes,
        *,
        chains: int = 1,
        gp_version: tuple[int, ...] = (2, 3, 0),
        isdr_aid: bytes = bytes.fromhex("A0000005591010FFFFFFFF8900000100"),
    ) -> None:
        self._fci = fci(ECASD_AID)
        self._eid = eid
        objects = gp.card_wide_objects(gp_version, eid)
        eid_tlv = b"\x5a\x10" + eid
        key_info = gp.ecasd_key_information(chains)
        objects[0x5A] = lambda: eid_tlv
        objects[0xE0] = lambda: key_info
        self._objects = objects
        registry = gp.ecasd_registry(ECASD_AID, isdr_aid)
        self._status = gp.StatusReporter(lambda: registry)

    def select_response(self) -> bytes:
        return self._fci

    def get_data(self, tag: int) -> bytes:
        """GlobalPlatform GET DATA (:mod:`euicc_sim.gp` rule 1)."""
        return gp.lookup(self._objects, tag)

    def get_status(self, channel: int, p1: int, p2: int, data: bytes) -> tuple[bytes, int]:
        """GlobalPlatform GET STATUS: the ECASD reports itself only (:mod:`euicc_sim.gp`)."""
        return self._status.get_status(channel, p1, p2, data)

    def store_data(self, channel: int, request: bytes) -> bytes:
        # ES10 lives in ISD-R; the ECASD takes no STORE DATA from the device.
        raise StatusWordError(0x6985)

    def reset(self) -> None:
        self._status.forget()

    def channel_closed(self, channel: int) -> None:
        self._status.forget(channel)


def fci(aid: bytes, extra: bytes = b"") -> bytes:
    """A GlobalPlatform-style FCI: 6F { 84 AID, A5 { 9F65 max block size }, extra }."""
    proprietary = bytes.fromhex("9F6501FF")
    body = bytes([0x84, len(aid)]) + aid + bytes([0xA5, len(proprietary)]) + proprietary + extra
    return bytes([0x6F, len(body)]) + body
