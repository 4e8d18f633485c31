"""ipa.pull (and ipa.device, ipa.es10_iot, ipa.ipa_data, ipa.indirect): the SGP.32 pull flow.

Three layers:

* the flow against an emulated card and :class:`FakeEim`, an ESipa server in this file
  (httpx.MockTransport, both bindings) whose packages are signed here; time, sleeping and
  randomness are injected, so back-off and restarts run without waiting;
* the card's answers to bad packages (replay, forged signature, other EID, unknown eIM, stale
  token) relayed to the eIM exactly, the card unchanged;
* end to end with the reference eIM (``euicc_servers.eim``) and SM-DP+
  (``euicc_servers.smdpp``) over real
  HTTPS on 127.0.0.1 (skipped while those are not available).
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from euicc_protocol import crypto, saip, schema, tlv
from euicc_protocol.crypto import Curve
from euicc_sim import profiles
from euicc_sim.card import Euicc
from ipa import es10_iot
from ipa.device import Ipad
from ipa.es10 import Es10Client
from ipa.esipa import Binding, EsipaConfig, StateChangeCause
from ipa.ipa_data import ipa_capabilities
from ipa.pull import (
    STATE_FILE,
    TRANSITIONS,
    Backoff,
    PollOutcome,
    PullConfig,
    PullFlow,
    State,
)
from ipa.transport import InProcessTransport

TS48 = Path(__file__).resolve().parent.parent / "profiles" / "ts48"
PKG_A, PKG_B = "TS48V1-A-UNIQUE.der", "TS48V1-B-UNIQUE.der"
NOTIFY = "smdp.notify.example"
OTHER_EID = bytes.fromhex("89049032123451234512345678901235")
H = bytes.fromhex


def _iccid_ef(name: str) -> bytes:
    return saip.read_package((TS48 / name).read_bytes()).iccid_ef


def _iccid(name: str) -> str:
    return saip.read_package((TS48 / name).read_bytes()).iccid


ICCID_A, ICCID_B = _iccid_ef(PKG_A), _iccid_ef(PKG_B)


# -- the eIM's signing side -----------------------------------------------------------------------


def token_tlv(token: int | None) -> bytes:
    if token is None:
        return b""
    return tlv.encode_tlv(b"\x84", token.to_bytes(token.bit_length() // 8 + 1, "big", signed=True))


@dataclass
class Signer:
    """An eIM identity: key, counter and association token, as the eIM keeps them."""

    eim_id: str = "eim1.test"
    fqdn: str = "eim1.test"
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: crypto.generate_private_key(Curve.NIST_P256)
    )
    counter: int = 0
    token: int | None = None
    indirect: bool = False

    def spki(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def configuration(self, token: int = -1) -> dict[str, Any]:
        return es10_iot.eim_configuration_value(
            self.eim_id,
            eim_fqdn=self.fqdn,
            eim_public_key=self.spki(),
            counter_value=self.counter,
            association_token=token,
            indirect_profile_download=self.indirect,
        )

    def package(
        self,
        eid: bytes,
        operations: list[tuple[str, Any]],
        *,
        kind: str = "psmoList",
        counter: int | None = None,
        tid: bytes | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
        token: int | None | str = "own",
        eim_id: str | None = None,
    ) -> bytes:
        if counter is None:
            self.counter += 1
            counter = self.counter
        value: dict[str, Any] = {
            "eimId": eim_id or self.eim_id,
            "eidValue": eid,
            "counterValue": counter,
            "euiccPackage": (kind, operations),
        }
        if tid is not None:
            value["eimTransactionId"] = tid
        signed = schema.encode("EuiccPackageSigned", value)
        tok = self.token if token == "own" else token
        assert not isinstance(tok, str)
        signature = crypto.sign_raw(key or self.key, signed + token_tlv(tok))
        return tlv.encode_tlv(b"\xbf\x51", signed + tlv.encode_tlv(b"\x5f\x37", signature))


# -- the fake eIM ---------------------------------------------------------------------------------


@dataclass
class FakeEim:
    """ESipa (ASN.1 at /gsma/rsp2/asn1, JSON at /gsma/rsp2/esipa/<function>) with a package
    queue; records every message; ``down`` fails the next N requests of the listed kinds."""

    queue: list[bytes] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    attempts: list[tuple[str, bytes]] = field(default_factory=list)
    results: list[bytes] = field(default_factory=list)  # ProvideEimPackageResult BF50
    notifications: list[bytes] = field(default_factory=list)  # HandleNotification BF3D
    polls: list[bytes] = field(default_factory=list)  # GetEimPackageRequest BF4F
    down: int = 0
    down_kinds: frozenset[str] = frozenset({"poll", "provide", "notify"})
    ack_notifications: bool = True
    refuse_results: bool = False  # answer provideEimPackageResultError undefinedError

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/gsma/rsp2/asn1":
            message = request.content
        else:
            message = self._from_json(
                request.url.path.rsplit("/", 1)[1], json.loads(request.content)
            )
        kind = {b"\xbf\x4f": "poll", b"\xbf\x50": "provide", b"\xbf\x3d": "notify"}[message[:2]]
        self.attempts.append((kind, message))
        if self.down and kind in self.down_kinds:
            self.down -= 1
            raise httpx.ConnectError("eIM down", request=request)
        self.log.append(kind)
        answer = getattr(self, kind)(message)
        if request.url.path == "/gsma/rsp2/asn1":
            return httpx.Response(200 if answer else 204, content=answer)
        return self._to_json(kind, answer)

    def poll(self, message: bytes) -> bytes:
        self.polls.append(message)
        if not self.queue:
            return H("BF4F03020101")
        return tlv.encode_tlv(b"\xbf\x4f", self.queue.pop(0))

    def provide(self, message: bytes) -> bytes:
        self.results.append(message)
        if self.refuse_results:
            return H("BF500302017F")
        acks: list[int] = []
        _, value = schema.decode("ProvideEimPackageResult", message)["eimPackageResult"]
        if self.ack_notifications and isinstance(value, dict) and "notificationList" in value:
            acks = [_seq(n) for n in value["notificationList"]]
        if not acks:
            return H("BF50023000")
        return schema.encode("ProvideEimPackageResultResponse", ("eimAcknowledgements", acks))

    def notify(self, message: bytes) -> bytes:
        self.notifications.append(message)
        return b""

    # JSON binding: the same messages, carried as the §5.9 fields.
    @staticmethod
    def _from_json(function: str, body: dict[str, Any]) -> bytes:
        if function == "getEimPackage":
            value: dict[str, Any] = {"eidValue": H(body["eidValue"])}
            if body.get("notifyStateChange"):
                value["notifyStateChange"] = None
            if "stateChangeCause" in body:
                value["stateChangeCause"] = body["stateChangeCause"]
            return schema.encode("GetEimPackageRequest", value)
        if function == "provideEimPackageResult":
            eid = tlv.encode_tlv(b"\x5a", H(body["eidValue"])) if "eidValue" in body else b""
            return tlv.encode_tlv(b"\xbf\x50", eid + base64.b64decode(body["eimPackageResult"]))
        if "pendingNotification" in body:
            inner = tlv.encode_tlv(b"\xa0", base64.b64decode(body["pendingNotification"]))
        else:
            inner = base64.b64decode(body["provideEimPackageResult"])
        return tlv.encode_tlv(b"\xbf\x3d", inner)

    @staticmethod
    def _to_json(kind: str, answer: bytes) -> httpx.Response:
        if kind == "notify":
            return httpx.Response(204)
        out: dict[str, Any] = {
            "header": {"functionExecutionStatus": {"status": "Executed-Success"}}
        }
        inner = tlv.read_tlv(answer)
        child = answer[inner.value_start : inner.value_end]
        if kind == "poll":
            names = {b"\xbf\x51": "euiccPackageRequest", b"\xbf\x52": "ipaEuiccDataRequest",
                     b"\xbf\x54": "profileDownloadTriggerRequest"}  # fmt: skip
            if child[:2] in names:
                out[names[child[:2]]] = base64.b64encode(child).decode()
            else:
                out["eimPackageError"] = child[-1]
        elif child[:2] == b"\xbf\x53":
            out["eimAcknowledgements"] = base64.b64encode(child).decode()
        return httpx.Response(200, json=out)

    def result(self, index: int = -1) -> tuple[str, Any]:
        """A received result, decoded: (EimPackageResult alternative, value)."""
        return schema.decode("ProvideEimPackageResult", self.results[index])["eimPackageResult"]

    def result_tlv(self, index: int = -1) -> bytes:
        """The EimPackageResult TLV of a received result, as sent."""
        message = self.results[index]
        outer = tlv.read_tlv(message)
        first = tlv.read_tlv(message, outer.value_start)
        start = first.end if first.tag == b"\x5a" else outer.value_start
        return message[start : outer.value_end]


def _seq(notification: tuple[str, Any]) -> int:
    kind, value = notification
    if kind == "profileInstallationResult":
        return int(value["profileInstallationResultData"]["notificationMetadata"]["seqNumber"])
    return int(value["tbsOtherNotification"]["seqNumber"])


# -- the device -----------------------------------------------------------------------------------


def new_card(*, eim: Signer | None = None, token: int = -1) -> Euicc:
    """A (test, enabled) and B (test), both asking for notifications; ``eim`` added."""
    card = Euicc.create(None)
    card.preload((TS48 / PKG_A).read_bytes(), notification_address=NOTIFY, enable=True)
    card.preload((TS48 / PKG_B).read_bytes(), notification_address=NOTIFY)
    if eim is not None:
        with Es10Client.open(InProcessTransport(card)) as client:
            (allocated,) = es10_iot.add_initial_eim(client, [eim.configuration(token)])
        eim.token = allocated if allocated is not None else token
    return card


@dataclass
class Device:
    """A pull flow over ``card`` talking to ``eim``; sleeps are recorded, not slept."""

    card: Euicc
    eim: FakeEim
    state_dir: Path | None = None
    binding: Binding = Binding.ASN1
    switch_answers: list[bool] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    switches: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.client = Es10Client.open(InProcessTransport(self.card))
        esipa = EsipaConfig(binding=self.binding, transport=self.eim.transport())
        config = PullConfig(
            eim_url=self.options.pop("eim_url", "http://eim.test"),
            esipa=self.options.pop("esipa", esipa),
            backoff=Backoff(interval=60, initial=1, factor=2, maximum=30, jitter=0.1),
            **self.options,
        )
        self.flow = PullFlow(
            self.client,
            config,
            state_dir=self.state_dir,
            on_profile_switch=self._switched,
            sleep=self._sleep,
            random=lambda: 0.5,
            clock=lambda: 1000.0,
        )

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def _switched(self) -> bool:
        self.switches += 1
        return self.switch_answers.pop(0) if self.switch_answers else True

    def poll(self) -> PollOutcome:
        return asyncio.run(self._poll())

    async def _poll(self) -> PollOutcome:
        try:
            return await self.flow.poll_once()
        finally:
            await self.flow.aclose()


def enabled(card: Euicc) -> bytes | None:
    p = card.state.enabled_profile
    return None if p is None else p.iccid


def euicc_key(card: Euicc) -> ec.EllipticCurvePublicKey:
    with Es10Client.open(InProcessTransport(card)) as client:
        der = client.get_certs().euicc_certificate
    key = x509.load_der_x509_certificate(der).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def verified(card: Euicc, epr: bytes, token: int | None) -> tuple[str, dict[str, Any]]:
    """An EPR's signature checked as the eIM checks it (signed TLV ‖ 84 token); decoded."""
    outer = tlv.read_tlv(epr)
    signed_alt = tlv.read_tlv(epr, outer.value_start)
    data = tlv.read_tlv(epr, signed_alt.value_start)
    signature = tlv.read_tlv(epr, data.end)
    crypto.verify_raw(
        euicc_key(card),
        signature.value(epr),
        epr[signed_alt.value_start : data.end] + token_tlv(token),
    )
    kind, value = schema.decode("EuiccPackageResult", epr)
    return kind, value


