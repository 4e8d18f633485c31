"""ES10b.LoadCRL on the emulated card, through the ES10 client (rules in euicc_sim/crl.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from euicc_protocol import tlv
from euicc_protocol.crypto import Curve
from euicc_protocol.testpki import generate_test_pki, issue_crl, load_sgp26
from euicc_sim.card import Euicc
from euicc_sim.config import CardConfig
from euicc_sim.state import StoredCrl
from euicc_sim.storage import state_from_json, state_to_json
from ipa.errors import Es10Error, StatusWordError
from ipa.es10 import Es10Client
from ipa.transport import InProcessTransport
from ipa.types import LoadCrlError

NIST = load_sgp26(Curve.NIST_P256)
BRAINPOOL = load_sgp26(Curve.BRAINPOOL_P256R1)


def load(card: Euicc, crl: bytes) -> list[int]:
    with Es10Client.open(InProcessTransport(card)) as client:
        return client.load_crl(crl)


def refused(card: Euicc, crl: bytes) -> LoadCrlError:
    before = card.state
    with pytest.raises(Es10Error) as caught:
        load(card, crl)
    assert caught.value.field == "loadCRLResponseError"
    assert card.state == before  # a refused CRL changes nothing
    result = caught.value.result
    assert isinstance(result, LoadCrlError)
    return result


def revoked(card: Euicc, pki: object = NIST) -> set[int]:
    crl = card.state.crl_for(pki.ci.ski)  # type: ignore[attr-defined]
    return set() if crl is None else set(crl.applied)


@pytest.fixture
def card() -> Euicc:
    return Euicc.create(None)


def test_a_full_crl_is_kept_per_ci_and_survives_a_power_cycle(tmp_path: Path) -> None:
    card = Euicc.create(tmp_path / "card")
    assert load(card, issue_crl(NIST.ci, [11, 12], 1)) == []
    assert load(card, issue_crl(BRAINPOOL.ci, [21], 4)) == []
    card.close()
    reopened = Euicc.open(tmp_path / "card")
    assert revoked(reopened) == {11, 12} and revoked(reopened, BRAINPOOL) == {21}
    assert reopened.state.is_revoked(NIST.ci.ski, 12)
    assert not reopened.state.is_revoked(BRAINPOOL.ci.ski, 12)
    # A newer full CRL replaces the list; the same one again changes nothing.
    assert load(reopened, issue_crl(NIST.ci, [13], 2)) == []
    assert load(reopened, issue_crl(NIST.ci, [13], 2)) == []
    assert revoked(reopened) == {13}


def test_euicc_info2_announces_crl_support(card: Euicc) -> None:
    with Es10Client.open(InProcessTransport(card)) as client:
        assert "crlSupport" in client.get_euicc_info2().rsp_capability


def test_an_older_crl_is_fresher_crl_already_loaded(card: Euicc) -> None:
    load(card, issue_crl(NIST.ci, [1], 5))
    assert refused(card, issue_crl(NIST.ci, [2], 4)) is LoadCrlError.FRESHER_CRL_ALREADY_LOADED


def test_a_crl_of_a_ci_the_card_does_not_know_is_verification_key_not_found(card: Euicc) -> None:
    stranger = generate_test_pki(Curve.NIST_P256).ci
    assert refused(card, issue_crl(stranger, [1], 1)) is LoadCrlError.VERIFICATION_KEY_NOT_FOUND


def test_a_bad_signature_is_invalid_signature(card: Euicc) -> None:
    crl = bytearray(issue_crl(NIST.ci, [1], 1))
    crl[-3] ^= 0x01  # inside the signature's s
    assert refused(card, bytes(crl)) is LoadCrlError.INVALID_SIGNATURE
    # Signed by another key that claims the CI's key id.
    forger = generate_test_pki(Curve.NIST_P256).ci
    forged = x509.load_der_x509_crl(issue_crl(forger, [1], 1))
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(NIST.ci.cert.subject)
        .last_update(forged.last_update_utc)
        .next_update(forged.next_update_utc or forged.last_update_utc)
        .add_extension(x509.AuthorityKeyIdentifier(NIST.ci.ski, None, None), critical=False)
        .add_extension(x509.CRLNumber(9), critical=False)
    )
    der = builder.sign(forger.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    assert refused(card, der) is LoadCrlError.INVALID_SIGNATURE


def _crl_without(extension: type[x509.ExtensionType]) -> bytes:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(NIST.ci.cert.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=1))
    )
    if extension is not x509.AuthorityKeyIdentifier:
        aki = x509.AuthorityKeyIdentifier(NIST.ci.ski, None, None)
        builder = builder.add_extension(aki, critical=False)
    if extension is not x509.CRLNumber:
        builder = builder.add_extension(x509.CRLNumber(1), critical=False)
    crl = builder.sign(NIST.ci.key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("missing", [x509.AuthorityKeyIdentifier, x509.CRLNumber])
def test_a_crl_outside_the_sgp22_profile_is_invalid_crl_format(
    card: Euicc, missing: type[x509.ExtensionType]
) -> None:
    assert refused(card, _crl_without(missing)) is LoadCrlError.INVALID_CRL_FORMAT


def test_a_certificate_list_that_is_no_crl_is_invalid_crl_format(card: Euicc) -> None:
    not_a_crl = tlv.encode_tlv(b"\x30", tlv.encode_tlv(b"\x02", b"\x01"))
    assert refused(card, not_a_crl) is LoadCrlError.INVALID_CRL_FORMAT


@pytest.mark.parametrize(
    "request_hex",
    ["BF3500", "BF35023000", "BF3504A0003000", "BF3502A000FF", "BF3503A002"],
    ids=["empty", "no A0", "trailing TLV", "trailing byte", "truncated"],
)
def test_a_request_of_the_wrong_shape_is_6a80(card: Euicc, request_hex: str) -> None:
    with Es10Client.open(InProcessTransport(card)) as client:
        with pytest.raises(StatusWordError) as caught:
            client.exchange(bytes.fromhex(request_hex))
    assert caught.value.sw == 0x6A80
    assert card.state.crls == ()


def test_a_delta_crl_needs_its_base_and_merges_into_it(card: Euicc) -> None:
    assert refused(card, issue_crl(NIST.ci, [5], 2, delta_of=1)) is LoadCrlError.BASE_CRL_MISSING
    load(card, issue_crl(NIST.ci, [1, 2, 3], 1))
    assert refused(card, issue_crl(NIST.ci, [5], 3, delta_of=2)) is LoadCrlError.BASE_CRL_MISSING
    assert load(card, issue_crl(NIST.ci, [5], 2, delta_of=1, removed=[2])) == []
    assert revoked(card) == {1, 3, 5}
    assert card.state.crl_for(NIST.ci.ski).crl_number == 2  # type: ignore[union-attr]
    assert refused(card, issue_crl(NIST.ci, [6], 1)) is LoadCrlError.FRESHER_CRL_ALREADY_LOADED


def test_a_partitioned_crl_loads_part_by_part_and_never_unrevokes_meanwhile(card: Euicc) -> None:
    load(card, issue_crl(NIST.ci, [100, 101], 1))
    assert load(card, issue_crl(NIST.ci, [1], 2, partial=(3, 1))) == [2, 3]
    assert revoked(card) == {100, 101, 1}  # the replaced list still applies
    assert load(card, issue_crl(NIST.ci, [3], 2, partial=(3, 3))) == [2]
    assert load(card, issue_crl(NIST.ci, [3], 2, partial=(3, 3))) == [2]  # again: no change
    assert revoked(card) == {100, 101, 1, 3}
    # A delta cannot build on an incomplete set.
    assert refused(card, issue_crl(NIST.ci, [9], 3, delta_of=2)) is LoadCrlError.BASE_CRL_MISSING
    assert load(card, issue_crl(NIST.ci, [2, 101], 2, partial=(3, 2))) == []
    assert revoked(card) == {1, 2, 3, 101}  # complete: only the new set's entries


def test_partial_crl_numbers_out_of_range_are_invalid_crl_format(card: Euicc) -> None:
    for partial in ((2, 3), (2, 0)):
        crl = issue_crl(NIST.ci, [1], 1, partial=partial)
        assert refused(card, crl) is LoadCrlError.INVALID_CRL_FORMAT


def test_no_room_for_more_revoked_certificates_is_not_enough_memory_space() -> None:
    card = Euicc.create(None, config=CardConfig(eid=Euicc.create(None).eid, max_crl_entries=3))
    load(card, issue_crl(BRAINPOOL.ci, [1], 1))
    load(card, issue_crl(NIST.ci, [1, 2], 1))
    crl = issue_crl(NIST.ci, [1, 2, 3], 2)
    assert refused(card, crl) is LoadCrlError.NOT_ENOUGH_MEMORY_SPACE
    assert revoked(card) == {1, 2}


def test_the_client_refuses_bytes_that_are_no_certificate_list(card: Euicc) -> None:
    with Es10Client.open(InProcessTransport(card)) as client:
        for bad in (b"", b"\x31\x00", issue_crl(NIST.ci, [1], 1) + b"\x00"):
            with pytest.raises(ValueError):
                client.load_crl(bad)


# -- a stateful property: whatever order CRLs arrive in, the rules hold ------------------------

SERIALS = st.frozensets(st.integers(1, 12), max_size=4)


class CrlMachine(RuleBasedStateMachine):
    """Random full, delta and partial CRLs of one CI; checks the rules of euicc_sim/crl.py on
    every answer: refusals change nothing, crlNumber never goes back, an incomplete set never
    un-revokes, a complete set (or a full CRL) is exactly its entries."""

    def __init__(self) -> None:
        super().__init__()
        self.card = Euicc.create(None)
        self.parts: dict[int, frozenset[int]] = {}  # entries of the current set's parts
        self.before_set: frozenset[int] = frozenset()  # applied when the current set began

    def stored(self) -> StoredCrl | None:
        return self.card.state.crl_for(NIST.ci.ski)

    def applied(self) -> frozenset[int]:
        crl = self.stored()
        return frozenset() if crl is None else crl.applied

    def send(self, crl: bytes) -> list[int] | None:
        before = self.card.state
        try:
            return load(self.card, crl)
        except Es10Error:
            assert self.card.state == before
            return None

    @rule(number=st.integers(1, 6), serials=SERIALS)
    def full(self, number: int, serials: frozenset[int]) -> None:
        old = self.stored()
        answer = self.send(issue_crl(NIST.ci, serials, number))
        if old is not None and old.crl_number > number:
            assert answer is None
            return
        assert answer == [] and self.applied() == serials
        self.parts = {}

    @rule(base=st.integers(1, 6), step=st.integers(0, 2), serials=SERIALS, removed=SERIALS)
    def delta(self, base: int, step: int, serials: frozenset[int], removed: frozenset[int]) -> None:
        old, before = self.stored(), self.applied()
        removed = removed - serials
        crl = issue_crl(NIST.ci, serials, base + step, delta_of=base, removed=removed)
        answer = self.send(crl)
        usable = old is not None and old.crl_number >= base and not old.missing_parts
        if not usable or old is None or old.crl_number > base + step:
            assert answer is None
            return
        assert answer == [] and self.applied() == (before | serials) - removed

    @rule(number=st.integers(1, 6), part=st.integers(1, 3), serials=SERIALS)
    def partial(self, number: int, part: int, serials: frozenset[int]) -> None:
        old, before = self.stored(), self.applied()
        answer = self.send(issue_crl(NIST.ci, serials, number, partial=(3, part)))
        if old is not None and old.crl_number > number:
            assert answer is None
            return
        assert answer is not None
        same_set = old is not None and (old.crl_number, old.total_parts) == (number, 3)
        if not same_set:
            self.parts, self.before_set = {}, before
        self.parts[part] = self.parts.get(part, frozenset()) | serials
        assert answer == sorted({1, 2, 3} - set(self.parts))
        entries = frozenset().union(*self.parts.values())
        expected = entries if not answer else entries | self.before_set
        assert self.applied() == expected

    @invariant()
    def survives_a_round_trip_through_the_state_file(self) -> None:
        assert state_from_json(state_to_json(self.card.state)) == self.card.state


TestCrlMachine = CrlMachine.TestCase
TestCrlMachine.settings = settings(max_examples=40, stateful_step_count=12, deadline=None)
