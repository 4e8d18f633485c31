"""Tests of euicc_protocol.pki: SGP.22 chain checks on the SGP.26 set and on generated test PKIs."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import ipaddress
import json
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from euicc_protocol import crypto, pki
from euicc_protocol.crypto import Curve
from euicc_protocol.eid import InvalidEid, make_eid
from euicc_protocol.pki import (
    BadCertificateSignature,
    CertificateExpired,
    CertRole,
    EidNotPermitted,
    InvalidCertificate,
    IssuerMismatch,
    UnknownCi,
    UnsupportedCurve,
    WrongRole,
    check_eim_certificate,
    check_euicc_chain,
    check_server_certificate,
)
from euicc_protocol.testpki import (
    Credential,
    TestPki,
    generate_test_pki,
    issue_euicc_certificate,
    load_sgp26,
)

DATA = Path(__file__).with_name("data")
CURVES = list(Curve)
SGP26_EID = "89049032123451234512345678901235"
SGP26_CI_SKI = {
    Curve.NIST_P256: "F54172BDF98A95D65CBEB88A38A1C11D800A85C3",
    Curve.BRAINPOOL_P256R1: "C0BC70BA36929D43B467FF57570530E57AB8FCD8",
}
SERVER_ROLES = {"dp_auth": CertRole.DP_AUTH, "dp_pb": CertRole.DP_PB, "dp_tls": CertRole.DP_TLS}


@pytest.fixture(scope="module", params=CURVES, ids=lambda c: c.suffix)
def sgp26(request: pytest.FixtureRequest) -> TestPki:
    return load_sgp26(request.param)


@pytest.fixture(scope="module", params=CURVES, ids=lambda c: c.suffix)
def generated(request: pytest.FixtureRequest) -> TestPki:
    return _generated_for(request.param)


@functools.cache
def _generated_for(curve: Curve) -> TestPki:
    return generate_test_pki(curve)


def _reissue(
    cert: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    drop: type[x509.ExtensionType] | None = None,
    add: tuple[x509.ExtensionType, bool] | None = None,
    public_key: ec.EllipticCurvePublicKey | None = None,
) -> x509.Certificate:
    """Copy a certificate, optionally dropping/adding an extension or changing its key."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.issuer)
        .public_key(public_key or cert.public_key())  # type: ignore[arg-type]
        .serial_number(cert.serial_number)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    for ext in cert.extensions:
        if drop is not None and isinstance(ext.value, drop):
            continue
        builder = builder.add_extension(ext.value, ext.critical)
    if add is not None:
        builder = builder.add_extension(add[0], add[1])
    return builder.sign(issuer_key, hashes.SHA256())


# ------------------------------------------------------------------ the SGP.26 set


def test_sgp26_euicc_chain_returns_published_eid(sgp26: TestPki) -> None:
    assert check_euicc_chain(sgp26.euicc.cert, sgp26.eum.cert, sgp26.ci_keys()) == SGP26_EID
    assert sgp26.eid == SGP26_EID


def test_sgp26_ci_key_id_is_published_ski(sgp26: TestPki) -> None:
    assert sgp26.ci_ski.hex().upper() == SGP26_CI_SKI[sgp26.curve]
    assert pki.trusted_ci_keys([sgp26.ci.cert]).keys() == {sgp26.ci_ski}
    assert pki.check_ci_certificate(sgp26.ci.cert) == sgp26.ci_ski


@pytest.mark.parametrize("attr", sorted(SERVER_ROLES))
def test_sgp26_server_certificates_carry_smdp_oid(sgp26: TestPki, attr: str) -> None:
    cert = getattr(sgp26, attr).cert
    assert check_server_certificate(cert, sgp26.ci_keys(), SERVER_ROLES[attr]) == "2.999.10"


def test_sgp26_tls_certificate_is_valid_until_2027(sgp26: TestPki) -> None:
    keys = sgp26.ci_keys()
    at = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    assert check_server_certificate(sgp26.dp_tls.cert, keys, CertRole.DP_TLS, at=at)
    with pytest.raises(CertificateExpired, match="expired"):
        check_server_certificate(
            sgp26.dp_tls.cert, keys, CertRole.DP_TLS, at=dt.datetime(2027, 3, 1)
        )
    with pytest.raises(CertificateExpired, match="not valid before"):
        check_server_certificate(
            sgp26.dp_tls.cert, keys, CertRole.DP_TLS, at=dt.datetime(2026, 1, 1)
        )