def pending_on_card(card: Euicc) -> tuple[list[int], list[bytes]]:
    with Es10Client.open(InProcessTransport(card)) as client:
        notes = [n.seq_number for n in client.retrieve_notifications_list()]
        return notes, client.retrieve_euicc_package_results()


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
def card(signer: Signer) -> Euicc:
    return new_card(eim=signer)


@pytest.fixture
def eid(card: Euicc) -> bytes:
    return H(card.eid)


# -- the state table and the back-off -------------------------------------------------------------


def test_every_state_has_transitions_into_known_states() -> None:
    assert set(TRANSITIONS) == set(State)
    for state, targets in TRANSITIONS.items():
        assert targets <= set(State), state
    assert [s.value for s in State] == [f"S{i}" for i in range(10)]


def test_backoff_interval_exponential_cap_and_jitter() -> None:
    b = Backoff(interval=60, initial=1, factor=2, maximum=30, jitter=0.1)
    mid = lambda: 0.5  # noqa: E731 - no jitter
    assert [b.delay(n, mid) for n in range(7)] == [60, 1, 2, 4, 8, 16, 30]
    assert b.delay(0, lambda: 0.0) == pytest.approx(54.0)
    assert b.delay(0, lambda: 1.0) == pytest.approx(66.0)
    assert b.delay(3, lambda: 0.0) == pytest.approx(3.6)


