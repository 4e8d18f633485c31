"""ES10b.LoadCRL conformance (optional function: announced by ``rspCapability.crlSupport``).

The CRLs are signed with the published GSMA SGP.26 test CI keys, so these tests run on cards
that trust an SGP.26 CI (every test card does); other cards are skipped with the reason.
Loading a CRL changes the card, so on a card in a reader they need ``--allow-card-changes``.
The revoked serial numbers are random 20-byte values no real certificate carries, and the CRL
numbers grow with the clock, so a card that already holds earlier test CRLs still takes them.
"""

from __future__ import annotations

import os
import time

import pytest

from euicc_protocol.crypto import Curve
from euicc_protocol.testpki import Credential, generate_test_pki, issue_crl, load_sgp26
from ipa.errors import Es10Error
from ipa.es10 import Es10Client
from ipa.types import LoadCrlError

SGP26_CIS = {pki.ci.ski: pki.ci for pki in (load_sgp26(c) for c in Curve)}


@pytest.fixture
def ci(es10: Es10Client) -> Credential:
    """An SGP.26 CI the card verifies with, on a card that supports LoadCRL."""
    info2 = es10.get_euicc_info2()
    if "crlSupport" not in info2.rsp_capability:
        pytest.skip("needs a card that announces crlSupport")
    for ski in info2.euicc_ci_pkid_list_for_verification:
        if ski in SGP26_CIS:
            return SGP26_CIS[ski]
    pytest.skip("needs a card that trusts a GSMA SGP.26 test CI")


def crl_number() -> int:
    return time.time_ns()  # always newer than any earlier run's


def unused_serial() -> int:
    return int.from_bytes(os.urandom(19), "big") | 1 << 150


def load_error(es10: Es10Client, crl: bytes) -> LoadCrlError:
    with pytest.raises(Es10Error) as caught:
        es10.load_crl(crl)
    assert caught.value.field == "loadCRLResponseError"
    result = caught.value.result
    assert isinstance(result, LoadCrlError)
    return result


@pytest.mark.modifies_card
def test_a_crl_of_the_ci_is_taken_and_an_older_one_refused(
    es10: Es10Client, ci: Credential
) -> None:
    number = crl_number()
    assert es10.load_crl(issue_crl(ci, [unused_serial()], number)) == []
    older = issue_crl(ci, [unused_serial()], number - 1)
    assert load_error(es10, older) is LoadCrlError.FRESHER_CRL_ALREADY_LOADED


@pytest.mark.modifies_card
def test_a_delta_crl_on_the_loaded_base_is_taken(es10: Es10Client, ci: Credential) -> None:
    base = crl_number()
    es10.load_crl(issue_crl(ci, [unused_serial()], base))
    assert es10.load_crl(issue_crl(ci, [unused_serial()], base + 1, delta_of=base)) == []


@pytest.mark.modifies_card
def test_a_partitioned_crl_reports_its_missing_parts(es10: Es10Client, ci: Credential) -> None:
    number = crl_number()
    assert es10.load_crl(issue_crl(ci, [unused_serial()], number, partial=(3, 2))) == [1, 3]
    assert es10.load_crl(issue_crl(ci, [unused_serial()], number, partial=(3, 1))) == [3]
    assert es10.load_crl(issue_crl(ci, [unused_serial()], number, partial=(3, 3))) == []


def test_a_crl_of_an_unknown_ci_is_verification_key_not_found(
    es10: Es10Client, ci: Credential
) -> None:
    stranger = generate_test_pki(Curve.NIST_P256).ci
    crl = issue_crl(stranger, [unused_serial()], crl_number())
    assert load_error(es10, crl) is LoadCrlError.VERIFICATION_KEY_NOT_FOUND


def test_a_crl_with_a_broken_signature_is_invalid_signature(
    es10: Es10Client, ci: Credential
) -> None:
    crl = bytearray(issue_crl(ci, [unused_serial()], crl_number()))
    crl[-3] ^= 0x01
    assert load_error(es10, bytes(crl)) is LoadCrlError.INVALID_SIGNATURE