def test_sgp26_eim_sample_is_self_signed(sgp26: TestPki) -> None:
    key = check_eim_certificate(sgp26.eim.cert)
    assert crypto.public_point(key) == crypto.public_point(sgp26.eim.key.public_key())


def test_sgp26_inspection_helpers(sgp26: TestPki) -> None:
    assert pki.cert_role(sgp26.ci.cert) is CertRole.CI
    assert pki.cert_role(sgp26.eum.cert) is CertRole.EUM
    assert pki.cert_role(sgp26.euicc.cert) is CertRole.EUICC
    assert pki.cert_role(sgp26.dp_pb.cert) is CertRole.DP_PB
    assert pki.cert_role(sgp26.eim.cert) is None
    assert pki.rid_oid(sgp26.ci.cert) == "2.999.1"
    assert pki.rid_oid(sgp26.eum.cert) == "2.999.5"
    assert pki.rid_oid(sgp26.euicc.cert) is None
    assert pki.permitted_eid_prefixes(sgp26.eum.cert) == ("89049032",)
    assert pki.authority_key_id(sgp26.eum.cert) == sgp26.ci_ski
    assert pki.authority_key_id(sgp26.euicc.cert) == pki.subject_key_id(sgp26.eum.cert)
    assert pki.subject_serial_number(sgp26.euicc.cert) == SGP26_EID
    assert pki.cert_curve(sgp26.euicc.cert) is sgp26.curve


def test_sgp26_nist_key_ids_are_method_1() -> None:
    nist = load_sgp26(Curve.NIST_P256)
    assert nist.eum.ski.hex().upper() == "DD3DA24D350C1CC5D0AF0965F40EC34C5EE409F1"
    assert nist.euicc.ski.hex().upper() == "A52476AF5D50AA376437CCB1DA2172EF45F484F0"
    assert crypto.subject_key_identifier(nist.euicc.public_key) == nist.euicc.ski


def test_production_dpauth_chains_to_gsma_root_ci() -> None:
    root = pki.load_certificate((DATA / "gsma_rsp2_root_ci1.crt").read_bytes())
    keys = pki.trusted_ci_keys([root])
    assert list(keys) == [bytes.fromhex("81370F5125D0B1D408D4C3B232E6D25E795BEBFB")]
    capture = json.loads((DATA / "es9p_initiateAuthentication_production.json").read_text())
    cert = pki.load_certificate(
        base64.b64decode(capture["http_response_body"]["serverCertificate"])
    )
    oid = check_server_certificate(cert, keys, CertRole.DP_AUTH)
    assert oid == "1.3.6.1.4.1.31746.1.220.100.101.2"
    with pytest.raises(UnknownCi):
        check_server_certificate(cert, load_sgp26(Curve.NIST_P256).ci_keys(), CertRole.DP_AUTH)


# ------------------------------------------------------------------ failures


def test_tampered_euicc_certificate_fails_signature(sgp26: TestPki) -> None:
    other_eid = make_eid("89049032", 7)
    der = sgp26.euicc.cert_der.replace(SGP26_EID.encode(), other_eid.encode())
    tampered = pki.load_certificate(der)
    with pytest.raises(BadCertificateSignature) as info:
        check_euicc_chain(tampered, sgp26.eum.cert, sgp26.ci_keys())
    assert info.value.which == "eUICC"
    assert "signature" in str(info.value)


def test_tampered_eum_certificate_fails_signature(sgp26: TestPki) -> None:
    der = sgp26.eum.cert_der.replace(b"EUM Test", b"EUM Tesu")
    with pytest.raises(BadCertificateSignature) as info:
        check_euicc_chain(sgp26.euicc.cert, pki.load_certificate(der), sgp26.ci_keys())
    assert info.value.which == "EUM"


def test_euicc_under_foreign_eum_is_issuer_mismatch(sgp26: TestPki) -> None:
    generated = _generated_for(sgp26.curve)
    with pytest.raises(IssuerMismatch, match="AuthorityKeyIdentifier"):
        check_euicc_chain(generated.euicc.cert, sgp26.eum.cert, sgp26.ci_keys())