# -- the cycle ------------------------------------------------------------------------------------


def test_no_package_ends_the_cycle_idle_after_one_get_eim_package(card: Euicc) -> None:
    eim = FakeEim()
    outcome = Device(card, eim).poll()
    assert outcome.ok and outcome.state is State.IDLE
    assert (outcome.packages, outcome.notifications, outcome.next_delay) == ((), 0, 60)
    assert eim.log == ["poll"]
    assert eim.polls == [H("BF4F125A10") + H(card.eid)]


def test_unreachable_eim_backs_off_exponentially_then_recovers(card: Euicc) -> None:
    eim = FakeEim(down=3)
    device = Device(card, eim)
    delays = [device.poll() for _ in range(4)]
    assert [(o.ok, o.failures, o.next_delay) for o in delays] == [
        (False, 1, 1),
        (False, 2, 2),
        (False, 3, 4),
        (True, 0, 60),
    ]
    assert "getEimPackage" in (delays[0].error or "")


def test_enable_package_runs_on_the_card_and_the_signed_result_reaches_the_eim(
    card: Euicc, signer: Signer, eid: bytes
) -> None:
    eim = FakeEim(queue=[signer.package(eid, [("enable", {"iccid": ICCID_B})], tid=b"\x42")])
    device = Device(card, eim)
    outcome = device.poll()
    assert outcome.ok
    assert enabled(card) == ICCID_B
    assert eim.log == ["poll", "provide", "poll"]  # asks for the next package at once
    kind, value = eim.result()
    assert kind == "ePRAndNotifications"
    sequence = eim.result_tlv()
    outer = tlv.read_tlv(sequence)
    epr = sequence[outer.value_start : tlv.read_tlv(sequence, outer.value_start).end]
    signed_kind, data = verified(card, epr, signer.token)
    assert signed_kind == "euiccPackageResultSigned"
    result = data["euiccPackageResultDataSigned"]
    assert (result["eimId"], result["counterValue"], result["eimTransactionId"]) == (
        signer.eim_id,
        1,
        b"\x42",
    )
    assert result["euiccResult"] == [("enableResult", 0)]
    assert [_seq(n) for n in value["notificationList"]] == [1, 2]  # disable A, enable B
    # The EPR was removed after the eIM took it; the notifications once acknowledged.
    assert pending_on_card(card) == ([], [])
    assert device.switches == 1
    assert outcome.packages[0].acknowledged == (1, 2)
    assert schema.decode("ProvideEimPackageResult", eim.results[0])["eidValue"] == eid


def test_notifications_go_out_in_s1_and_are_removed_only_once_delivered(
    card: Euicc, signer: Signer, eid: bytes
) -> None:
    eim = FakeEim(
        queue=[signer.package(eid, [("enable", {"iccid": ICCID_B})])], ack_notifications=False
    )
    Device(card, eim).poll()
    assert pending_on_card(card) == ([1, 2], [])  # not acknowledged: kept
    eim.down, eim.down_kinds = 3, frozenset({"notify"})  # three tries, then the cycle ends
    failing = Device(card, eim)
    failed = failing.poll()
    assert not failed.ok and "handleNotification" in (failed.error or "")
    assert failing.sleeps == [1, 2]  # back-off between the tries
    assert [n.seq_number for n in failed.set_aside_notifications] == [1]
    assert pending_on_card(card) == ([1, 2], [])
    with Es10Client.open(InProcessTransport(card)) as client:
        raw = [n.raw for n in client.retrieve_notifications_list()]
    outcome = Device(card, eim).poll()
    assert outcome.ok and outcome.notifications == 2
    assert eim.notifications == [tlv.encode_tlv(H("BF3D"), tlv.encode_tlv(H("A0"), r)) for r in raw]
    assert pending_on_card(card) == ([], [])


