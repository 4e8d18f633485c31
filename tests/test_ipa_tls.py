"""ipa.tls: configured anchors are the only roots; pins compare SubjectPublicKeyInfo."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from euicc_protocol.crypto import Curve
from euicc_protocol.testpki import generate_test_pki
from ipa.es9p import Es9Config
from ipa.esipa import EsipaConfig
from ipa.tls import anchored_context, certificate_public_key, unverified_context

PEM = serialization.Encoding.PEM


@pytest.fixture(scope="module")
def two_cis() -> tuple[bytes, bytes]:
    """Two unrelated CI certificates (DER)."""
    return generate_test_pki(Curve.NIST_P256).ci.cert_der, generate_test_pki(
        Curve.NIST_P256
    ).ci.cert_der


def _pem(der: bytes) -> bytes:
    from cryptography import x509

    return x509.load_der_x509_certificate(der).public_bytes(PEM)


def test_anchored_context_trusts_only_the_anchors(
    two_cis: tuple[bytes, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, system = two_cis
    store = tmp_path / "system.pem"
    store.write_bytes(_pem(system))
    monkeypatch.setenv("SSL_CERT_FILE", str(store))
    # The stand-in system store is live: a default context loads it ...
    assert len(ssl.create_default_context().get_ca_certs()) == 1
    # ... and no anchored context does, whichever client builds it.
    contexts = [
        anchored_context([ours]),
        anchored_context([_pem(ours)], partial_chain=True),
        Es9Config(ca_certificates=(ours,)).ssl_context(),
        EsipaConfig(ca_certificates=(ours,)).ssl_context(),
    ]
    for context in contexts:
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        certs = context.get_ca_certs(binary_form=True)
        assert certs == [ours]


def test_partial_chain_only_when_asked(two_cis: tuple[bytes, bytes]) -> None:
    ours, _ = two_cis
    assert not anchored_context([ours]).verify_flags & ssl.VERIFY_X509_PARTIAL_CHAIN
    assert anchored_context([ours], partial_chain=True).verify_flags & (
        ssl.VERIFY_X509_PARTIAL_CHAIN
    )
    # ESipa accepts an eIM's own TLS certificate as its anchor (as configured on the card).
    esipa = EsipaConfig(ca_certificates=(ours,)).ssl_context()
    assert isinstance(esipa, ssl.SSLContext)
    assert esipa.verify_flags & ssl.VERIFY_X509_PARTIAL_CHAIN


@pytest.mark.parametrize("anchors", [[], [b"not a certificate"], [b"-----BEGIN junk"]])
def test_bad_anchors_are_a_value_error(anchors: list[bytes]) -> None:
    with pytest.raises(ValueError):
        anchored_context(anchors)


def test_unverified_context_checks_nothing() -> None:
    context = unverified_context()
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname


def test_certificate_public_key_is_the_spki(two_cis: tuple[bytes, bytes]) -> None:
    from cryptography import x509

    ours, system = two_cis
    cert = x509.load_der_x509_certificate(ours)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert certificate_public_key(ours) == spki
    assert certificate_public_key(system) != spki