def test_eum_of_untrusted_ci_is_unknown_ci(sgp26: TestPki, generated: TestPki) -> None:
    with pytest.raises(UnknownCi) as info:
        check_euicc_chain(sgp26.euicc.cert, sgp26.eum.cert, generated.ci_keys())
    assert info.value.which == "EUM"
    assert sgp26.ci_ski.hex().upper() in str(info.value)


def test_ci_key_under_wrong_ski_is_bad_signature(sgp26: TestPki) -> None:
    generated = _generated_for(sgp26.curve)
    swapped = {sgp26.ci_ski: generated.ci.public_key}
    with pytest.raises(BadCertificateSignature):
        check_euicc_chain(sgp26.euicc.cert, sgp26.eum.cert, swapped)


def test_eid_outside_eum_prefix_is_rejected(sgp26: TestPki) -> None:
    outside = make_eid("89049033", 1)
    with pytest.raises(EidNotPermitted):
        issue_euicc_certificate(sgp26.eum.cert, sgp26.eum.key, outside)
    _, cert = issue_euicc_certificate(sgp26.eum.cert, sgp26.eum.key, outside, enforce_prefix=False)
    with pytest.raises(EidNotPermitted, match="89049033") as info:
        check_euicc_chain(cert, sgp26.eum.cert, sgp26.ci_keys())
    assert info.value.which == "eUICC"


def test_dpauth_used_as_dppb_is_wrong_role(sgp26: TestPki) -> None:
    with pytest.raises(WrongRole, match="DPauth.*DPpb"):
        check_server_certificate(sgp26.dp_auth.cert, sgp26.ci_keys(), CertRole.DP_PB)
    with pytest.raises(WrongRole, match="DPpb.*DPauth"):
        check_server_certificate(sgp26.dp_pb.cert, sgp26.ci_keys(), CertRole.DP_AUTH)


def test_swapped_euicc_and_eum_are_rejected(sgp26: TestPki) -> None:
    # The "EUM" given is the eUICC certificate, whose AKI names the EUM, not a CI.
    with pytest.raises(UnknownCi):
        check_euicc_chain(sgp26.eum.cert, sgp26.euicc.cert, sgp26.ci_keys())


def test_dpauth_as_eum_is_wrong_role(sgp26: TestPki) -> None:
    with pytest.raises(WrongRole) as info:
        check_euicc_chain(sgp26.euicc.cert, sgp26.dp_auth.cert, sgp26.ci_keys())
    assert info.value.which == "EUM"


def test_non_server_role_is_a_usage_error(sgp26: TestPki) -> None:
    with pytest.raises(ValueError):
        check_server_certificate(sgp26.eum.cert, sgp26.ci_keys(), CertRole.EUM)


def test_euicc_key_on_other_curve_is_rejected(sgp26: TestPki) -> None:
    other = next(c for c in CURVES if c is not sgp26.curve)
    _, cert = issue_euicc_certificate(sgp26.eum.cert, sgp26.eum.key, SGP26_EID, other)
    with pytest.raises(InvalidCertificate, match="issuer's is on"):
        check_euicc_chain(cert, sgp26.eum.cert, sgp26.ci_keys())


def test_unsupported_curve_is_reported(sgp26: TestPki) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    cert = _reissue(sgp26.euicc.cert, sgp26.eum.key, public_key=p384.public_key())
    with pytest.raises(UnsupportedCurve, match="secp384r1"):
        check_euicc_chain(cert, sgp26.eum.cert, sgp26.ci_keys())


def test_missing_key_usage_is_rejected(sgp26: TestPki) -> None:
    cert = _reissue(sgp26.dp_pb.cert, sgp26.ci.key, drop=x509.KeyUsage)
    with pytest.raises(InvalidCertificate, match="keyUsage"):
        check_server_certificate(cert, sgp26.ci_keys(), CertRole.DP_PB)


def test_missing_aki_is_rejected(sgp26: TestPki) -> None:
    cert = _reissue(sgp26.euicc.cert, sgp26.eum.key, drop=x509.AuthorityKeyIdentifier)
    with pytest.raises(InvalidCertificate, match="no AuthorityKeyIdentifier"):
        check_euicc_chain(cert, sgp26.eum.cert, sgp26.ci_keys())