def test_a_result_survives_a_restart_and_is_sent_again_before_polling(
    card: Euicc, signer: Signer, eid: bytes, tmp_path: Path
) -> None:
    eim = FakeEim(queue=[signer.package(eid, [("enable", {"iccid": ICCID_B})])])
    eim.down, eim.down_kinds = 3, frozenset({"provide"})
    first = Device(card, eim, state_dir=tmp_path)
    outcome = first.poll()
    assert not outcome.ok and outcome.packages[0].kept
    assert first.sleeps == [1, 2]  # two retries in the cycle, back-off between them
    attempted = [m for kind, m in eim.attempts if kind == "provide"]
    assert len(attempted) == 3 and len(set(attempted)) == 1
    saved = json.loads((tmp_path / STATE_FILE).read_text())
    assert saved["eid"] == card.eid and len(saved["pendingResults"]) == 1
    assert enabled(card) == ICCID_B and pending_on_card(card)[1]  # EPR still on the card

    eim.log.clear()
    restarted = Device(card, eim, state_dir=tmp_path)  # a new IPAd process, same card
    outcome = restarted.poll()
    assert outcome.ok
    assert eim.log == ["provide", "poll"]  # the pending result first
    assert eim.results == [attempted[0]]  # the very same bytes
    assert outcome.packages[0].kind is None and outcome.packages[0].delivered
    assert pending_on_card(card) == ([], [])
    assert json.loads((tmp_path / STATE_FILE).read_text())["pendingResults"] == []


def test_a_result_the_eim_refuses_is_set_aside_and_delivered_once_it_recovers(
    card: Euicc, signer: Signer, eid: bytes, tmp_path: Path
) -> None:
    eim = FakeEim(queue=[signer.package(eid, [("getRAT", {})])], refuse_results=True)
    device = Device(card, eim, state_dir=tmp_path)
    outcome = device.poll()
    (package,) = outcome.packages
    assert outcome.ok and package.refused and package.set_aside and package.kept
    assert device.sleeps == [1, 2] and eim.log == ["poll", "provide", "provide", "provide"]
    (saved,) = json.loads((tmp_path / STATE_FILE).read_text())["pendingResults"]
    assert saved["setAside"] and saved["attempts"] == 3
    (epr,) = pending_on_card(card)[1]  # the card keeps it too, until the eIM takes it
    eim.log.clear()
    assert Device(card, eim, state_dir=tmp_path).poll().ok
    assert eim.log == ["provide", "poll"]  # one try, then polling goes on
    eim.refuse_results = False
    eim.log.clear()
    assert Device(card, eim, state_dir=tmp_path).poll().ok
    assert eim.log == ["provide", "poll"]
    assert eim.result_tlv() == epr
    assert pending_on_card(card) == ([], [])
    assert json.loads((tmp_path / STATE_FILE).read_text())["pendingResults"] == []


def test_an_epr_stored_while_the_ipad_was_down_is_offered_in_s1(
    card: Euicc, signer: Signer, eid: bytes
) -> None:
    with Es10Client.open(InProcessTransport(card)) as client:
        epr = es10_iot.load_euicc_package(client, signer.package(eid, [("getRAT", {})]))
    assert epr.ok and epr.seq_number is not None
    eim = FakeEim()
    outcome = Device(card, eim).poll()
    assert outcome.ok and outcome.notifications == 1
    assert eim.log == ["notify", "poll"]
    (message,) = eim.notifications
    assert schema.decode("HandleNotificationEsipa", message)[0] == "provideEimPackageResult"
    assert message.endswith(epr.raw)
    assert pending_on_card(card) == ([], [])


def test_rollback_when_the_new_profile_cannot_reach_the_eim(
    card: Euicc, signer: Signer, eid: bytes
) -> None:
    package = signer.package(eid, [("enable", {"iccid": ICCID_B, "rollbackFlag": None})])
    eim = FakeEim(queue=[package])
    device = Device(card, eim, switch_answers=[False, True])  # no network on B, back on A
    outcome = device.poll()
    assert outcome.ok and outcome.packages[0].rolled_back
    assert enabled(card) == ICCID_A
    assert device.switches == 2
    _, value = eim.result()
    epr_data = value["euiccPackageResult"][1]["euiccPackageResultDataSigned"]
    assert epr_data["euiccResult"] == [("enableResult", 0), ("rollbackResult", 0)]
    assert epr_data["counterValue"] == 1
    assert pending_on_card(card)[1] == []


def test_rollback_after_the_report_attempts_fail(card: Euicc, signer: Signer, eid: bytes) -> None:
    package = signer.package(eid, [("enable", {"iccid": ICCID_B, "rollbackFlag": None})])
    eim = FakeEim(queue=[package], down=3, down_kinds=frozenset({"provide"}))
    outcome = Device(card, eim).poll()
    assert outcome.ok and outcome.packages[0].rolled_back
    assert enabled(card) == ICCID_A
    kind, value = eim.result()
    results = value["euiccPackageResult"][1]["euiccPackageResultDataSigned"]["euiccResult"]
    assert results[-1] == ("rollbackResult", 0)


def test_no_rollback_without_the_flag(card: Euicc, signer: Signer, eid: bytes) -> None:
    eim = FakeEim(queue=[signer.package(eid, [("enable", {"iccid": ICCID_B})])])
    device = Device(card, eim, switch_answers=[False])
    outcome = device.poll()
    assert not outcome.ok and outcome.packages[0].kept
    assert enabled(card) == ICCID_B
    assert eim.results == []


def test_ipa_euicc_data_request_is_answered_from_es10_calls(card: Euicc, signer: Signer) -> None:
    request = schema.encode(
        "IpaEuiccDataRequest",
        {"tagList": H("84A5A6BF2087A8A9"), "eimTransactionId": b"\x07"},
    )
    eim = FakeEim(queue=[request])
    assert Device(card, eim).poll().ok
    kind, (alternative, data) = eim.result()
    assert (kind, alternative) == ("ipaEuiccDataResponse", "ipaEuiccData")
    assert data["associationToken"] == signer.token
    assert data["eimTransactionId"] == b"\x07"
    assert schema.encode("IpaCapabilities", data["ipaCapabilities"]) == ipa_capabilities()
    with Es10Client.open(InProcessTransport(card)) as client:
        certs = client.get_certs()
        info1 = client.get_euicc_info1().raw
    assert schema.encode("Certificate", data["euiccCertificate"]) == certs.euicc_certificate
    assert schema.encode("Certificate", data["eumCertificate"]) == certs.eum_certificate
    assert schema.encode("EUICCInfo1", data["euiccInfo1"]) == info1
    assert data["deviceInfo"]["tac"] == H("35290611")
    assert set(data) == {
        "associationToken",
        "eumCertificate",
        "euiccCertificate",
        "euiccInfo1",
        "eimTransactionId",
        "ipaCapabilities",
        "deviceInfo",
    }


