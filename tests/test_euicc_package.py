"""ES10b.LoadEuiccPackage through the card's APDU interface, against an eIM role played by
this test: it signs eUICC packages and verifies the signed results with the eUICC
certificate the card hands out in GetCerts.

Every rejected package gets its exact answer (SGP.32 v1.2 §5.9) and leaves the card
byte-identical: it runs on a card whose file system cuts the power at the first write.

The helpers at the top (:class:`TestEim`, :func:`new_card`, :func:`send`, ...) are shared
with ``test_eim_card.py``, ``test_iot_functions.py`` and ``test_crash_safety.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from euicc_protocol import crypto, schema, tlv
from euicc_protocol.crypto import Curve
from euicc_protocol.testpki import generate_test_pki
from euicc_sim import euicc_package
from euicc_sim.card import Euicc
from euicc_sim.state import CardState, NotificationEvent, ProfileClass
from euicc_sim.storage import STATE_FILE, CrashingIO, DirectoryStorage
from ipa.errors import StatusWordError
from ipa.es10 import Es10Client
from ipa.transport import InProcessTransport

TS48 = Path(__file__).resolve().parent.parent / "profiles" / "ts48"
NOTIFY = "smdp.notify.example"
OTHER_EID = bytes.fromhex("89049032123451234512345678901235")


def _iccid(name: str) -> bytes:
    from euicc_protocol import saip

    return saip.read_package((TS48 / name).read_bytes()).iccid_ef


PKG_A, PKG_B, PKG_C = (
    "TS48V1-A-UNIQUE.der",
    "TS48V1-B-UNIQUE.der",
    "TS48V3-SAIP2-1-NOBERTLV-UNIQUE.der",
)
ICCID_A, ICCID_B, ICCID_C = _iccid(PKG_A), _iccid(PKG_B), _iccid(PKG_C)
UNKNOWN_ICCID = bytes.fromhex("98001032547698103214")


# --- the eIM role -----------------------------------------------------------------------------


def token_tlv(token: int | None, *, unsigned: bool = False) -> bytes:
    """``84 L token`` as an eIM appends it: DER INTEGER, or minimal unsigned (as some
    open-source eIMs send it)."""
    if token is None:
        return b""
    if unsigned:
        return tlv.encode_tlv(b"\x84", token.to_bytes((token.bit_length() + 7) // 8, "big"))
    return tlv.encode_tlv(b"\x84", token.to_bytes(token.bit_length() // 8 + 1, "big", signed=True))


def spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass
class TestEim:
    """An eIM: its key, and its copies of the counter and the association token."""

    __test__ = False  # not a pytest class

    eim_id: str = "eim.test.example"
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: crypto.generate_private_key(Curve.NIST_P256)
    )
    counter: int = 0
    token: int | None = None
    certificate: bytes | None = None  # eimCertificate instead of eimPublicKey when set

    def configuration(self, *, token: int | None = -1, **fields: Any) -> dict[str, Any]:
        """An EimConfigurationData value for this eIM (``token=-1``: let the eUICC pick)."""
        if self.certificate is not None:
            key_data = ("eimCertificate", schema.decode("Certificate", self.certificate))
        else:
            key_data = ("eimPublicKey", schema.decode("SubjectPublicKeyInfo", spki(self.key)))
        value: dict[str, Any] = {
            "eimId": self.eim_id,
            "eimFqdn": "127.0.0.1:8000",
            "eimIdType": 2,
            "counterValue": self.counter,
            "eimPublicKeyData": key_data,
        }
        if token is not None:
            value["associationToken"] = token
        value.update(fields)
        return value

    def package(
        self,
        eid: bytes,
        operations: list[tuple[str, Any]],
        *,
        kind: str = "psmoList",
        counter: int | None = None,
        transaction_id: bytes | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
        token: int | None | str = "own",
        unsigned_token: bool = False,
    ) -> bytes:
        """A signed EuiccPackageRequest; each call takes the next counter unless given."""
        if counter is None:
            self.counter += 1
            counter = self.counter
        value: dict[str, Any] = {
            "eimId": self.eim_id,
            "eidValue": eid,
            "counterValue": counter,
            "euiccPackage": (kind, operations),
        }
        if transaction_id is not None:
            value["eimTransactionId"] = transaction_id
        return self.sign(
            schema.encode("EuiccPackageSigned", value),
            key=key,
            token=token,
            unsigned_token=unsigned_token,
        )

    def sign(
        self,
        signed: bytes,
        *,
        key: ec.EllipticCurvePrivateKey | None = None,
        token: int | None | str = "own",
        unsigned_token: bool = False,
    ) -> bytes:
        """``BF51 { signed, 5F37 eimSignature over signed || 84 L token }``."""
        tok = self.token if token == "own" else token
        assert not isinstance(tok, str)
        signature = crypto.sign_raw(
            key or self.key, signed + token_tlv(tok, unsigned=unsigned_token)
        )
        return tlv.encode_tlv(b"\xbf\x51", signed + tlv.encode_tlv(b"\x5f\x37", signature))


def eim_with_certificate(eim_id: str = "eim.cert.example") -> TestEim:
    """An eIM that presents a self-signed eimCertificate (the test PKI's eIM)."""
    pki_eim = generate_test_pki(Curve.NIST_P256).eim
    return TestEim(eim_id=eim_id, key=pki_eim.key, certificate=pki_eim.cert_der)


# --- the card ---------------------------------------------------------------------------------


def preload_profiles(card: Euicc) -> Euicc:
    """A (test, enabled), B (test), C (operational, PPR1 + PPR2); all ask for notifications."""
    card.preload((TS48 / PKG_A).read_bytes(), notification_address=NOTIFY, enable=True)
    card.preload((TS48 / PKG_B).read_bytes(), notification_address=NOTIFY)
    card.preload(
        (TS48 / PKG_C).read_bytes(),
        notification_address=NOTIFY,
        profile_class=ProfileClass.OPERATIONAL,
        ppr1=True,
        ppr2=True,
    )
    return card


def new_card(path: Path | None = None) -> Euicc:
    """A card with :func:`preload_profiles` (in memory, or on disk without fsync: faster)."""
    return preload_profiles(Euicc.create(path, fsync=False))


def send(card: Euicc, request: bytes) -> bytes:
    """One raw ES10 request through the IPAd's ES10 client."""
    with Es10Client.open(InProcessTransport(card)) as client:
        return client.exchange(request)


def es10(card: Euicc, request_type: str, value: Any) -> Any:
    with Es10Client.open(InProcessTransport(card)) as client:
        return client.transmit_es10(request_type, value)


def add_initial_eim(card: Euicc, *eims: TestEim, token: int | None = -1) -> Any:
    """AddInitialEim for ``eims``; each eIM learns the token the card allocated."""
    value = {"eimConfigurationDataList": [e.configuration(token=token) for e in eims]}
    kind, answers = es10(card, "AddInitialEimRequest", value)
    if kind == "addInitialEimOk":
        for e, (alt, tok) in zip(eims, answers, strict=True):
            if alt == "associationToken":
                e.token = tok
            elif token is not None and token > 0:
                e.token = token
    return kind, answers


def euicc_public_key(card: Euicc, ci_pkid: bytes | None = None) -> ec.EllipticCurvePublicKey:
    """The eUICC key, as an eIM learns it: from the certificate GetCerts returns."""
    with Es10Client.open(InProcessTransport(card)) as client:
        der = client.get_certs(ci_pkid).euicc_certificate
    key = x509.load_der_x509_certificate(der).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def verify_result(
    card: Euicc,
    answer: bytes,
    token: int | None,
    *,
    ci_pkid: bytes | None = None,
    unsigned_token: bool = False,
) -> tuple[str, dict[str, Any]]:
    """Check an ``A0``/``A1`` answer's signature the way the eIM does; return it decoded."""
    outer = tlv.read_tlv(answer)
    assert answer[: outer.value_start][:2] == b"\xbf\x51" and outer.end == len(answer)
    signed = tlv.read_tlv(answer, outer.value_start)
    assert signed.tag in (b"\xa0", b"\xa1"), f"not a signed answer: {answer.hex()}"
    data = tlv.read_tlv(answer, signed.value_start)
    signature = tlv.read_tlv(answer, data.end)
    assert answer[data.end : data.end + 2] == b"\x5f\x37"
    crypto.verify_raw(
        euicc_public_key(card, ci_pkid),
        signature.value(answer),
        answer[signed.value_start : data.end] + token_tlv(token, unsigned=unsigned_token),
    )
    kind, value = schema.decode("EuiccPackageResult", answer)
    key = "euiccPackageResultDataSigned" if kind == "euiccPackageResultSigned" else None
    return kind, value[key or "euiccPackageErrorDataSigned"]


def results(card: Euicc, answer: bytes, eim: TestEim, **kwargs: Any) -> list[tuple[str, Any]]:
    """The euiccResult list of a signed result (its signature checked)."""
    kind, data = verify_result(card, answer, eim.token, **kwargs)
    assert kind == "euiccPackageResultSigned", data
    assert data["eimId"] == eim.eim_id
    return list(data["euiccResult"])


def enabled(card: Euicc) -> bytes | None:
    p = card.state.enabled_profile
    return None if p is None else p.iccid


@pytest.fixture
def card() -> Euicc:
    return new_card()


@pytest.fixture
def eim(card: Euicc) -> TestEim:
    """An eIM associated with ``card`` through AddInitialEim (token 1, counter 0)."""
    e = TestEim()
    add_initial_eim(card, e)
    assert e.token == 1
    return e


@dataclass
class Frozen:
    """A card on a file system that cuts the power at the first write (proves "no change")."""

    card: Euicc
    io: CrashingIO
    path: Path
    state_bytes: bytes

    @classmethod
    def of(cls, card: Euicc, path: Path) -> Frozen:
        card.close()  # one owner per card directory: the frozen card takes over
        io = CrashingIO(0)
        return cls(Euicc(DirectoryStorage(path, io=io)), io, path, (path / STATE_FILE).read_bytes())

    def assert_unchanged(self, before: CardState) -> None:
        assert (self.io.count, self.io.crashed) == (0, False)
        assert self.card.state is before
        assert (self.path / STATE_FILE).read_bytes() == self.state_bytes
        self.card.close()
        self.card = Euicc.open(self.path)
        assert self.card.state == before


@pytest.fixture
def disk_card(tmp_path: Path) -> tuple[Euicc, Path]:
    path = tmp_path / "card"
    return new_card(path), path


# --- accepted packages ------------------------------------------------------------------------


def test_enable_psmo_switches_profiles_and_the_result_verifies_with_the_euicc_certificate(
    card: Euicc, eim: TestEim
) -> None:
    request = eim.package(
        bytes.fromhex(card.eid), [("enable", {"iccid": ICCID_B})], transaction_id=b"\x01\x02"
    )
    answer = send(card, request)
    kind, data = verify_result(card, answer, token=1)
    assert kind == "euiccPackageResultSigned"
    assert data == {
        "eimId": eim.eim_id,
        "counterValue": 1,
        "eimTransactionId": b"\x01\x02",
        "seqNumber": 3,  # after the disable A (1) and enable B (2) notifications
        "euiccResult": [("enableResult", 0)],
    }
    assert enabled(card) == ICCID_B
    assert [(n.seq_number, n.event, n.iccid) for n in card.state.notifications] == [
        (1, NotificationEvent.DISABLE, ICCID_A),
        (2, NotificationEvent.ENABLE, ICCID_B),
    ]
    assert card.state.eim_config(eim.eim_id).counter_value == 1  # type: ignore[union-attr]
    with Es10Client.open(InProcessTransport(card)) as client:
        assert client.retrieve_euicc_package_results() == [answer]
        assert [n.seq_number for n in client.retrieve_notifications_list()] == [1, 2]


def test_signature_over_the_token_is_required_for_the_result_too(card: Euicc, eim: TestEim) -> None:
    answer = send(card, eim.package(bytes.fromhex(card.eid), [("getRAT", {})]))
    with pytest.raises(crypto.InvalidSignature):
        verify_result(card, answer, token=None)  # the card signed data || 84 01 01
    with pytest.raises(crypto.InvalidSignature):
        verify_result(card, answer, token=2)
    verify_result(card, answer, token=1)


def test_result_is_signed_with_the_chain_of_the_eims_euicc_ci(card: Euicc) -> None:
    brainpool = card.credentials.chains[1].ci_pkid
    e = TestEim()
    value = {"eimConfigurationDataList": [e.configuration(euiccCiPKId=brainpool)]}
    assert es10(card, "AddInitialEimRequest", value)[0] == "addInitialEimOk"
    e.token = 1
    answer = send(card, e.package(bytes.fromhex(card.eid), [("getRAT", {})]))
    verify_result(card, answer, 1, ci_pkid=brainpool)
    with pytest.raises(crypto.InvalidSignature):
        verify_result(card, answer, 1, ci_pkid=card.credentials.chains[0].ci_pkid)


def test_an_eim_with_a_certificate_is_verified_with_its_key(card: Euicc) -> None:
    e = eim_with_certificate()
    add_initial_eim(card, e)
    answer = send(card, e.package(bytes.fromhex(card.eid), [("enable", {"iccid": ICCID_B})]))
    assert results(card, answer, e) == [("enableResult", 0)]


def test_operations_run_in_order_on_the_state_the_previous_left(card: Euicc, eim: TestEim) -> None:
    ops = [
        ("disable", {"iccid": ICCID_A}),
        ("enable", {"iccid": ICCID_B}),
        ("delete", {"iccid": ICCID_A}),
        ("listProfileInfo", {"tagList": b"\x5a\x9f\x70"}),
    ]
    answer = send(card, eim.package(bytes.fromhex(card.eid), ops))
    listed = [
        {"iccid": ICCID_B, "profileState": 1, "fallbackAttribute": False},
        {"iccid": ICCID_C, "profileState": 0, "fallbackAttribute": False},
    ]
    assert results(card, answer, eim) == [
        ("disableResult", 0),
        ("enableResult", 0),
        ("deleteResult", 0),
        ("listProfileInfoResult", ("profileInfoListOk", listed)),
    ]
    events = [(n.event, n.iccid) for n in card.state.notifications]
    assert events == [
        (NotificationEvent.DISABLE, ICCID_A),
        (NotificationEvent.ENABLE, ICCID_B),
        (NotificationEvent.DELETE, ICCID_A),
    ]


def test_a_failed_psmo_answers_its_code_and_the_others_still_run(card: Euicc, eim: TestEim) -> None:
    ops = [
        ("enable", {"iccid": UNKNOWN_ICCID}),  # iccidOrAidNotFound
        ("enable", {"iccid": ICCID_A}),  # profileNotInDisabledState
        ("delete", {"iccid": ICCID_A}),  # profileNotInDisabledState (enabled)
        ("delete", {"iccid": ICCID_C}),  # disallowedByPolicy: PPR2
        ("disable", {"iccid": ICCID_B}),  # profileNotInEnabledState
        ("enable", {"iccid": ICCID_C}),  # ok: A is a test profile, no PPR
        ("disable", {"iccid": ICCID_C}),  # disallowedByPolicy: PPR1
        ("enable", {"iccid": ICCID_B}),  # disallowedByPolicy: would disable C
    ]
    answer = send(card, eim.package(bytes.fromhex(card.eid), ops))
    assert [code for _, code in results(card, answer, eim)] == [1, 2, 2, 3, 2, 0, 3, 3]
    assert enabled(card) == ICCID_C


def test_the_counter_is_stored_even_when_every_operation_failed(card: Euicc, eim: TestEim) -> None:
    request = eim.package(bytes.fromhex(card.eid), [("enable", {"iccid": UNKNOWN_ICCID})])
    assert results(card, send(card, request), eim) == [("enableResult", 1)]
    kind, data = verify_result(card, send(card, request), 1)
    assert (kind, data["euiccPackageErrorCode"]) == ("euiccPackageErrorSigned", 4)


def test_get_rat_set_default_dp_address_and_configure_immediate_enable(
    card: Euicc, eim: TestEim
) -> None:
    ops = [
        ("getRAT", {}),
        ("setDefaultDpAddress", {"defaultDpAddress": "smdp.iot.example"}),
        (
            "configureImmediateEnable",
            {"immediateEnableFlag": None, "defaultSmdpOid": "2.999.10"},
        ),
    ]
    answer = send(card, eim.package(bytes.fromhex(card.eid), ops))
    rat = es10(card, "GetRatRequest", {})["rat"]
    assert results(card, answer, eim) == [
        ("getRATResult", rat),
        ("setDefaultDpAddressResult", {"setDefaultDpAddressResult": 0}),
        ("configureImmediateEnableResult", 0),
    ]
    addresses = es10(card, "EuiccConfiguredAddressesRequest", {})
    assert addresses["defaultDpAddress"] == "smdp.iot.example"
    config = card.state.immediate_enable
    assert config is not None and (config.enabled, config.smdp_oid) == (True, "2.999.10")
    clear = eim.package(
        bytes.fromhex(card.eid), [("setDefaultDpAddress", {"defaultDpAddress": ""})]
    )
    results(card, send(card, clear), eim)
    assert card.state.default_dp_address is None


def test_an_unknown_operation_terminates_the_package(card: Euicc, eim: TestEim) -> None:
    value = {
        "eimId": eim.eim_id,
        "eidValue": bytes.fromhex(card.eid),
        "counterValue": 1,
        "euiccPackage": ("psmoList", [("getRAT", {}), ("getRAT", {}), ("getRAT", {})]),
    }
    signed = schema.encode("EuiccPackageSigned", value)
    # the second operation becomes [12] (AC), a PSMO this card does not know
    damaged = signed.replace(b"\xa6\x00\xa6\x00\xa6\x00", b"\xa6\x00\xac\x00\xa6\x00")
    answer = send(card, eim.sign(damaged))
    rat = es10(card, "GetRatRequest", {})["rat"]
    assert results(card, answer, eim) == [("getRATResult", rat), ("processingTerminated", 2)]


def test_eim_that_has_no_token_signs_without_the_token_tlv(card: Euicc) -> None:
    e = TestEim()
    kind, answers = add_initial_eim(card, e, token=None)
    assert (kind, answers) == ("addInitialEimOk", [("addOk", None)])
    assert e.token is None
    answer = send(card, e.package(bytes.fromhex(card.eid), [("getRAT", {})]))
    verify_result(card, answer, None)


@pytest.mark.parametrize("unsigned", [False, True], ids=["der-token", "unsigned-token"])
def test_tokens_from_128_on_verify_in_either_form_and_results_use_the_same_form(
    card: Euicc, unsigned: bool
) -> None:
    e = TestEim()
    add_initial_eim(card, e, token=200)  # chosen by the eIM: 84 02 00 C8 or 84 01 C8
    assert card.state.eim_config(e.eim_id).association_token == 200  # type: ignore[union-attr]
    request = e.package(bytes.fromhex(card.eid), [("getRAT", {})], unsigned_token=unsigned)
    answer = send(card, request)
    verify_result(card, answer, 200, unsigned_token=unsigned)
    with pytest.raises(crypto.InvalidSignature):
        verify_result(card, answer, 200, unsigned_token=not unsigned)


def test_results_are_removed_by_their_seq_number_and_found_by_it(card: Euicc, eim: TestEim) -> None:
    first = send(card, eim.package(bytes.fromhex(card.eid), [("getRAT", {})]))
    second = send(card, eim.package(bytes.fromhex(card.eid), [("enable", {"iccid": ICCID_B})]))
    assert [r.seq_number for r in card.state.package_results] == [1, 4]
    by_seq = schema.encode(
        "SGP32-RetrieveNotificationsListRequest", {"searchCriteria": ("seqNumber", 4)}
    )
    assert send(card, by_seq) == tlv.encode_tlv(b"\xbf\x2b", tlv.encode_tlv(b"\xa2", second))
    with Es10Client.open(InProcessTransport(card)) as client:
        client.remove_notification_from_list(1)
        assert client.retrieve_euicc_package_results() == [second]
        assert [n.seq_number for n in client.retrieve_notifications_list()] == [2, 3]
        client.remove_notification_from_list(3)  # a notification: the result stays
        assert client.retrieve_euicc_package_results() == [second]
    again = es10(card, "NotificationSentRequest", {"seqNumber": 1})
    assert again == {"deleteNotificationStatus": 1}
    assert first not in [r.encoded for r in card.state.package_results]


def test_results_configs_and_counters_survive_a_power_cycle(tmp_path: Path) -> None:
    card = new_card(tmp_path / "card")
    e = TestEim()
    add_initial_eim(card, e)
    answer = send(card, e.package(bytes.fromhex(card.eid), [("enable", {"iccid": ICCID_B})]))
    card.close()
    reopened = Euicc.open(tmp_path / "card")
    assert reopened.state == card.state
    with Es10Client.open(InProcessTransport(reopened)) as client:
        assert client.retrieve_euicc_package_results() == [answer]
    replay = e.package(bytes.fromhex(card.eid), [("getRAT", {})], counter=1)
    assert verify_result(reopened, send(reopened, replay), 1)[1]["euiccPackageErrorCode"] == 4


# --- rejected packages: exact answer, nothing changed -----------------------------------------


def _reject(disk_card: tuple[Euicc, Path], request: bytes) -> tuple[Frozen, bytes]:
    card, path = disk_card
    frozen = Frozen.of(card, path)
    before = frozen.card.state
    answer = send(frozen.card, request)
    frozen.assert_unchanged(before)
    return frozen, answer


def _associated(disk_card: tuple[Euicc, Path]) -> TestEim:
    e = TestEim()
    add_initial_eim(disk_card[0], e)
    return e


def _signed_error(card: Euicc, answer: bytes, token: int | None = 1) -> tuple[int, dict]:
    kind, data = verify_result(card, answer, token)
    assert kind == "euiccPackageErrorSigned"
    return data["euiccPackageErrorCode"], data


def test_replayed_package_is_replay_error(disk_card: tuple[Euicc, Path]) -> None:
    card, _ = disk_card
    e = _associated(disk_card)
    request = e.package(
        bytes.fromhex(card.eid), [("enable", {"iccid": ICCID_B})], transaction_id=b"\x07"
    )
    results(card, send(card, request), e)
    frozen, answer = _reject(disk_card, request)
    code, data = _signed_error(frozen.card, answer)
    assert (code, data["counterValue"], data["eimTransactionId"]) == (4, 1, b"\x07")


@pytest.mark.parametrize("counter", [0, -5, 3])
def test_counter_not_above_the_stored_one_is_replay_error(
    disk_card: tuple[Euicc, Path], counter: int
) -> None:
    card, _ = disk_card
    e = _associated(disk_card)
    results(card, send(card, e.package(bytes.fromhex(card.eid), [("getRAT", {})], counter=3)), e)
    request = e.package(bytes.fromhex(card.eid), [("getRAT", {})], counter=counter)
    frozen, answer = _reject(disk_card, request)
    assert _signed_error(frozen.card, answer)[0] == 4


@pytest.mark.parametrize("counter", [2**31, 2**40])
def test_counter_above_the_maximum_is_counter_value_out_of_range(
    disk_card: tuple[Euicc, Path], counter: int
) -> None:
    card, _ = disk_card
    e = _associated(disk_card)
    request = e.package(bytes.fromhex(card.eid), [("getRAT", {})], counter=counter)
    frozen, answer = _reject(disk_card, request)
    code, data = _signed_error(frozen.card, answer)
    assert (code, data["counterValue"]) == (6, counter)
    card = frozen.card  # the card, powered up again
    top = e.package(bytes.fromhex(card.eid), [("getRAT", {})], counter=euicc_package.MAX_COUNTER)
    results(card, send(card, top), e)


def test_package_for_another_eid_is_invalid_eid(disk_card: tuple[Euicc, Path]) -> None:
    e = _associated(disk_card)
    frozen, answer = _reject(disk_card, e.package(OTHER_EID, [("enable", {"iccid": ICCID_B})]))
    assert _signed_error(frozen.card, answer)[0] == 3


def test_too_many_operations_is_size_overflow(disk_card: tuple[Euicc, Path]) -> None:
    card, _ = disk_card
    e = _associated(disk_card)
    ops: list[tuple[str, Any]] = [("getRAT", {})] * (euicc_package.MAX_OPERATIONS + 1)
    frozen, answer = _reject(disk_card, e.package(bytes.fromhex(card.eid), ops))
    assert _signed_error(frozen.card, answer)[0] == 15


def _unsigned(answer: bytes) -> dict[str, Any]:
    kind, value = schema.decode("EuiccPackageResult", answer)
    assert kind == "euiccPackageErrorUnsigned", answer.hex()
    return dict(value)


def test_forged_signature_is_an_unsigned_error(disk_card: tuple[Euicc, Path]) -> None:
    card, _ = disk_card
    e = _associated(disk_card)
    forger = crypto.generate_private_key(Curve.NIST_P256)
    request = e.package(
        bytes.fromhex(card.eid),
        [("enable", {"iccid": ICCID_B})],
        key=forger,
        transaction_id=b"\x09",
    )
    _, answer = _reject(disk_card, request)
    assert _unsigned(answer) == {
        "eimId": e.eim_id,
        "eimTransactionId": b"\x09",
        "associationToken": 1,
    }


def test_a_package_changed_after_signing_is_an_unsigned_error(
    disk_card: tuple[Euicc, Path],
) -> None:
    card, _ = disk_card
    e = _associated(disk_card)
    request = e.package(bytes.fromhex(card.eid), [("enable", {"iccid": ICCID_B})])
    tampered = request.replace(ICCID_B, ICCID_C)
    _, answer = _reject(disk_card, tampered)
    assert _unsigned(answer) == {"eimId": e.eim_id, "associationToken": 1}


def test_a_non_minimal_length_is_refused_before_any_signature_check(
    disk_card: tuple[Euicc, Path],
) -> None:
    """BER with a long-form length is not DER: 6A80, whatever was signed."""
    card, path = disk_card
    e = _associated(disk_card)
    der = schema.encode(
        "EuiccPackageSigned",
        {
            "eimId": e.eim_id,
            "eidValue": bytes.fromhex(card.eid),
            "counterValue": 1,
            "euiccPackage": ("psmoList", [("getRAT", {})]),
        },
    )
    ber = b"\x30\x81" + der[1:]  # the same value with a non-minimal length
    with pytest.raises(schema.StrictDecodeError):
        schema.decode("EuiccPackageSigned", ber)
    frozen = Frozen.of(card, path)
    before = frozen.card.state
    for request in (e.sign(ber), tlv.encode_tlv(b"\xbf\x51", ber + e.sign(der)[-67:])):
        with pytest.raises(StatusWordError) as excinfo:
            send(frozen.card, request)
        assert excinfo.value.sw == 0x6A80
    frozen.assert_unchanged(before)
    card = frozen.card  # the card, powered up again
    results(card, send(card, e.sign(der)), e)  # the DER form, signed as sent: accepted


def test_unknown_eim_is_an_unsigned_error_without_token(disk_card: tuple[Euicc, Path]) -> None:
    card, _ = disk_card
    _associated(disk_card)
    stranger = TestEim(eim_id="stranger.example", token=1)
    _, answer = _reject(disk_card, stranger.package(bytes.fromhex(card.eid), [("getRAT", {})]))
    assert _unsigned(answer) == {"eimId": "stranger.example"}


def test_a_card_without_eim_answers_every_package_unsigned(
    disk_card: tuple[Euicc, Path],
) -> None:
    card, _ = disk_card
    e = TestEim(token=1)
    _, answer = _reject(disk_card, e.package(bytes.fromhex(card.eid), [("getRAT", {})]))
    assert _unsigned(answer) == {"eimId": e.eim_id}


def test_stale_token_after_update_eim_is_an_unsigned_error(
    disk_card: tuple[Euicc, Path],
) -> None:
    card, _ = disk_card
    e = _associated(disk_card)
    old = e.package(bytes.fromhex(card.eid), [("enable", {"iccid": ICCID_B})], counter=10)
    update = e.package(
        bytes.fromhex(card.eid),
        [("updateEim", {"eimId": e.eim_id, "associationToken": 5})],
        kind="ecoList",
    )
    assert results(card, send(card, update), e) == [("updateEimResult", 0)]
    frozen, answer = _reject(disk_card, old)  # fresh counter, but signed over the old token
    assert _unsigned(answer) == {"eimId": e.eim_id, "associationToken": 5}
    card = frozen.card  # the card, powered up again
    e.token = 5
    fresh = e.package(bytes.fromhex(card.eid), [("enable", {"iccid": ICCID_B})], counter=10)
    assert results(card, send(card, fresh), e) == [("enableResult", 0)]


def test_stale_token_after_a_new_association_is_an_unsigned_error(
    disk_card: tuple[Euicc, Path],
) -> None:
    card, _ = disk_card
    e = _associated(disk_card)
    old = e.package(bytes.fromhex(card.eid), [("enable", {"iccid": ICCID_B})], counter=50)
    delete = e.package(
        bytes.fromhex(card.eid), [("deleteEim", {"eimId": e.eim_id})], kind="ecoList"
    )
    assert results(card, send(card, delete), e) == [("deleteEimResult", 2)]  # lastEimDeleted
    e.counter = 0
    add_initial_eim(card, e)  # associated again: a fresh token
    assert e.token == 2
    _, answer = _reject(disk_card, old)
    assert _unsigned(answer) == {"eimId": e.eim_id, "associationToken": 2}


@pytest.mark.parametrize(
    "request_hex",
    [
        "BF5100",  # no content
        "BF51033001FF",  # damaged euiccPackageSigned
    ],
)
def test_an_undecodable_package_is_6a80(disk_card: tuple[Euicc, Path], request_hex: str) -> None:
    card, path = disk_card
    frozen = Frozen.of(card, path)
    before = frozen.card.state
    with pytest.raises(StatusWordError) as excinfo:
        send(frozen.card, bytes.fromhex(request_hex))
    assert excinfo.value.sw == 0x6A80
    frozen.assert_unchanged(before)


def test_a_rejected_package_leaves_profiles_notifications_configs_and_counters(
    card: Euicc, eim: TestEim
) -> None:
    """The same property on an in-memory card, compared field by field."""
    results(card, send(card, eim.package(bytes.fromhex(card.eid), [("getRAT", {})])), eim)
    before = card.state
    bad = [
        eim.package(bytes.fromhex(card.eid), [("delete", {"iccid": ICCID_B})], counter=1),
        eim.package(OTHER_EID, [("delete", {"iccid": ICCID_B})], counter=9),
        eim.package(
            bytes.fromhex(card.eid),
            [("delete", {"iccid": ICCID_B})],
            counter=9,
            key=crypto.generate_private_key(Curve.NIST_P256),
        ),
        eim.package(bytes.fromhex(card.eid), [("delete", {"iccid": ICCID_B})], counter=9, token=7),
    ]
    for request in bad:
        send(card, request)
        assert card.state is before
    assert (card.state.profiles, card.state.notifications) == (
        before.profiles,
        before.notifications,
    )
    assert card.state.eim_configs == before.eim_configs
    assert card.state.package_results == before.package_results


# --- eCOs -------------------------------------------------------------------------------------


def test_add_eim_then_the_second_eim_manages_the_card(card: Euicc, eim: TestEim) -> None:
    second = TestEim(eim_id="second.example")
    add = eim.package(bytes.fromhex(card.eid), [("addEim", second.configuration())], kind="ecoList")
    assert results(card, send(card, add), eim) == [("addEimResult", ("associationToken", 2))]
    second.token = 2
    answer = send(card, second.package(bytes.fromhex(card.eid), [("enable", {"iccid": ICCID_B})]))
    assert results(card, answer, second) == [("enableResult", 0)]
    assert enabled(card) == ICCID_B
    listing = eim.package(bytes.fromhex(card.eid), [("listEim", {})], kind="ecoList")
    assert results(card, send(card, listing), eim) == [
        (
            "listEimResult",
            (
                "eimIdList",
                [
                    {"eimId": eim.eim_id, "eimIdType": 2},
                    {"eimId": second.eim_id, "eimIdType": 2},
                ],
            ),
        )
    ]


def test_eco_results(card: Euicc, eim: TestEim) -> None:
    unknown_ci = bytes(20)
    third = TestEim(eim_id="third.example")
    ops = [
        ("addEim", eim.configuration()),  # the sender itself: associatedEimAlreadyExists
        ("addEim", {"eimId": "no-key.example"}),  # commandError
        ("addEim", third.configuration(counterValue=-1)),  # counterValueOutOfRange
        ("addEim", third.configuration(token=0)),  # invalidAssociationToken
        ("addEim", third.configuration(euiccCiPKId=unknown_ci)),  # ciPKUnknown
        ("addEim", third.configuration(token=None)),  # ok, no token
        ("updateEim", {"eimId": "nobody.example"}),  # eimNotFound
        ("updateEim", {"eimId": third.eim_id, "euiccCiPKId": unknown_ci}),  # ciPKUnknown
        ("updateEim", {"eimId": third.eim_id, "counterValue": 2**31}),  # out of range
        ("updateEim", {"eimId": third.eim_id, "associationToken": -1}),  # commandError
        ("updateEim", {"eimId": third.eim_id, "eimFqdn": "new.example:443"}),  # ok
        ("deleteEim", {"eimId": "nobody.example"}),  # eimNotFound
        ("deleteEim", {"eimId": third.eim_id}),  # ok
    ]
    answer = send(card, eim.package(bytes.fromhex(card.eid), ops, kind="ecoList"))
    assert results(card, answer, eim) == [
        ("addEimResult", ("addEimResultCode", 2)),
        ("addEimResult", ("addEimResultCode", 7)),
        ("addEimResult", ("addEimResultCode", 6)),
        ("addEimResult", ("addEimResultCode", 5)),
        ("addEimResult", ("addEimResultCode", 3)),
        ("addEimResult", ("addEimResultCode", 0)),
        ("updateEimResult", 1),
        ("updateEimResult", 3),
        ("updateEimResult", 6),
        ("updateEimResult", 7),
        ("updateEimResult", 0),
        ("deleteEimResult", 1),
        ("deleteEimResult", 0),
    ]
    assert [c.eim_id for c in card.state.eim_configs] == [eim.eim_id]


def test_update_eim_keeps_the_fields_it_does_not_name(card: Euicc, eim: TestEim) -> None:
    before = card.state.eim_config(eim.eim_id)
    new_key = crypto.generate_private_key(Curve.NIST_P256)
    update = {
        "eimId": eim.eim_id,
        "eimFqdn": "moved.example:8443",
        "eimPublicKeyData": ("eimPublicKey", schema.decode("SubjectPublicKeyInfo", spki(new_key))),
    }
    answer = send(
        card, eim.package(bytes.fromhex(card.eid), [("updateEim", update)], kind="ecoList")
    )
    assert results(card, answer, eim) == [("updateEimResult", 0)]  # signed for the old binding
    after = card.state.eim_config(eim.eim_id)
    assert before is not None and after is not None
    assert after == replace(
        before, eim_fqdn="moved.example:8443", public_key=spki(new_key), counter_value=1
    )
    eim.key = new_key
    assert results(card, send(card, eim.package(bytes.fromhex(card.eid), [("getRAT", {})])), eim)


def test_the_sender_may_reset_its_own_counter(card: Euicc, eim: TestEim) -> None:
    update = [("updateEim", {"eimId": eim.eim_id, "counterValue": 100})]
    results(card, send(card, eim.package(bytes.fromhex(card.eid), update, kind="ecoList")), eim)
    assert card.state.eim_config(eim.eim_id).counter_value == 100  # type: ignore[union-attr]
    stale = eim.package(bytes.fromhex(card.eid), [("getRAT", {})], counter=50)
    assert _signed_error(card, send(card, stale))[0] == 4
    eim.counter = 100
    assert results(card, send(card, eim.package(bytes.fromhex(card.eid), [("getRAT", {})])), eim)


def test_delete_of_one_of_two_eims_is_ok_and_of_the_last_is_last_eim_deleted(
    card: Euicc, eim: TestEim
) -> None:
    second = TestEim(eim_id="second.example")
    add = [("addEim", second.configuration())]
    results(card, send(card, eim.package(bytes.fromhex(card.eid), add, kind="ecoList")), eim)
    second.token = 2
    delete_first = [("deleteEim", {"eimId": eim.eim_id})]
    answer = send(card, second.package(bytes.fromhex(card.eid), delete_first, kind="ecoList"))
    assert results(card, answer, second) == [("deleteEimResult", 0)]
    again = eim.package(bytes.fromhex(card.eid), [("getRAT", {})])
    assert _unsigned(send(card, again)) == {"eimId": eim.eim_id}
    delete_self = [("deleteEim", {"eimId": second.eim_id})]
    answer = send(card, second.package(bytes.fromhex(card.eid), delete_self, kind="ecoList"))
    assert results(card, answer, second) == [("deleteEimResult", 2)]
    assert card.state.eim_configs == ()
    assert es10(card, "GetEimConfigurationDataRequest", {}) == {"eimConfigurationDataList": []}
