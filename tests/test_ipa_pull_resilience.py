"""ipa.pull against an eIM that keeps refusing results or notifications: each refusal is
retried with back-off within the cycle's budget, then set aside (kept on disk, visible in the
outcome, the Python API and ``ipa poll --json``) while polling goes on, and delivered once the
eIM recovers.

The eIM is :class:`BrokenEim`, the ESipa stub of ``test_ipa_pull`` made to fail one kind of
request in one of three ways: HTTP 500, an error answer, an answer that does not decode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_ipa_pull import (
    ICCID_B,
    FakeEim,
    Signer,
    new_card,
    pending_on_card,
)
from test_ipa_pull import (
    Device as PullDevice,
)

from euicc_sim.card import Euicc
from ipa.esipa import Binding
from ipa.pull import STATE_FILE, PollOutcome

H = bytes.fromhex
FAILURES = ("http500", "error", "garbage")

_JSON_FAILED = {
    "header": {
        "functionExecutionStatus": {
            "status": "Failed",
            "statusCodeData": {"subjectCode": "8.1", "reasonCode": "1.2", "message": "no"},
        }
    }
}


@dataclass
class BrokenEim(FakeEim):
    """FakeEim whose requests of ``broken_kinds`` fail as ``broken`` says (None: healthy)."""

    broken: str | None = None
    broken_kinds: frozenset[str] = frozenset({"provide"})
    cycles: list[list[str]] = field(default_factory=lambda: [[]])  # requests per cycle

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/gsma/rsp2/asn1":
            kind = {b"\xbf\x4f": "poll", b"\xbf\x50": "provide", b"\xbf\x3d": "notify"}[
                request.content[:2]
            ]
        else:
            function = request.url.path.rsplit("/", 1)[1]
            kind = {"getEimPackage": "poll", "provideEimPackageResult": "provide"}.get(
                function, "notify"
            )
        self.cycles[-1].append(kind)
        if self.broken is None or kind not in self.broken_kinds:
            return super().handle(request)
        if self.broken == "http500":
            return httpx.Response(500, text="Internal Server Error")
        if self.broken == "garbage":
            return httpx.Response(200, content=H("BF5005A1030201"))  # runs past its end
        if request.url.path != "/gsma/rsp2/asn1":
            return httpx.Response(200, json=_JSON_FAILED)
        return httpx.Response(200, content=H("BF500302017F"))  # undefinedError

    def per_cycle(self, kind: str) -> list[int]:
        return [c.count(kind) for c in self.cycles]


@dataclass
class Ipad:
    """One IPAd process (its state directory survives it) over ``card``."""

    card: Euicc
    eim: BrokenEim
    state_dir: Path
    binding: Binding = Binding.ASN1
    options: dict[str, Any] = field(default_factory=dict)

    def poll(self) -> PollOutcome:
        self.eim.cycles.append([])
        device = PullDevice(
            self.card,
            self.eim,
            state_dir=self.state_dir,
            binding=self.binding,
            options=dict(self.options),
        )
        self.last = device
        return device.poll()


def _binding(mode: str) -> Binding:
    return Binding.ASN1 if mode != "error-json" else Binding.JSON


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
def card(signer: Signer) -> Euicc:
    return new_card(eim=signer)


# -- results --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [*FAILURES, "error-json"])
def test_a_refused_result_is_set_aside_polling_goes_on_and_it_is_delivered_after_recovery(
    card: Euicc, signer: Signer, tmp_path: Path, mode: str
) -> None:
    eid = H(card.eid)
    eim = BrokenEim(broken=mode.split("-")[0], queue=[signer.package(eid, [("getRAT", {})])])
    ipad = Ipad(card, eim, tmp_path, _binding(mode))
    first = ipad.poll()
    (package,) = first.packages
    assert first.ok and package.set_aside and package.refused and not package.delivered
    assert ipad.last.sleeps == [1, 2]  # three tries with back-off between them
    assert eim.per_cycle("provide")[-1] == 3
    assert [p.attempts for p in first.set_aside_results] == [3]
    assert ipad.last.flow.set_aside_results == first.set_aside_results  # the Python API
    saved = json.loads((tmp_path / STATE_FILE).read_text())
    assert [p["setAside"] for p in saved["pendingResults"]] == [True]

    # Still refusing: a new package is polled, run and its result set aside too.
    eim.queue.append(signer.package(eid, [("getRAT", {})]))
    second = ipad.poll()
    assert second.ok and eim.per_cycle("poll")[-1] == 1
    assert eim.per_cycle("provide")[-1] == 3  # 1 for the old result, 2 for the new
    assert len(second.set_aside_results) == 2
    assert len(pending_on_card(card)[1]) == 2  # the card holds both EPRs meanwhile

    eim.broken = None  # recovered
    third = ipad.poll()
    assert third.ok and third.set_aside_results == ()
    assert [p.delivered for p in third.packages] == [True, True]
    assert eim.cycles[-1] == ["provide", "provide", "poll"]  # the set-aside ones first
    assert pending_on_card(card) == ([], [])
    assert json.loads((tmp_path / STATE_FILE).read_text())["pendingResults"] == []


def test_an_eim_answering_500_forever_costs_at_most_the_configured_tries_per_cycle(
    card: Euicc, signer: Signer, tmp_path: Path
) -> None:
    eid = H(card.eid)
    eim = BrokenEim(broken="http500")
    ipad = Ipad(card, eim, tmp_path, options={"report_attempts": 2})
    for _ in range(6):
        eim.queue.append(signer.package(eid, [("getRAT", {})]))
        outcome = ipad.poll()
        assert outcome.ok
    assert eim.per_cycle("poll")[1:] == [1] * 6  # every cycle polls
    assert all(n <= 2 for n in eim.per_cycle("provide"))
    assert len(ipad.last.flow.pending_results) == 6  # none lost


def test_one_result_the_eim_never_takes_does_not_starve_the_others(
    card: Euicc, signer: Signer, tmp_path: Path
) -> None:
    eid = H(card.eid)
    eim = BrokenEim(broken="error")
    ipad = Ipad(card, eim, tmp_path)
    eim.queue = [signer.package(eid, [("getRAT", {})]), signer.package(eid, [("getRAT", {})])]
    ipad.poll()
    ipad.poll()
    poison, good = [p.result for p in ipad.last.flow.pending_results]

    def provide(message: bytes) -> bytes:  # the eIM now refuses only the first result
        if poison in message:
            return H("BF500302017F")
        return FakeEim.provide(eim, message)

    eim.broken, eim.provide = None, provide  # type: ignore[method-assign]
    blocked = ipad.poll()  # the poison result is first: refused, it ends the step...
    assert eim.cycles[-1] == ["provide", "poll"] and blocked.ok
    assert [p.result for p in blocked.set_aside_results] == [good, poison]  # ...and goes last
    outcome = ipad.poll()
    assert [p.result for p in outcome.packages if p.delivered] == [good]
    assert [p.result for p in outcome.set_aside_results] == [poison]


def test_a_restarted_ipad_lists_the_set_aside_result_in_poll_json(
    card: Euicc, signer: Signer, tmp_path: Path
) -> None:
    eid = H(card.eid)
    eim = BrokenEim(broken="garbage", queue=[signer.package(eid, [("getRAT", {})])])
    Ipad(card, eim, tmp_path).poll()
    again = Ipad(card, eim, tmp_path).poll()  # a new process with the same state directory
    shown = again.to_json()["setAside"]
    assert [r["attempts"] for r in shown["results"]] == [4]
    assert shown["notifications"] == []


# -- notifications --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["http500", "garbage", "error-json"])
def test_a_refused_notification_is_set_aside_and_delivered_after_recovery(
    card: Euicc, signer: Signer, tmp_path: Path, mode: str
) -> None:
    eid = H(card.eid)
    eim = BrokenEim(
        queue=[signer.package(eid, [("enable", {"iccid": ICCID_B})])], ack_notifications=False
    )
    ipad = Ipad(card, eim, tmp_path, _binding(mode))
    ipad.poll()
    assert pending_on_card(card) == ([1, 2], [])  # not acknowledged: still on the card
    eim.broken, eim.broken_kinds = mode.split("-")[0], frozenset({"notify"})
    eim.queue.append(signer.package(eid, [("getRAT", {})]))
    outcome = ipad.poll()
    assert outcome.ok and [n.seq_number for n in outcome.set_aside_notifications] == [1]
    assert eim.per_cycle("notify")[-1] == 3  # budget spent on notification 1
    assert eim.per_cycle("poll")[-1] == 1 and outcome.packages  # polling went on
    assert pending_on_card(card)[0] == [1, 2]
    assert json.loads((tmp_path / STATE_FILE).read_text())["setAsideNotifications"] == [
        {"seqNumber": 1, "attempts": 3}
    ]

    eim.broken = None
    recovered = ipad.poll()
    assert recovered.ok and recovered.notifications == 2
    assert recovered.set_aside_notifications == ()
    assert pending_on_card(card)[0] == []