@pytest.mark.parametrize(
    ("tag_list", "ci", "expected"),
    [
        (H("BF2B"), None, H("BF5208A106800107020101")),  # a v1.0 tag: incorrectTagList
        (H("A5"), H("01"), H("BF5208A106800107020105")),  # euiccCiPKIdNotFound
    ],
)
def test_ipa_euicc_data_errors(
    card: Euicc, tag_list: bytes, ci: bytes | None, expected: bytes
) -> None:
    value: dict[str, Any] = {"tagList": tag_list, "eimTransactionId": b"\x07"}
    if ci is not None:
        value["euiccCiPKIdentifierToBeUsed"] = ci
    eim = FakeEim(queue=[schema.encode("IpaEuiccDataRequest", value)])
    assert Device(card, eim).poll().ok
    assert eim.result_tlv() == expected


def test_ipa_euicc_data_with_a_truncated_ci_key_id(card: Euicc) -> None:
    with Es10Client.open(InProcessTransport(card)) as client:
        ski = client.get_euicc_info1().euicc_ci_pkid_list_for_signing[0]
        expected = client.get_certs(ski).euicc_certificate
    value = {"tagList": H("A6"), "euiccCiPKIdentifierToBeUsed": ski[:4]}
    eim = FakeEim(queue=[schema.encode("IpaEuiccDataRequest", value)])
    Device(card, eim).poll()
    _, (_, data) = eim.result()
    assert schema.encode("Certificate", data["euiccCertificate"]) == expected


def test_undecodable_package_is_answered_invalid_package_format(card: Euicc) -> None:
    eim = FakeEim(queue=[H("BF5103800100")])
    before = card.state
    assert Device(card, eim).poll().ok
    assert eim.result_tlv() == H("A003020101")
    assert card.state == before


@pytest.mark.parametrize(
    "data",
    [
        ("activationCode", "not an activation code"),
        ("contactSmds", {}),
        ("contactDefaultSmdp", None),  # no default SM-DP+ address on this card
    ],
)
def test_unusable_download_trigger_reports_profile_download_error(
    card: Euicc, data: tuple[str, Any]
) -> None:
    trigger = schema.encode(
        "ProfileDownloadTriggerRequest", {"profileDownloadData": data, "eimTransactionId": b"\x09"}
    )
    eim = FakeEim(queue=[trigger])
    assert Device(card, eim).poll().ok
    assert eim.result_tlv() == H("BF5408 820109 3003 80017F")


def test_unprovisioned_card_waits_then_takes_the_initial_eim_file(tmp_path: Path) -> None:
    card = new_card()
    eim = FakeEim()
    outcome = Device(card, eim).poll()
    assert outcome.state is State.UNPROVISIONED and eim.attempts == []
    signer = Signer()
    initial = tmp_path / "initial-eim.der"
    initial.write_bytes(
        schema.encode(
            "AddInitialEimRequest", {"eimConfigurationDataList": [signer.configuration()]}
        )
    )
    outcome = Device(card, eim, options={"initial_eim": initial}).poll()
    assert outcome.ok and eim.log == ["poll"]
    with Es10Client.open(InProcessTransport(card)) as client:
        (config,) = es10_iot.get_eim_configuration_data(client)
    assert (config.eim_id, config.association_token) == (signer.eim_id, 1)


def test_state_change_is_reported_once(card: Euicc) -> None:
    eim = FakeEim()
    device = Device(card, eim)
    device.flow.notify_state_change(StateChangeCause.FALLBACK)
    device.poll()
    device.poll()
    assert eim.polls[0].endswith(H("8000810101"))
    assert eim.polls[1] == H("BF4F125A10") + H(card.eid)


def test_a_switch_made_while_the_ipad_was_not_looking_is_reported(
    card: Euicc, tmp_path: Path
) -> None:
    eim = FakeEim()
    Device(card, eim, state_dir=tmp_path).poll()
    # e.g. a factory tool, or the eUICC after a fallback: a switch the IPAd did not make
    t = profiles.enable(card.state, iccid=ICCID_B, actor=profiles.Actor.EIM)
    card.context.commit(t.state)
    Device(card, eim, state_dir=tmp_path).poll()
    assert eim.polls[-1].endswith(H("80008101") + bytes([StateChangeCause.UNDEFINED]))


def test_run_polls_until_stopped_waiting_the_delay_between_cycles(card: Euicc) -> None:
    eim = FakeEim()
    device = Device(card, eim)
    stop = asyncio.Event()

    async def sleep(seconds: float) -> None:
        device.sleeps.append(seconds)
        if len(device.sleeps) == 3:
            stop.set()

    device.flow._sleep = sleep  # the injected sleep drives the idle wait too
    asyncio.run(device.flow.run(stop))
    assert device.sleeps == [60, 60, 60]
    assert eim.log == ["poll"] * 3


def test_json_binding_cycle(card: Euicc, signer: Signer, eid: bytes) -> None:
    eim = FakeEim(queue=[signer.package(eid, [("disable", {"iccid": ICCID_A})])])
    outcome = Device(card, eim, binding=Binding.JSON).poll()
    assert outcome.ok
    assert enabled(card) is None
    kind, value = eim.result()
    assert kind == "ePRAndNotifications"
    assert pending_on_card(card) == ([], [])