def test_two_roles_are_rejected(sgp26: TestPki) -> None:
    policies = x509.CertificatePolicies(
        [
            x509.PolicyInformation(x509.ObjectIdentifier(CertRole.DP_AUTH.value), None),
            x509.PolicyInformation(x509.ObjectIdentifier(CertRole.DP_PB.value), None),
        ]
    )
    cert = _reissue(
        sgp26.dp_pb.cert, sgp26.ci.key, drop=x509.CertificatePolicies, add=(policies, True)
    )
    with pytest.raises(InvalidCertificate, match="several GSMA roles"):
        check_server_certificate(cert, sgp26.ci_keys(), CertRole.DP_PB)


def test_invalid_eid_in_euicc_subject_is_rejected(generated: TestPki) -> None:
    bad_eid = "89049032123451234512345678901234"
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "RSP Test EUM"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, bad_eid),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(generated.eum.cert.subject)
        .public_key(generated.euicc.public_key)
        .serial_number(1)
        .not_valid_before(dt.datetime(2020, 1, 1))
        .not_valid_after(dt.datetime(2099, 1, 1))
    )
    for ext in generated.euicc.cert.extensions:
        cert = cert.add_extension(ext.value, ext.critical)
    signed = cert.sign(generated.eum.key, hashes.SHA256())
    with pytest.raises(InvalidCertificate, match="not a valid EID"):
        check_euicc_chain(signed, generated.eum.cert, generated.ci_keys())


def test_garbage_is_not_a_certificate() -> None:
    with pytest.raises(InvalidCertificate, match="cannot parse"):
        pki.load_certificate(b"\x30\x03\x02\x01\x00")


# ------------------------------------------------------------------ issuing


@pytest.mark.parametrize("curve", CURVES)
def test_new_euicc_under_sgp26_eum_verifies(curve: Curve) -> None:
    sgp26 = load_sgp26(curve)
    eid = make_eid("89049032", 424242)
    key, cert = issue_euicc_certificate(sgp26.eum.cert, sgp26.eum.key, eid)
    assert check_euicc_chain(cert, sgp26.eum.cert, sgp26.ci_keys()) == eid
    assert crypto.Curve.of_key(key) is curve
    assert pki.subject_key_id(cert) == crypto.subject_key_identifier(key.public_key())


def test_issue_euicc_rejects_invalid_eid(sgp26: TestPki) -> None:
    with pytest.raises(InvalidEid):
        issue_euicc_certificate(sgp26.eum.cert, sgp26.eum.key, "89049032123451234512345678901234")


# ------------------------------------------------------------------ generated PKIs


def test_generated_pki_passes_all_checks(generated: TestPki) -> None:
    keys = generated.ci_keys()
    now = dt.datetime.now(dt.UTC)
    assert check_euicc_chain(generated.euicc.cert, generated.eum.cert, keys, at=now) == (
        generated.eid
    )
    for attr, role in SERVER_ROLES.items():
        cert = getattr(generated, attr).cert
        assert check_server_certificate(cert, keys, role, at=now) == "2.999.10"
    check_eim_certificate(generated.eim.cert, at=now)
    assert pki.check_ci_certificate(generated.ci.cert, at=now) == generated.ci_ski


def test_generated_euicc_certificate_has_sgp22_shape(generated: TestPki) -> None:
    cert = generated.euicc.cert
    assert cert.not_valid_after_utc == dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
    # notAfter after 2049 must be GeneralizedTime (tag 0x18) in the DER.
    assert b"\x18\x0f99991231235959Z" in generated.euicc.cert_der
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies)
    assert policies.critical
    assert [p.policy_identifier.dotted_string for p in policies.value] == ["2.23.146.1.2.1.1"]
    assert pki.subject_key_id(cert) == crypto.subject_key_identifier(generated.euicc.public_key)
    assert pki.authority_key_id(cert) == generated.eum.ski
    assert pki.subject_serial_number(cert) == generated.eid
    assert generated.eid.startswith("89049032")


