"""ES10b conformance: card information, challenge, RAT and the SGP.32 GetCerts."""

from __future__ import annotations

import re

import pytest

from euicc_protocol import pki
from euicc_protocol.eid import is_valid_eid
from ipa.errors import Es10Error
from ipa.es10 import Es10Client
from ipa.types import EuiccCertificates, IpaMode

VERSION = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}")
SKI_LENGTH = 20


def check_chain(certs: EuiccCertificates, eid: str) -> bytes:
    """Check the eUICC certificate names ``eid`` and is signed by the EUM; return the EUM's AKI.

    The CI certificates are not available over ES10, so the chain is checked up to the EUM.
    """
    eum = pki.load_certificate(certs.eum_certificate)
    euicc = pki.load_certificate(certs.euicc_certificate)
    assert pki.subject_serial_number(euicc) == eid
    eum_ski = pki.subject_key_id(eum)
    assert eum_ski is not None
    pki.verify_issued_by(euicc, eum.public_key(), eum_ski, which="eUICC")
    eum_aki = pki.authority_key_id(eum)
    assert eum_aki is not None
    return eum_aki


# -- GetEUICCInfo1 / GetEUICCInfo2 -------------------------------------------------------------


def test_euicc_info1_has_svn_and_ci_lists(es10: Es10Client) -> None:
    info1 = es10.get_euicc_info1()
    assert VERSION.fullmatch(info1.svn)
    assert info1.euicc_ci_pkid_list_for_verification
    assert info1.euicc_ci_pkid_list_for_signing
    for ski in info1.euicc_ci_pkid_list_for_verification + info1.euicc_ci_pkid_list_for_signing:
        assert len(ski) == SKI_LENGTH
    assert info1.raw.startswith(b"\xbf\x20")


def test_euicc_info1_matches_euicc_info2(es10: Es10Client) -> None:
    info1 = es10.get_euicc_info1()
    info2 = es10.get_euicc_info2()
    assert info1.svn == info2.svn
    assert info1.euicc_ci_pkid_list_for_verification == info2.euicc_ci_pkid_list_for_verification
    assert info1.euicc_ci_pkid_list_for_signing == info2.euicc_ci_pkid_list_for_signing


@pytest.mark.kind("iot")
def test_euicc_info2_has_the_sgp32_fields(es10: Es10Client) -> None:
    info2 = es10.get_euicc_info2()
    assert info2.raw.startswith(b"\xbf\x22")
    assert info2.ipa_mode in (IpaMode.IPAD, IpaMode.IPAE)
    assert info2.iot_specific_info is not None
    assert "1.2.0" in info2.iot_specific_info.iot_version
    assert VERSION.fullmatch(info2.pp_version)
    assert info2.sas_acreditation_number.strip()
    for version in (info2.profile_version, info2.svn, info2.euicc_firmware_ver):
        assert VERSION.fullmatch(version)


@pytest.mark.kind("consumer")
def test_consumer_euicc_info2_has_no_sgp32_fields(es10: Es10Client) -> None:
    info2 = es10.get_euicc_info2()
    assert info2.raw.startswith(b"\xbf\x22")
    assert info2.ipa_mode is None
    assert info2.iot_specific_info is None
    assert VERSION.fullmatch(info2.pp_version)
    assert info2.sas_acreditation_number.strip()
    for version in (info2.profile_version, info2.svn, info2.euicc_firmware_ver):
        assert VERSION.fullmatch(version)


def test_euicc_info_is_stable_between_calls(es10: Es10Client) -> None:
    assert es10.get_euicc_info1().raw == es10.get_euicc_info1().raw
    assert es10.get_euicc_info2().raw == es10.get_euicc_info2().raw


# -- GetEUICCChallenge -------------------------------------------------------------------------


def test_challenge_is_16_bytes_and_fresh_each_time(es10: Es10Client) -> None:
    challenges = [es10.get_euicc_challenge() for _ in range(4)]
    assert all(isinstance(c, bytes) and len(c) == 16 for c in challenges)
    assert len(set(challenges)) == len(challenges)


def test_challenge_is_fresh_after_power_cycle(card, es10: Es10Client) -> None:
    first = es10.get_euicc_challenge()
    es10 = card.power_cycle()
    second = es10.get_euicc_challenge()
    assert len(second) == 16
    assert second != first


# -- GetRAT ------------------------------------------------------------------------------------


def test_rat_entries_have_the_asn1_shape(es10: Es10Client) -> None:
    rat = es10.get_rat()
    assert isinstance(rat, list)
    for rule in rat:
        assert rule.ppr_ids
        assert set(rule.ppr_ids) <= {"pprUpdateControl", "ppr1", "ppr2"}
        assert set(rule.ppr_flags) <= {"consentRequired"}
        assert rule.allowed_operators
        for operator in rule.allowed_operators:
            assert len(operator.mcc_mnc) == 3


# -- GetCerts (SGP.32) -------------------------------------------------------------------------

iot_only = pytest.mark.kind("iot")


@iot_only
def test_get_certs_default_chain_names_the_eid(es10: Es10Client) -> None:
    eid = es10.get_eid()
    aki = check_chain(es10.get_certs(), eid)
    assert aki in es10.get_euicc_info1().euicc_ci_pkid_list_for_signing


@iot_only
def test_get_certs_for_every_signing_ci(es10: Es10Client) -> None:
    eid = es10.get_eid()
    assert is_valid_eid(eid)
    for ci in es10.get_euicc_info1().euicc_ci_pkid_list_for_signing:
        assert check_chain(es10.get_certs(ci), eid) == ci


@iot_only
def test_get_certs_eid_is_the_known_eid(card, es10: Es10Client) -> None:
    known = card.known_eid()
    if known is None:
        pytest.skip("the backend does not know the card's EID")
    euicc = pki.load_certificate(es10.get_certs().euicc_certificate)
    assert pki.subject_serial_number(euicc) == known


@iot_only
def test_get_certs_unknown_ci_is_invalid_ci_pkid(es10: Es10Client) -> None:
    known = set(es10.get_euicc_info1().euicc_ci_pkid_list_for_signing)
    unknown = next(ski for b in range(256) if (ski := bytes([b]) * SKI_LENGTH) not in known)
    with pytest.raises(Es10Error) as excinfo:
        es10.get_certs(unknown)
    assert excinfo.value.code == 1
    assert excinfo.value.name == "invalidCiPKId"