def test_an_eco_moves_the_ipad_to_the_second_eim(card: Euicc, signer: Signer, eid: bytes) -> None:
    second = Signer(eim_id="eim2.test", fqdn="eim2.test", token=5)
    eim1 = FakeEim(
        queue=[
            signer.package(
                eid,
                [
                    ("addEim", second.configuration(token=5)),
                    ("deleteEim", {"eimId": signer.eim_id}),
                ],
                kind="ecoList",
            )
        ]
    )
    eim2 = FakeEim(queue=[second.package(eid, [("enable", {"iccid": ICCID_B})])])
    fakes = {"eim1.test": eim1, "eim2.test": eim2}

    def route(request: httpx.Request) -> httpx.Response:
        return fakes[request.url.host].handle(request)

    routed = EsipaConfig(scheme="http", transport=httpx.MockTransport(route))
    device = Device(card, eim1, options={"eim_url": None, "esipa": routed})
    outcome = device.poll()
    assert outcome.ok, outcome.error
    _, (_, value) = eim1.result()
    results = value["euiccPackageResultDataSigned"]["euiccResult"]
    assert results == [("addEimResult", ("addEimResultCode", 0)), ("deleteEimResult", 0)]
    assert eim2.log == ["poll", "provide", "poll"]
    assert enabled(card) == ICCID_B
    assert device.flow.eim is not None and device.flow.eim.eim_id == "eim2.test"


# -- the card's verdicts, relayed as they are -----------------------------------------------------


@pytest.mark.parametrize(
    "case", ["replay", "forged signature", "other EID", "unknown eIM", "stale token"]
)
def test_refused_packages_reach_the_eim_with_the_exact_error_and_change_nothing(
    card: Euicc, signer: Signer, eid: bytes, case: str
) -> None:
    enable_b = [("enable", {"iccid": ICCID_B})]
    if case == "replay":
        first = signer.package(eid, [("getRAT", {})])
        Device(card, FakeEim(queue=[first])).poll()
        package = signer.package(eid, enable_b, counter=1)
    elif case == "forged signature":
        package = signer.package(eid, enable_b, key=crypto.generate_private_key(Curve.NIST_P256))
    elif case == "other EID":
        package = signer.package(OTHER_EID, enable_b)
    elif case == "unknown eIM":
        package = signer.package(eid, enable_b, eim_id="nobody.test")
    else:
        package = signer.package(eid, enable_b, token=(signer.token or 0) + 1)
    before = card.state
    eim = FakeEim(queue=[package])
    assert Device(card, eim).poll().ok
    assert card.state == before
    result = eim.result_tlv()
    kind, value = schema.decode("EuiccPackageResult", result)
    if case in ("replay", "other EID"):
        _, data = verified(card, result, signer.token)
        code = data["euiccPackageErrorDataSigned"]["euiccPackageErrorCode"]
        assert code == {"replay": 4, "other EID": 3}[case]
    else:
        assert kind == "euiccPackageErrorUnsigned"
        expected_id = "nobody.test" if case == "unknown eIM" else signer.eim_id
        assert value["eimId"] == expected_id


# -- the synchronous facade -----------------------------------------------------------------------


def test_device_facade_polls_and_closes(card: Euicc, signer: Signer, eid: bytes) -> None:
    eim = FakeEim(queue=[signer.package(eid, [("enable", {"iccid": ICCID_B})])])
    config = PullConfig(esipa=EsipaConfig(transport=eim.transport()))
    with Ipad(InProcessTransport(card), "http://eim.test", config=config) as ipad:
        assert ipad.eid == card.eid
        outcome = ipad.poll_once()
        assert outcome.ok and outcome.packages[0].delivered
        assert [c.eim_id for c in ipad.eim_configuration()] == [signer.eim_id]
    assert enabled(card) == ICCID_B


def test_device_run_forever_stops_on_the_event(card: Euicc) -> None:
    import threading

    eim = FakeEim()
    stop = threading.Event()
    config = PullConfig(
        esipa=EsipaConfig(transport=eim.transport()), backoff=Backoff(interval=0.01, jitter=0)
    )
    with Ipad(InProcessTransport(card), "http://eim.test", config=config) as ipad:
        original = ipad.poll_once

        def counting() -> PollOutcome:
            if len(eim.log) >= 2:
                stop.set()
            return original()

        ipad.poll_once = counting  # type: ignore[method-assign]
        ipad.run_forever(stop)
    assert eim.log == ["poll"] * 3