def test_generated_eum_and_ci_shape(generated: TestPki) -> None:
    eum = generated.eum.cert
    bc = eum.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    assert eum.extensions.get_extension_for_class(x509.NameConstraints).critical
    assert pki.rid_oid(eum) == "2.999.5"
    assert pki.rid_oid(generated.ci.cert) == "2.999.1"
    assert pki.cert_role(generated.ci.cert) is CertRole.CI


def test_generated_tls_certificate_serves_loopback(generated: TestPki) -> None:
    san = generated.dp_tls.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert set(san.value.get_values_for_type(x509.DNSName)) == {
        "testsmdpplus1.example.com",
        "localhost",
    }
    assert san.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert pki.rid_oid(generated.dp_tls.cert) == "2.999.10"


def test_generated_pki_options() -> None:
    eid = make_eid("89001012", 99)
    pki_set = generate_test_pki(
        Curve.NIST_P256,
        eid,
        eum_ein_prefix="89001012",
        smdp_oid="2.999.12",
        smdp_host="smdp.test",
    )
    assert pki_set.eid == eid
    assert check_euicc_chain(pki_set.euicc.cert, pki_set.eum.cert, pki_set.ci_keys()) == eid
    oid = check_server_certificate(pki_set.dp_tls.cert, pki_set.ci_keys(), CertRole.DP_TLS)
    assert oid == "2.999.12"
    assert pki_set.dp_tls.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "smdp.test"
    )


def test_generated_pki_refuses_eid_outside_prefix() -> None:
    with pytest.raises(EidNotPermitted):
        generate_test_pki(Curve.NIST_P256, SGP26_EID, eum_ein_prefix="89001012")
    with pytest.raises(InvalidEid):
        generate_test_pki(Curve.NIST_P256, "89049032123451234512345678901234")


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    pkis = {curve: generate_test_pki(curve) for curve in CURVES}
    for pki_set in pkis.values():
        pki_set.save(tmp_path)  # both curves share one folder
    assert (tmp_path / "CERT_CI_ECDSA_NIST.der").exists()
    assert (tmp_path / "SK_S_SM_DPpb_ECDSA_BRP.pem").exists()
    for curve, pki_set in pkis.items():
        loaded = TestPki.load(tmp_path, curve)
        assert loaded.eid == pki_set.eid
        assert loaded.ci_ski == pki_set.ci_ski
        assert loaded.dp_tls.cert == pki_set.dp_tls.cert
        assert check_euicc_chain(loaded.euicc.cert, loaded.eum.cert, loaded.ci_keys())


def test_load_detects_key_certificate_mismatch(tmp_path: Path) -> None:
    pki_set = generate_test_pki(Curve.NIST_P256)
    pki_set.save(tmp_path)
    (tmp_path / "SK_EUICC_ECDSA_NIST.pem").write_bytes(pki_set.eum.key_pem())
    with pytest.raises(InvalidCertificate, match="does not match"):
        TestPki.load(tmp_path, Curve.NIST_P256)


def test_pem_and_der_load_alike(generated: TestPki) -> None:
    assert pki.load_certificate(generated.ci.cert_pem) == generated.ci.cert
    pem_key = pki.load_private_key(generated.ci.key_pem())
    der_key = pki.load_private_key(
        generated.ci.key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    assert crypto.public_point(pem_key.public_key()) == crypto.public_point(der_key.public_key())
    spki = generated.eim.public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert crypto.public_point(pki.load_public_key(spki)) == crypto.public_point(
        generated.eim.public_key
    )


def test_credential_repr_hides_key(generated: TestPki) -> None:
    text = repr(generated) + repr(generated.euicc)
    assert "Test eUICC" in text
    scalar = generated.euicc.key.private_numbers().private_value
    assert str(scalar) not in text and f"{scalar:x}" not in text
    assert "PRIVATE KEY" not in text


# ------------------------------------------------------------------ eIM


def _ci_issued_eim(ci: Credential) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = crypto.generate_private_key(pki.cert_curve(ci.cert))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CI eIM")]))
        .issuer_name(ci.cert.subject)
        .public_key(key.public_key())
        .serial_number(5)
        .not_valid_before(dt.datetime(2020, 1, 1))
        .not_valid_after(dt.datetime(2099, 1, 1))
        .add_extension(x509.AuthorityKeyIdentifier(ci.ski, None, None), False)
        .add_extension(
            x509.SubjectKeyIdentifier(crypto.subject_key_identifier(key.public_key())), False
        )
        .sign(ci.key, hashes.SHA256())
    )
    return key, cert