def test_cli_poll_once(card: Euicc, tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    """``ipa poll --once`` against a plain-HTTP fake eIM (the transport is patched in)."""
    from euicc_cli import ipa_command as cli
    from ipa import esipa

    eim = FakeEim()
    card_dir = tmp_path / "card"
    disk = Euicc.create(card_dir)
    disk.preload((TS48 / PKG_A).read_bytes(), enable=True)
    signer = Signer()
    with Es10Client.open(InProcessTransport(disk)) as client:
        es10_iot.add_initial_eim(client, [signer.configuration()])
    disk.close()  # the command opens the card itself
    real = esipa.EsipaConfig.http_client
    monkeypatch.setattr(
        esipa.EsipaConfig,
        "http_client",
        lambda self: httpx.AsyncClient(transport=eim.transport()) if self else real(self),
    )
    argv = ["--card", str(card_dir), "--json", "poll", "--once", "--state", str(tmp_path / "s")]
    assert cli.main(argv + ["--eim-url", "http://eim.test"]) == 0
    # JSON Lines: one "poll" event per cycle, then the envelope.
    event, envelope = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert (envelope["ok"], envelope["code"]) == (True, 0)
    assert event.pop("event") == "poll"
    out = event
    assert (out["state"], out["eidValue"], out["eimId"], out["error"]) == (
        "IDLE",
        disk.eid,
        signer.eim_id,
        None,
    )
    assert eim.log == ["poll"]
    assert (tmp_path / "s" / STATE_FILE).exists()


def test_cli_poll_unprovisioned_card_fails(tmp_path: Path, capsys: Any) -> None:
    from euicc_cli import ipa_command as cli

    Euicc.create(tmp_path / "card").close()
    assert cli.main(["--card", str(tmp_path / "card"), "poll", "--once"]) == 1
    assert "no eIM" in capsys.readouterr().err


# -- end to end: reference eIM and SM-DP+ over HTTPS on 127.0.0.1 --------------------------------
#
# The card is a default emulated card (SGP.26 test EUM). The eIM is built from the SGP.26 test
# PKI; its configuration gives the card the CI certificate as trustedCertificateTls, which is
# the IPAd's only TLS anchor for the eIM. The SM-DP+ serves the SGP.26 SM-DP+ credentials.

try:
    from euicc_servers.eim import OrderState as EimOrderState
    from euicc_servers.eim import build_eim
    from euicc_servers.eim import run_in_thread as run_eim

    EIM_MISSING = ""
except ImportError as exc:  # pragma: no cover - while euicc_servers/eim is being written
    EIM_MISSING = f"the reference eIM (euicc_servers.eim) is not available: {exc}"
try:
    from euicc_servers.smdpp import OrderState as SmdpOrderState
    from euicc_servers.smdpp import OrderStore, SmdpConfig, SmdpCore, create_app
    from euicc_servers.smdpp import run_in_thread as run_smdpp

    SMDPP_MISSING = ""
except ImportError as exc:  # pragma: no cover
    SMDPP_MISSING = f"the reference SM-DP+ (euicc_servers.smdpp) is not available: {exc}"

needs_eim = pytest.mark.skipif(bool(EIM_MISSING), reason=EIM_MISSING)
needs_both = pytest.mark.skipif(
    bool(EIM_MISSING or SMDPP_MISSING), reason=EIM_MISSING or SMDPP_MISSING
)


@dataclass
class Servers:
    eim: Any  # euicc_servers.eim.EimServer
    eim_url: str
    ci_pem: bytes  # SGP.26 NIST CI: the SM-DP+ TLS anchor for direct downloads
    smdp: Any = None  # euicc_servers.smdpp.SmdpCore
    smdp_address: str = ""

    def provision(self, card: Euicc, **register: Any) -> bytes:
        """Register ``card`` at the eIM; the AddInitialEimRequest for it."""
        self.eim.core.register(card.eid, **register)
        return bytes(self.eim.core.configuration(card.eid).add_initial_eim_request())

    def order(self, card: Euicc, order: dict[str, Any]) -> int:
        return int(self.eim.core.queue(card.eid, order).id)

    def state(self, order_id: int) -> Any:
        return self.eim.core.store.order(order_id)


@pytest.fixture(scope="module")
def servers() -> Any:
    if EIM_MISSING:
        pytest.skip(EIM_MISSING)
    from cryptography.hazmat.primitives.serialization import Encoding

    from euicc_protocol.pki import CertRole
    from euicc_protocol.testpki import issue_server_certificate, load_sgp26

    nist = load_sgp26(Curve.NIST_P256)
    eim = build_eim("sgp26")
    with run_eim(eim.core, tls=eim.tls) as eim_server:
        setup = Servers(eim, eim_server.base_url, nist.ci.cert.public_bytes(Encoding.PEM))
        if SMDPP_MISSING:
            yield setup
            return
        tls = issue_server_certificate(
            nist.ci, CertRole.DP_TLS, "2.999.10", ip_addresses=("127.0.0.1",)
        )
        config = SmdpConfig.from_test_pki(
            [nist, load_sgp26(Curve.BRAINPOOL_P256R1)], "127.0.0.1", tls=tls
        )
        setup.smdp = SmdpCore(config, OrderStore())
        with run_smdpp(create_app(setup.smdp), tls=tls) as smdp_server:
            setup.smdp_address = smdp_server.address
            yield setup


def e2e_poll(card: Euicc, initial: bytes | None = None, **options: Any) -> PollOutcome:
    """One cycle of a fresh IPAd over ``card`` (real HTTPS; TLS anchored by the eIM config)."""

    async def go() -> PollOutcome:
        with Es10Client.open(InProcessTransport(card)) as client:
            flow = PullFlow(client, PullConfig(initial_eim=initial, **options))
            try:
                return await flow.poll_once()
            finally:
                await flow.aclose()

    return asyncio.run(go())


def provisioned_card(servers: Servers, **register: Any) -> Euicc:
    card = new_card()
    outcome = e2e_poll(card, servers.provision(card, **register))
    assert outcome.ok, outcome.error  # the eIM learns the eUICC certificates (auto order)
    return card


@needs_eim
def test_e2e_enable_is_executed_and_the_eim_holds_the_verified_result(servers: Servers) -> None:
    card = new_card()
    initial = servers.provision(card)
    order = servers.order(
        card, {"type": "psmo", "operations": [{"enable": {"iccid": _iccid(PKG_B)}}]}
    )
    outcome = e2e_poll(card, initial)  # AddInitialEim, certificates, then the package
    assert outcome.ok, outcome.error
    assert enabled(card) == ICCID_B
    done = servers.state(order)
    assert (done.state, done.verified, done.error) == (EimOrderState.DONE, True, None)
    assert done.result_json["euiccPackageResultSigned"]["euiccPackageResultDataSigned"][
        "euiccResult"
    ] == [{"enableResult": 0}]
    assert pending_on_card(card) == ([], [])  # EPR and notifications acknowledged and removed


@needs_eim
def test_e2e_json_binding(servers: Servers) -> None:
    card = provisioned_card(servers)
    order = servers.order(
        card, {"type": "psmo", "operations": [{"disable": {"iccid": _iccid(PKG_A)}}]}
    )
    outcome = e2e_poll(card, esipa=EsipaConfig(binding=Binding.JSON))
    assert outcome.ok, outcome.error
    assert enabled(card) is None
    assert servers.state(order).state == EimOrderState.DONE


@needs_eim
def test_e2e_add_eim_then_the_second_eim_manages_the_card(servers: Servers) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    card = provisioned_card(servers)
    second = build_eim("sgp26", eim_id="eim2.euicc-sim.test")
    # A key of its own, so that only the second eIM's signatures verify for it.
    from dataclasses import replace as dc_replace

    key = crypto.generate_private_key(Curve.NIST_P256)
    second.core.settings = dc_replace(second.core.settings, signing_key=key)
    with run_eim(second.core, tls=second.tls):
        second.core.register(card.eid, association_token=5)
        config = second.core.configuration(card.eid).to_json()
        assert config["eimPublicKey"]  # PEM of the new key
        first_id = servers.eim.core.settings.eim_id
        eco = servers.order(
            card,
            {"type": "eco", "operations": [{"addEim": config}, {"deleteEim": {"eimId": first_id}}]},
        )
        enable = second.core.queue(
            card.eid, {"type": "psmo", "operations": [{"enable": {"iccid": _iccid(PKG_B)}}]}
        ).id
        outcome = e2e_poll(card)
        assert outcome.ok, outcome.error
        assert servers.state(eco).state == EimOrderState.DONE
        assert enabled(card) == ICCID_B
        done = second.core.store.order(enable)
        assert (done.state, done.verified) == (EimOrderState.DONE, True)
        with Es10Client.open(InProcessTransport(card)) as client:
            configs = es10_iot.get_eim_configuration_data(client)
        assert [(c.eim_id, c.association_token) for c in configs] == [
            (second.core.settings.eim_id, 5)
        ]
        assert configs[0].eim_public_key == key.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )


@needs_eim
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("replay", "replayError"),
        ("forged signature", "euiccPackageErrorUnsigned"),
        ("other EID", "invalidEid"),
        ("unknown eIM", "euiccPackageErrorUnsigned"),
        ("stale token", "euiccPackageErrorUnsigned"),
    ],
)
def test_e2e_refused_packages(servers: Servers, monkeypatch: Any, case: str, expected: str) -> None:
    from dataclasses import replace as dc_replace

    from euicc_servers.eim import packages as eim_packages

    card = provisioned_card(servers)
    core = servers.eim.core
    if case == "replay":  # the eIM's counter goes back: its next package repeats counter 1
        e1 = servers.order(card, {"type": "psmo", "operations": [{"getRAT": {}}]})
        assert e2e_poll(card).ok and servers.state(e1).state == EimOrderState.DONE
        core.store.update_euicc(card.eid, counter=0)
    elif case == "forged signature":
        other = crypto.generate_private_key(Curve.NIST_P256)
        monkeypatch.setattr(core, "settings", dc_replace(core.settings, signing_key=other))
    elif case == "other EID":
        real = eim_packages.euicc_package_signed
        monkeypatch.setattr(
            eim_packages,
            "euicc_package_signed",
            lambda eim_id, eid, *rest: real(eim_id, OTHER_EID, *rest),
        )
    elif case == "unknown eIM":
        monkeypatch.setattr(core, "settings", dc_replace(core.settings, eim_id="nobody.test"))
    else:
        token = core.store.euicc(card.eid).association_token
        core.store.update_euicc(card.eid, association_token=token % 127 + 1)
    before = card.state
    order = servers.order(
        card, {"type": "psmo", "operations": [{"enable": {"iccid": _iccid(PKG_B)}}]}
    )
    outcome = e2e_poll(card)
    assert outcome.error is None
    assert card.state == before  # nothing changed on the card
    failed = servers.state(order)
    if expected == "euiccPackageErrorUnsigned":
        # Nothing the eUICC signed: a report on the order, which stays pending.
        assert failed.state == EimOrderState.SENT, failed
        assert expected in (failed.report or "")
        return
    assert failed.state == EimOrderState.FAILED, failed
    assert expected in json.dumps(failed.result_json) + (failed.error or "")
    # The raw result the eIM holds is the one the card produced, delivered unchanged.
    assert outcome.packages[-1].result == failed.result


@needs_both
@pytest.mark.parametrize("mode", ["direct", "indirect"])
def test_e2e_download_trigger_installs_a_ts48_profile(servers: Servers, mode: str) -> None:
    from ipa.es9p import Es9Config
    from ipa.pull import DownloadMode

    package = (
        "TS48V3-SAIP2-1-NOBERTLV-UNIQUE.der"
        if mode == "direct"
        else "TS48V4-SAIP2-3-BERTLV-UNIQUE.der"
    )
    matching_id = f"PULL-{mode.upper()}"
    servers.smdp.orders.add_order(matching_id, TS48 / package)
    card = provisioned_card(servers)
    # The eIM turns immediate enable on first, then triggers the download.
    servers.order(
        card,
        {
            "type": "psmo",
            "operations": [{"configureImmediateEnable": {"immediateEnableFlag": True}}],
        },
    )
    order = servers.order(
        card,
        {"type": "download", "activationCode": f"1${servers.smdp_address}${matching_id}"},
    )
    sessions = len(servers.eim.core.store.sessions())
    outcome = e2e_poll(
        card,
        download_mode=DownloadMode(mode),
        es9=Es9Config(ca_certificates=(servers.ci_pem,)),
    )
    assert outcome.ok, outcome.error
    iccid = saip.read_package((TS48 / package).read_bytes()).iccid_ef
    assert enabled(card) == iccid  # installed, then ImmediateEnable
    assert servers.state(order).state == EimOrderState.DONE
    assert servers.smdp.orders.get(matching_id).state == SmdpOrderState.INSTALLED
    assert pending_on_card(card)[1] == []  # every result taken by the eIM
    relayed = len(servers.eim.core.store.sessions()) - sessions
    assert relayed == (1 if mode == "indirect" else 0)