def test_ci_issued_eim_certificate(generated: TestPki) -> None:
    key, cert = _ci_issued_eim(generated.ci)
    found = check_eim_certificate(cert, generated.ci_keys())
    assert crypto.public_point(found) == crypto.public_point(key.public_key())
    with pytest.raises(UnknownCi):
        check_eim_certificate(cert)


def test_tampered_self_signed_eim_is_rejected(sgp26: TestPki) -> None:
    der = sgp26.eim.cert_der.replace(b"Some-State", b"Some-Statf")
    with pytest.raises(BadCertificateSignature):
        check_eim_certificate(pki.load_certificate(der))


# ------------------------------------------------------------------ permittedEins (SGP.22 v3)


def test_permitted_eins_extension_is_honoured(generated: TestPki) -> None:
    eins = x509.UnrecognizedExtension(
        x509.ObjectIdentifier("2.23.146.1.2.2.0"),
        bytes.fromhex("3014") + b"\x13\x0889049099" + b"\x13\x0889049100",
    )
    eum_cert = _reissue(
        generated.eum.cert, generated.ci.key, drop=x509.NameConstraints, add=(eins, False)
    )
    assert pki.permitted_eid_prefixes(eum_cert) == ("89049099", "89049100")
    eum = Credential(generated.eum.key, eum_cert)
    eid = make_eid("89049100", 1)
    _, euicc = issue_euicc_certificate(eum.cert, eum.key, eid)
    assert check_euicc_chain(euicc, eum.cert, generated.ci_keys()) == eid
    _, outside = issue_euicc_certificate(eum.cert, eum.key, generated.eid, enforce_prefix=False)
    with pytest.raises(EidNotPermitted):
        check_euicc_chain(outside, eum.cert, generated.ci_keys())


def test_eum_without_any_permitted_ein_is_rejected(generated: TestPki) -> None:
    eum_cert = _reissue(generated.eum.cert, generated.ci.key, drop=x509.NameConstraints)
    with pytest.raises(InvalidCertificate, match="no permitted EIN") as info:
        check_euicc_chain(generated.euicc.cert, eum_cert, generated.ci_keys())
    assert info.value.which == "EUM"


def test_testpki_is_not_collected_by_pytest() -> None:
    assert TestPki.__test__ is False


def _tls_handshake(
    server_cred: Credential, ca_cert: x509.Certificate, hostname: str, folder: Path
) -> str:
    """Run a TLS handshake in memory; return the negotiated version."""
    (folder / "cert.pem").write_bytes(server_cred.cert_pem)
    (folder / "key.pem").write_bytes(server_cred.key_pem())
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    client_ctx = ssl.create_default_context(
        cadata=ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    )
    client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    bios = [ssl.MemoryBIO() for _ in range(4)]
    server = server_ctx.wrap_bio(bios[0], bios[1], server_side=True)
    client = client_ctx.wrap_bio(bios[2], bios[3], server_hostname=hostname)
    for _ in range(5):
        for end in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                end.do_handshake()
        bios[0].write(bios[3].read())
        bios[2].write(bios[1].read())
    version = client.version()
    assert version is not None, "handshake did not complete"
    return version


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1", "testsmdpplus1.example.com"])
def test_generated_nist_dptls_serves_tls_trusted_by_ci(hostname: str, tmp_path: Path) -> None:
    # brainpoolP256r1 TLS is not offered by OpenSSL 3.0 clients by default, so NIST only.
    generated = _generated_for(Curve.NIST_P256)
    version = _tls_handshake(generated.dp_tls, generated.ci.cert, hostname, tmp_path)
    assert version.startswith("TLS")


def test_generated_dptls_is_refused_for_other_hosts(tmp_path: Path) -> None:
    generated = _generated_for(Curve.NIST_P256)
    with pytest.raises(ssl.SSLCertVerificationError):
        _tls_handshake(generated.dp_tls, generated.ci.cert, "other.example.com", tmp_path)
