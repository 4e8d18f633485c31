"""Crash safety: every state-changing card command commits atomically.

For each state-changing command (every ES10 handler that can change the card, and the factory
``preload``) the card first runs it once under a counting :class:`CrashingIO`, which gives the
number ``n`` of filesystem effects and the state after the command. Then, for every ``k`` in
``range(n)``, a fresh copy of the card directory is opened with ``CrashingIO(k)`` (the power
is cut right before effect ``k``, with and without a torn write), the command is sent, and the
card is powered up again with :meth:`Euicc.open`. The state found must be exactly the state
before the command or exactly the state after it, and once a crash point yields "after" every
later one must too (a single commit point). The reopened card must be complete (no temporary
files, no stray blobs, every notification decodes and its signature verifies) and usable.

Notifications are signed with random ECDSA nonces, so two runs of one command sign their new
notifications differently: states are compared with the signed bytes of the notifications the
command created blanked out, and those bytes are checked on their own instead.

A refused command must not touch the filesystem at all: it runs under ``CrashingIO(0)``, which
cuts the power at the first effect.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from test_euicc_package import TestEim

import euicc_sim.card as card_module
from euicc_protocol import crypto, saip, schema, tlv
from euicc_protocol.crypto import Curve
from euicc_protocol.iccid import iccid_from_ef
from euicc_protocol.testpki import SGP26_DIR as SGP26
from euicc_protocol.testpki import issue_crl, load_sgp26
from euicc_sim import es10a
from euicc_sim.card import CardError, Euicc, ProfileInstallError
from euicc_sim.config import CardConfig
from euicc_sim.dirlock import LOCK_FILE
from euicc_sim.state import (
    CardState,
    LastDownload,
    NotificationEvent,
    ProfileClass,
    ProfileState,
)
from euicc_sim.storage import (
    STATE_FILE,
    CrashingIO,
    DirectoryStorage,
    FileIO,
    SimulatedCrash,
    StorageError,
    referenced_blobs,
)
from ipa.errors import Es10Error
from ipa.es10 import Es10Client
from ipa.transport import InProcessTransport

TS48 = Path(__file__).resolve().parents[1] / "profiles" / "ts48"


def _package(name: str) -> tuple[bytes, bytes]:
    """A TS.48 package and its ICCID in EF.ICCID coding."""
    data = (TS48 / name).read_bytes()
    return data, saip.read_package(data).iccid_ef


PKG_A, ICCID_A = _package("TS48V1-A-UNIQUE.der")  # test profile, enabled, notifications
PKG_B, ICCID_B = _package("TS48V1-B-UNIQUE.der")  # test profile, disabled, notifications
PKG_C, ICCID_C = _package("TS48V3-SAIP2-1-NOBERTLV-UNIQUE.der")  # operational, PPR1 + PPR2
PKG_D, ICCID_D = _package("TS48V4-SAIP2-3-BERTLV-UNIQUE.der")  # test profile, no notifications
PKG_E, ICCID_E = _package("TS48V3-SAIP2-1-BERTLV-UNIQUE.der")  # preloaded by the tests
UNKNOWN_ICCID = bytes.fromhex("98001032547698103214")

NOTIFY = "smdp.crash.example"
DEFAULT_DP = "smdp.default.example"
FOLLOW_UP_DP = "follow-up.example"

_DISABLE, _ENABLE, _DELETE = (
    NotificationEvent.DISABLE,
    NotificationEvent.ENABLE,
    NotificationEvent.DELETE,
)

# --- talking to the card --------------------------------------------------------------------

Op = Callable[[Euicc], None]
Value = Callable[[Euicc], Any]


def es10(card: Euicc, request_type: str, value: Any, response_type: str) -> Any:
    """One ES10 request through the IPAd's client (logical channel, SELECT, STORE DATA)."""
    with Es10Client.open(InProcessTransport(card)) as client:
        return client.transmit_es10(request_type, value, response_type)


def _request(request_type: str, response_type: str, value: Value, expected: dict) -> Op:
    def run(card: Euicc) -> None:
        answer = es10(card, request_type, value(card), response_type)
        assert answer == expected, f"{request_type}: expected {expected}, got {answer}"

    return run


def _ident(iccid: bytes, by_aid: bool) -> Value:
    """A ProfileIdentifier value: the ICCID, or the ISD-P AID the card gave that profile."""
    if not by_aid:
        return lambda card: ("iccid", iccid)

    def aid(card: Euicc) -> tuple[str, bytes]:
        profile = card.state.profile_by_iccid(iccid)
        assert profile is not None
        return ("isdpAid", profile.isdp_aid)

    return aid


def _switch(iccid: bytes, by_aid: bool, refresh: bool) -> Value:
    ident = _ident(iccid, by_aid)
    return lambda card: {"profileIdentifier": ident(card), "refreshFlag": refresh}


def enable_profile(iccid: bytes, result: int = 0, *, by_aid: bool = False) -> Op:
    return _request(
        "EnableProfileRequest",
        "EnableProfileResponse",
        _switch(iccid, by_aid, refresh=False),
        {"enableResult": result},
    )


def disable_profile(iccid: bytes, result: int = 0, *, by_aid: bool = False) -> Op:
    return _request(
        "DisableProfileRequest",
        "DisableProfileResponse",
        _switch(iccid, by_aid, refresh=True),
        {"disableResult": result},
    )


def delete_profile(iccid: bytes, result: int = 0, *, by_aid: bool = False) -> Op:
    return _request(
        "DeleteProfileRequest",
        "DeleteProfileResponse",
        _ident(iccid, by_aid),
        {"deleteResult": result},
    )


def set_nickname(iccid: bytes, nickname: str, result: int = 0) -> Op:
    return _request(
        "SetNicknameRequest",
        "SetNicknameResponse",
        lambda card: {"iccid": iccid, "profileNickname": nickname},
        {"setNicknameResult": result},
    )


def set_default_dp_address(address: str, *, sgp32: bool = False) -> Op:
    prefix = "SGP32-" if sgp32 else ""
    return _request(
        f"{prefix}SetDefaultDpAddressRequest",
        f"{prefix}SetDefaultDpAddressResponse",
        lambda card: {"defaultDpAddress": address},
        {"setDefaultDpAddressResult": 0},
    )


_CI = load_sgp26(Curve.NIST_P256).ci


def load_crl(revoked: list[int], number: int, missing: list[int] | None = None, **kw: Any) -> Op:
    """LoadCRL of a CRL by the SGP.26 NIST CI; ``missing`` None: it must be refused."""
    crl = issue_crl(_CI, revoked, number, **kw)

    def run(card: Euicc) -> None:
        with Es10Client.open(InProcessTransport(card)) as client:
            if missing is None:
                with pytest.raises(Es10Error, match="loadCRLResponseError"):
                    client.load_crl(crl)
            else:
                assert client.load_crl(crl) == missing

    return run


def remove_notification(seq_number: int, status: int = 0) -> Op:
    return _request(
        "NotificationSentRequest",
        "NotificationSentResponse",
        lambda card: {"seqNumber": seq_number},
        {"deleteNotificationStatus": status},
    )


def memory_reset_sgp22(options: set[int], result: int = 0) -> Op:
    """ES10c.eUICCMemoryReset in its SGP.22 form (``BF34``)."""
    return _request(
        "EuiccMemoryResetRequest",
        "EuiccMemoryResetResponse",
        lambda card: {"resetOptions": schema.bits(sorted(options))},
        {"resetResult": result},
    )


def memory_reset_sgp32(options: set[int], expected: dict) -> Op:
    """ES10b.eUICCMemoryReset in its SGP.32 v1.2 form (``BF64``)."""
    return _request(
        "SGP32-EuiccMemoryResetRequest",
        "SGP32-EuiccMemoryResetResponse",
        lambda card: {"resetOptions": schema.bits(sorted(options))},
        expected,
    )


def preload(package: bytes, *, enable: bool) -> Op:
    def run(card: Euicc) -> None:
        profile = card.preload(package, notification_address=NOTIFY, enable=enable)
        assert profile.state is (ProfileState.ENABLED if enable else ProfileState.DISABLED)

    return run


def steps(*ops: Op) -> Op:
    def run(card: Euicc) -> None:
        for op in ops:
            op(card)

    return run


# --- SGP.32 eIM and IoT functions (euicc_sim/eim.py, euicc_package.py, iot.py) ---------------

#: The eIM role of tests/test_euicc_package.py; one key per test process, so runs repeat alike.
CRASH_EIM = TestEim(eim_id="eim.crash.example")


def add_initial_eim(token: int = 1) -> Op:
    def run(card: Euicc) -> None:
        value = {"eimConfigurationDataList": [CRASH_EIM.configuration()]}
        answer = es10(card, "AddInitialEimRequest", value, "AddInitialEimResponse")
        assert answer == ("addInitialEimOk", [("associationToken", token)]), answer

    return run


def load_euicc_package(
    counter: int, operations: list[tuple[str, Any]], results: list[Any], kind: str = "psmoList"
) -> Op:
    """LoadEuiccPackage from CRASH_EIM, signed over the token the card holds for it."""

    def run(card: Euicc) -> None:
        config = card.state.eim_config(CRASH_EIM.eim_id)
        assert config is not None
        request = CRASH_EIM.package(
            bytes.fromhex(card.eid),
            operations,
            kind=kind,
            counter=counter,
            token=config.association_token,
        )
        with Es10Client.open(InProcessTransport(card)) as client:
            answer = client.exchange(request)
        alternative, value = schema.decode("EuiccPackageResult", answer)
        assert alternative == "euiccPackageResultSigned", answer.hex()
        assert value["euiccPackageResultDataSigned"]["euiccResult"] == results

    return run


def iot_function(request_type: str, field: str, result: int, value: Any = None) -> Op:
    """An SGP.32 ES10b function answered by one result field (default: refreshFlag FALSE)."""
    request = {"refreshFlag": False} if value is None else value
    response_type = request_type.replace("Request", "Response")
    return _request(request_type, response_type, lambda card: request, {field: result})


def profile_rollback(card: Euicc) -> None:
    value = {"refreshFlag": True}
    answer = es10(card, "ProfileRollbackRequest", value, "ProfileRollbackResponse")
    assert answer["cmdResult"] == 0 and "eUICCPackageResult" in answer, answer


def downloaded(iccid: bytes) -> Op:
    """What the download code records after installing ``iccid`` (for ImmediateEnable)."""

    def run(card: Euicc) -> None:
        info = LastDownload(iccid, "2.999.10", "testsmdpplus1.example.com")
        card.context.commit(replace(card.state, last_download=info))

    return run


def allow_fallback(iccid: bytes) -> Op:
    """As if the profile's metadata carried fallbackAllowed."""

    def run(card: Euicc) -> None:
        profiles = tuple(
            replace(p, fallback_allowed=True) if p.iccid == iccid else p
            for p in card.state.profiles
        )
        card.context.commit(replace(card.state, profiles=profiles))

    return run


def _with_fallback_profile_b() -> Op:
    set_b = [("setFallbackAttribute", {"iccid": ICCID_B})]
    ok = [("setFallbackAttributeResult", 0)]
    return steps(add_initial_eim(), allow_fallback(ICCID_B), load_euicc_package(1, set_b, ok))


# --- the commands ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A card operation: ``run`` performs it and checks the card's answer.

    ``setup`` runs once, without crashes, on a copy of the base card to reach the state the
    command starts from. ``notifications`` are the (event, ICCID) pairs it must add and
    ``blobs`` the number of profile packages it must store.
    """

    name: str
    run: Op
    setup: Op | None = None
    notifications: tuple[tuple[NotificationEvent, bytes], ...] = ()
    blobs: int = 0

    def __str__(self) -> str:
        return self.name


STATE_CHANGING = [
    Command(
        "enable-switch",  # A is enabled: enabling B disables A first, two notifications
        enable_profile(ICCID_B),
        notifications=((_DISABLE, ICCID_A), (_ENABLE, ICCID_B)),
    ),
    Command(
        "enable-by-aid-nothing-enabled",
        enable_profile(ICCID_B, by_aid=True),
        setup=disable_profile(ICCID_A),
        notifications=((_ENABLE, ICCID_B),),
    ),
    Command(
        "enable-switch-to-profile-without-notifications",
        enable_profile(ICCID_D),
        notifications=((_DISABLE, ICCID_A),),
    ),
    Command("disable", disable_profile(ICCID_A), notifications=((_DISABLE, ICCID_A),)),
    Command("delete", delete_profile(ICCID_B), notifications=((_DELETE, ICCID_B),)),
    Command("delete-by-aid-without-notifications", delete_profile(ICCID_D, by_aid=True)),
    Command("set-nickname", set_nickname(ICCID_B, "crash test \u2713")),
    Command(
        "clear-nickname", set_nickname(ICCID_B, ""), setup=set_nickname(ICCID_B, "old nickname")
    ),
    Command("set-default-dp-address", set_default_dp_address("smdp.new.example")),
    Command("clear-default-dp-address", set_default_dp_address("")),
    Command("set-default-dp-address-sgp32", set_default_dp_address("dp.iot.example", sgp32=True)),
    Command("remove-notification", remove_notification(3)),
    Command("load-crl", load_crl([1, 2, 3], 1, [])),
    Command(
        "load-crl-delta",
        load_crl([4], 2, [], delta_of=1, removed=[2]),
        setup=load_crl([1, 2], 1, []),
    ),
    Command("load-crl-partial", load_crl([5], 3, [1], partial=(2, 2)), setup=load_crl([1], 2, [])),
    Command("memory-reset-sgp22-operational-and-default-dp", memory_reset_sgp22({0, 1, 2})),
    Command("memory-reset-sgp22-default-dp-only", memory_reset_sgp22({2})),
    Command(
        "memory-reset-sgp32-preloaded-test-profiles",  # A, B and D, the enabled A among them
        memory_reset_sgp32({3}, {"resetResult": 0}),
    ),
    Command(
        "memory-reset-sgp32-all-options",
        memory_reset_sgp32(
            {0, 1, 2, 3, 4, 5, 6},
            {"resetResult": 0, "resetEimResult": 1, "resetImmediateEnableConfigResult": 0},
        ),
    ),
    Command("preload-and-enable", preload(PKG_E, enable=True), blobs=1),
    Command("preload-disabled", preload(PKG_E, enable=False), blobs=1),
    Command("add-initial-eim", add_initial_eim()),
    Command(
        "load-euicc-package-enable-switch",  # the eIM switches A -> B: two notifications
        load_euicc_package(1, [("enable", {"iccid": ICCID_B})], [("enableResult", 0)]),
        setup=add_initial_eim(),
        notifications=((_DISABLE, ICCID_A), (_ENABLE, ICCID_B)),
    ),
    Command(
        "load-euicc-package-refused-psmo",  # only the counter and the stored result change
        load_euicc_package(1, [("delete", {"iccid": ICCID_C})], [("deleteResult", 3)]),
        setup=add_initial_eim(),
    ),
    Command(
        "load-euicc-package-add-eim",
        load_euicc_package(
            1,
            [("addEim", TestEim(eim_id="second.crash.example").configuration())],
            [("addEimResult", ("associationToken", 2))],
            kind="ecoList",
        ),
        setup=add_initial_eim(),
    ),
    Command(
        "profile-rollback",
        profile_rollback,
        setup=steps(
            add_initial_eim(),
            load_euicc_package(
                1, [("enable", {"iccid": ICCID_B, "rollbackFlag": None})], [("enableResult", 0)]
            ),
        ),
        notifications=((_DISABLE, ICCID_B), (_ENABLE, ICCID_A)),
    ),
    Command(
        "configure-immediate-profile-enabling",
        iot_function(
            "ConfigureImmediateProfileEnablingRequest",
            "configImmediateEnableResult",
            0,
            {"immediateEnableFlag": None, "defaultSmdpOid": "2.999.10"},
        ),
    ),
    Command(
        "immediate-enable",
        iot_function("ImmediateEnableRequest", "immediateEnableResult", 0),
        setup=steps(
            iot_function(
                "ConfigureImmediateProfileEnablingRequest",
                "configImmediateEnableResult",
                0,
                {"immediateEnableFlag": None},
            ),
            downloaded(ICCID_B),
        ),
        notifications=((_DISABLE, ICCID_A), (_ENABLE, ICCID_B)),
    ),
    Command(
        "execute-fallback-mechanism",
        iot_function("ExecuteFallbackMechanismRequest", "executeFallbackMechanismResult", 0),
        setup=_with_fallback_profile_b(),
        notifications=((_DISABLE, ICCID_A), (_ENABLE, ICCID_B)),
    ),
    Command(
        "return-from-fallback",
        iot_function("ReturnFromFallbackRequest", "returnFromFallbackResult", 0),
        setup=steps(
            _with_fallback_profile_b(),
            iot_function("ExecuteFallbackMechanismRequest", "executeFallbackMechanismResult", 0),
        ),
        notifications=((_DISABLE, ICCID_B), (_ENABLE, ICCID_A)),
    ),
    Command(
        "remove-euicc-package-result",  # the result of the setup's package, seqNumber 5
        remove_notification(5),
        setup=steps(add_initial_eim(), load_euicc_package(1, [], [])),
    ),
    Command(
        "memory-reset-sgp32-eim-configuration",
        memory_reset_sgp32({5}, {"resetResult": 1, "resetEimResult": 0}),
        setup=add_initial_eim(),
    ),
]

#: ES10 request types whose handlers may change the card; each has commands above.
STATE_CHANGING_REQUESTS = {
    "EnableProfileRequest",
    "DisableProfileRequest",
    "DeleteProfileRequest",
    "SetNicknameRequest",
    "SetDefaultDpAddressRequest",
    "SGP32-SetDefaultDpAddressRequest",
    "NotificationSentRequest",
    "EuiccMemoryResetRequest",
    "SGP32-EuiccMemoryResetRequest",
    "AddInitialEimRequest",
    "EuiccPackageRequest",
    "ProfileRollbackRequest",
    "ConfigureImmediateProfileEnablingRequest",
    "ImmediateEnableRequest",
    "ExecuteFallbackMechanismRequest",
    "ReturnFromFallbackRequest",
    "LoadCRLRequest",
    "BoundProfilePackage",  # crash-tested in tests/test_download_card.py
}


def _sgp26_certificate(role_dir: str, name: str) -> Any:
    der = (SGP26 / role_dir / name).read_bytes()
    return schema.decode("Certificate", der)


# The download requests below fail their checks (no session, bad signatures): the point is that
# a refused download step writes nothing.
_DPAUTH = _sgp26_certificate("DPauth", "CERT_S_SM_DPauth_ECDSA_NIST.der")
_DPPB = _sgp26_certificate("DPpb", "CERT_S_SM_DPpb_ECDSA_NIST.der")
_CTX_PARAMS1 = (
    "ctxParamsForCommonAuthentication",
    {"matchingId": "X", "deviceInfo": {"tac": b"\x35\x29\x06\x11", "deviceCapabilities": {}}},
)

#: ES10 request types that must never change the card, with a request value for each.
READ_ONLY_REQUESTS: dict[str, Any] = {
    "AuthenticateServerRequest": {
        "serverSigned1": {
            "transactionId": b"\x01" * 16,
            "euiccChallenge": b"\x02" * 16,
            "serverAddress": "smdp.example.com",
            "serverChallenge": b"\x03" * 16,
        },
        "serverSignature1": b"\x00" * 64,
        "euiccCiPKIdToBeUsed": bytes.fromhex("F54172BDF98A95D65CBEB88A38A1C11D800A85C3"),
        "serverCertificate": _DPAUTH,
        "ctxParams1": _CTX_PARAMS1,
    },
    "PrepareDownloadRequest": {
        "smdpSigned2": {"transactionId": b"\x01" * 16, "ccRequiredFlag": False},
        "smdpSignature2": b"\x00" * 64,
        "smdpCertificate": _DPPB,
    },
    "CancelSessionRequest": {"transactionId": b"\x01", "reason": 0},
    "EuiccConfiguredAddressesRequest": {},
    "GetEuiccInfo1Request": {},
    "GetEuiccInfo2Request": {},
    "GetEuiccChallengeRequest": {},
    "GetRatRequest": {},
    "ListNotificationRequest": {},
    "SGP32-RetrieveNotificationsListRequest": {},
    "RetrieveNotificationsListRequest": {},
    "LpaeActivationRequest": {"lpaeOption": schema.bits([0])},
    "GetCertsRequest": {},
    "ProfileInfoListRequest": {},
    "GetEuiccDataRequest": {"tagList": b"\x5a"},
    "GetEimConfigurationDataRequest": {},
    "EnableEmergencyProfileRequest": {"refreshFlag": False},
    "DisableEmergencyProfileRequest": {"refreshFlag": False},
    "GetConnectivityParametersRequest": {},
    "IpaeActivationRequest": {"ipaeOption": schema.bits([0])},
}

REFUSED = [
    Command("enable-enabled-profile", enable_profile(ICCID_A, 2)),
    Command("enable-unknown-profile", enable_profile(UNKNOWN_ICCID, 1)),
    Command("disable-disabled-profile", disable_profile(ICCID_B, 2)),
    Command("disable-unknown-profile", disable_profile(UNKNOWN_ICCID, 1)),
    Command("delete-enabled-profile", delete_profile(ICCID_A, 2)),
    Command("delete-ppr2-profile", delete_profile(ICCID_C, 3)),
    Command("delete-unknown-profile", delete_profile(UNKNOWN_ICCID, 1)),
    Command("disable-ppr1-profile", disable_profile(ICCID_C, 3), setup=enable_profile(ICCID_C)),
    Command(
        "switch-away-from-ppr1-profile", enable_profile(ICCID_B, 3), setup=enable_profile(ICCID_C)
    ),
    Command("set-nickname-unknown-profile", set_nickname(UNKNOWN_ICCID, "x", 1)),
    Command("set-nickname-too-long", set_nickname(ICCID_B, "x" * 65, 127)),
    Command("remove-unknown-notification", remove_notification(99, 1)),
    Command("remove-removed-notification", remove_notification(2, 1)),
    Command("memory-reset-sgp22-nothing-to-delete", memory_reset_sgp22({1}, 1)),
    Command(
        "memory-reset-sgp32-nothing-to-delete",
        memory_reset_sgp32({1, 4, 5}, {"resetResult": 1, "resetEimResult": 1}),
    ),
    Command("preload-same-package-again", lambda card: _refused_preload(card, PKG_A)),
    Command("load-older-crl", load_crl([9], 1), setup=load_crl([1], 2, [])),
    Command("load-delta-crl-without-base", load_crl([9], 2, delta_of=1)),
]


def _refused_preload(card: Euicc, package: bytes) -> None:
    with pytest.raises(ProfileInstallError, match="already installed"):
        card.preload(package)


# --- the cards ------------------------------------------------------------------------------


def _build_base(path: Path) -> None:
    """Four preloaded TS.48 profiles (A enabled), three pending notifications, a default DP.

    Enabling B and then A again, then removing notification 2, leaves notifications 1
    (disable A), 3 (disable B) and 4 (enable A): sequence numbers have a gap and go on at 5.
    """
    card = Euicc.create(path, kind="consumer")  # the steps below use local ES10c management
    card.preload(PKG_A, notification_address=NOTIFY, enable=True)
    card.preload(PKG_B, notification_address=NOTIFY)
    card.preload(
        PKG_C,
        notification_address=NOTIFY,
        profile_class=ProfileClass.OPERATIONAL,
        ppr1=True,
        ppr2=True,
    )
    card.preload(PKG_D)
    steps(
        enable_profile(ICCID_B),
        enable_profile(ICCID_A),
        remove_notification(2),
        set_default_dp_address(DEFAULT_DP),
    )(card)
    state = card.state
    assert [n.seq_number for n in state.notifications] == [1, 3, 4]
    assert state.next_seq_number == 5
    assert state.enabled_profile is not None and state.enabled_profile.iccid == ICCID_A
    card.close()


#: Words naming the commands of SGP.32 functions: they run on the base card made an IoT card.
_IOT_WORDS = ("sgp32", "eim", "euicc-package", "rollback", "immediate", "fallback")


def is_iot(command: Command) -> bool:
    """Whether ``command`` uses SGP.32 functions (an IoT card) rather than ES10c (consumer)."""
    return any(word in command.name for word in _IOT_WORDS)


def _make_kind(path: Path, kind: str) -> None:
    """Turn the card in ``path`` into a card of ``kind`` (its config.json, as a factory would)."""
    storage = DirectoryStorage(path, fsync=False)
    raw = storage.read_file("config.json")
    assert raw is not None
    storage.write_file("config.json", replace(CardConfig.from_json(raw), kind=kind).to_json())


class Cards:
    """The base card, built once per module, and the starting card of each command.

    The base is a consumer card; ``base_iot`` is the same card as an IoT card.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = root / "base"
        _build_base(self.base)
        self.base_iot = root / "base-iot"
        shutil.copytree(self.base, self.base_iot)
        _make_kind(self.base_iot, "iot")
        self._starts: dict[str, Path] = {}
        self._copies = 0

    def start(self, command: Command) -> Path:
        """The directory of the card ``command`` starts from (never changed by the tests)."""
        base = self.base_iot if is_iot(command) else self.base
        if command.setup is None:
            return base
        path = self._starts.get(command.name)
        if path is None:
            path = self.root / f"start-{len(self._starts)}"
            shutil.copytree(base, path)
            with Euicc.open(path) as card:
                command.setup(card)
            self._starts[command.name] = path
        return path

    def copy(self, source: Path, tmp: Path, label: str) -> Path:
        """A fresh copy of the card in ``source``."""
        self._copies += 1
        path = tmp / f"{label}-{self._copies}"
        shutil.copytree(source, path)
        return path


@pytest.fixture(scope="module")
def cards(tmp_path_factory: pytest.TempPathFactory) -> Cards:
    return Cards(tmp_path_factory.mktemp("crash-cards"))


# --- checks ---------------------------------------------------------------------------------


def normalised(state: CardState, first_new_seq: int) -> CardState:
    """``state`` with the signed bytes of notifications from ``first_new_seq`` on blanked."""
    return replace(
        state,
        notifications=tuple(
            replace(n, encoded=b"") if n.seq_number >= first_new_seq else n
            for n in state.notifications
        ),
    )


def _children(data: bytes) -> list[bytes]:
    """The complete TLVs inside the single constructed TLV ``data``."""
    outer = tlv.read_tlv(data)
    assert outer.end == len(data), "bytes after the notification"
    out, pos = [], outer.value_start
    for child in tlv.iter_tlvs(data, outer.value_start, outer.value_end):
        out.append(data[pos : child.end])
        pos = child.end
    return out


def check_notifications(card: Euicc) -> None:
    """Every pending notification is a complete OtherSignedNotification the card signed."""
    chain = card.credentials.chain_for(None)
    assert chain is not None
    key = x509.load_der_x509_certificate(chain.euicc_certificate).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    for n in card.state.notifications:
        kind, value = schema.decode("SGP32-PendingNotification", n.encoded)
        assert kind == "otherSignedNotification"
        meta = schema.decode("OtherSignedNotification", n.encoded)["tbsOtherNotification"]
        assert value["tbsOtherNotification"] == meta
        assert meta["seqNumber"] == n.seq_number
        assert schema.bit_positions(meta["profileManagementOperation"]) == {int(n.event)}
        assert meta["notificationAddress"] == n.address
        assert meta.get("iccid") == n.iccid
        tbs, signature, euicc_certificate, eum_certificate = _children(n.encoded)
        assert tbs[:2] == b"\xbf\x2f"
        assert (euicc_certificate, eum_certificate) == (
            chain.euicc_certificate,
            chain.eum_certificate,
        )
        sig = tlv.read_tlv(signature)
        assert signature[:2] == b"\x5f\x37"
        crypto.verify_raw(key, sig.value(signature), tbs)


def _files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (path / "files").iterdir()}


def check_complete(card: Euicc, path: Path, files: dict[str, bytes]) -> None:
    """Nothing half-done is left in the directory; every referenced blob is intact."""
    state = card.state
    assert sorted(os.listdir(path)) == sorted([STATE_FILE, LOCK_FILE, "blobs", "files"])
    assert set(os.listdir(path / "blobs")) == referenced_blobs(state)
    assert _files(path) == files  # keys, certificates and config are never touched
    for profile in state.profiles:
        assert card.profile_package(profile) is not None
    check_notifications(card)


def check_usable(card: Euicc, path: Path) -> None:
    """The card answers ES10 and commits a further command that survives a power cycle."""
    with Es10Client.open(InProcessTransport(card)) as client:
        infos = client.get_profiles_info()
        assert [
            (i.iccid_raw, None if i.profile_state is None else int(i.profile_state)) for i in infos
        ] == [(p.iccid, int(p.state)) for p in card.state.profiles]
    set_default_dp_address(FOLLOW_UP_DP)(card)
    assert card.state.default_dp_address == FOLLOW_UP_DP
    card.close()
    with Euicc.open(path) as reopened:
        assert reopened.state == card.state


def check_single_commit(log: list[str], path: Path, command: Command) -> None:
    """One rename onto state.json, only the directory fsync after it, new blobs before it."""
    renames = [e.split(" -> ")[1] for e in log if e.startswith("replace ")]
    state_file = os.path.join(path, STATE_FILE)
    commits = renames.count(state_file)
    assert commits == 1, f"{command}: {commits} commits, expected exactly one: {log}"
    at = next(i for i, e in enumerate(log) if e.endswith(f" -> {state_file}"))
    tail = log[at + 1 :]
    assert tail == [f"fsync_dir {path}"], f"{command}: effects after the commit point: {tail}"
    blobs = [r for r in renames if os.path.dirname(r) == os.path.join(path, "blobs")]
    assert len(blobs) == command.blobs, f"{command}: stored {len(blobs)} blobs: {log}"
    assert len(renames) == commits + len(blobs), f"{command}: changed fixed files: {log}"


@dataclass
class CrashRun:
    """What :func:`crash_everywhere` saw: effect log of the command and outcome per crash."""

    log: list[str]
    outcomes: list[str]


def crash_everywhere(cards: Cards, tmp: Path, command: Command, *, torn: bool) -> CrashRun:
    """Crash ``command`` before each of its effects; check the card after every power-up."""
    start = cards.start(command)
    files = _files(start)
    state_bytes = (start / STATE_FILE).read_bytes()

    count_path = cards.copy(start, tmp, "count")
    counter = CrashingIO()
    card = Euicc(DirectoryStorage(count_path, io=counter))
    assert counter.log == [], f"opening a clean card has effects: {counter.log}"
    before = card.state
    command.run(card)
    after = card.state
    log = list(counter.log)
    assert after != before, f"{command} changed nothing"
    card.close()
    with Euicc.open(count_path) as reopened:  # what the command committed is what comes back
        assert reopened.state == after
    first_new = before.next_seq_number
    added = [(n.event, n.iccid) for n in after.notifications if n.seq_number >= first_new]
    assert added == list(command.notifications)
    expected_after = normalised(after, first_new)

    outcomes = []
    for k in range(len(log)):
        path = cards.copy(start, tmp, f"crash{k}")
        io = CrashingIO(k, torn_writes=torn)
        card = Euicc(DirectoryStorage(path, io=io))
        with pytest.raises(SimulatedCrash):
            command.run(card)
        card.close()  # the power is off: the process that had the card open is gone
        try:
            reopened = Euicc.open(path)
        except (CardError, StorageError) as exc:
            raise AssertionError(
                f"{command}: after a crash before effect {k} ({log[k]}) the card does not "
                f"power up: {exc}"
            ) from exc
        state = reopened.state
        if state == before:
            outcomes.append("before")
            assert (path / STATE_FILE).read_bytes() == state_bytes
        else:
            assert normalised(state, first_new) == expected_after, (
                f"{command}: a crash before effect {k} ({log[k]}) left a state that is neither "
                f"the state before nor the state after the command"
            )
            outcomes.append("after")
        check_complete(reopened, path, files)
        if state == before:  # the command can simply be sent again
            command.run(reopened)
            assert normalised(reopened.state, first_new) == expected_after
        check_usable(reopened, path)

    switch = outcomes.count("before")
    assert outcomes == ["before"] * switch + ["after"] * (len(log) - switch), (
        f"{command}: more than one commit point: {list(zip(outcomes, log, strict=True))}"
    )
    assert switch >= 1
    check_single_commit(log, count_path, command)
    return CrashRun(log, outcomes)


# --- tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("torn", [False, True], ids=["clean-cut", "torn-write"])
@pytest.mark.parametrize("command", STATE_CHANGING, ids=str)
def test_command_survives_crash_at_every_write(
    cards: Cards, tmp_path: Path, command: Command, torn: bool
) -> None:
    """Power cut before each effect of the command: reopening gives exactly before or after."""
    crash_everywhere(cards, tmp_path, command, torn=torn)


def test_enable_switch_is_before_until_the_rename_and_after_from_then_on(
    cards: Cards, tmp_path: Path
) -> None:
    """The A->B switch: both notifications and both profile states appear in one step."""
    run = crash_everywhere(cards, tmp_path, STATE_CHANGING[0], torn=False)
    rename = next(i for i, e in enumerate(run.log) if e.startswith("replace "))
    assert run.outcomes == ["before"] * (rename + 1) + ["after"] * (len(run.log) - rename - 1)


@pytest.mark.parametrize("command", REFUSED, ids=str)
def test_refused_command_performs_no_effects(
    cards: Cards, tmp_path: Path, command: Command
) -> None:
    """The power is cut at the first effect: a refused command must get its answer out."""
    path = cards.copy(cards.start(command), tmp_path, "refused")
    state_bytes = (path / STATE_FILE).read_bytes()
    io = CrashingIO(0)
    card = Euicc(DirectoryStorage(path, io=io))
    before = card.state
    command.run(card)
    assert (io.count, io.crashed) == (0, False)
    assert card.state is before
    assert (path / STATE_FILE).read_bytes() == state_bytes
    card.close()
    with Euicc.open(path) as reopened:
        assert reopened.state == before


def test_refused_preload_keeps_the_state_and_its_blob_is_collected_at_power_up(
    cards: Cards, tmp_path: Path
) -> None:
    """A new package whose ICCID is taken is refused; no blob of it outlives a power cycle."""
    path = cards.copy(cards.base, tmp_path, "refused-preload")
    card = Euicc.open(path)
    before = card.state
    with pytest.raises(ProfileInstallError, match="already installed"):
        card.preload(PKG_E, iccid=iccid_from_ef(ICCID_A))
    assert card.state == before
    card.close()
    reopened = Euicc.open(path)
    assert reopened.state == before
    assert set(os.listdir(path / "blobs")) == referenced_blobs(before)


@pytest.mark.parametrize("kind", ["consumer", "iot"])
def test_read_only_functions_perform_no_effects(cards: Cards, tmp_path: Path, kind: str) -> None:
    base = cards.base_iot if kind == "iot" else cards.base
    path = cards.copy(base, tmp_path, "read-only")
    io = CrashingIO(0)
    card = Euicc(DirectoryStorage(path, io=io))
    offered = {f.request_type for f in card.isdr.functions.values()}
    asked = 0
    with Es10Client.open(InProcessTransport(card)) as client:
        for request_type, value in READ_ONLY_REQUESTS.items():
            if request_type not in offered:
                continue
            asked += 1
            request = schema.encode(request_type, value)
            response = client.exchange(request)
            assert response[:2] == request[:2], request_type
    assert asked >= 10
    assert (io.count, io.crashed) == (0, False)


def test_every_es10_handler_is_classified_for_crash_safety(cards: Cards) -> None:
    """A new ES10 handler must join STATE_CHANGING (with crash tests) or READ_ONLY_REQUESTS."""
    handled = set()
    for base in (cards.base, cards.base_iot):
        with Euicc(DirectoryStorage(base, io=CrashingIO(0))) as card:
            handled |= {f.request_type for f in card.isdr.functions.values()}
    unclassified = handled - STATE_CHANGING_REQUESTS - set(READ_ONLY_REQUESTS)
    assert not unclassified, f"add crash-safety coverage for {sorted(unclassified)}"
    assert STATE_CHANGING_REQUESTS <= handled


# --- the checks catch broken handlers -------------------------------------------------------


def test_checks_catch_a_handler_that_commits_twice(
    cards: Cards, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def twice(ctx: Any, request: dict) -> dict:
        ctx.commit(replace(ctx.state, default_dp_address="half.example"))
        ctx.commit(replace(ctx.state, default_dp_address=request["defaultDpAddress"]))
        return {"setDefaultDpAddressResult": 0}

    monkeypatch.setitem(es10a.HANDLERS, "SetDefaultDpAddressRequest", twice)
    command = Command("twice", set_default_dp_address("smdp.new.example"))
    with pytest.raises(AssertionError, match="neither the state before nor the state after"):
        crash_everywhere(cards, tmp_path, command, torn=False)


def test_checks_catch_effects_after_the_commit_point(
    cards: Cards, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def late(ctx: Any, request: dict) -> dict:
        ctx.commit(replace(ctx.state, default_dp_address=request["defaultDpAddress"]))
        ctx.storage.put_blob(b"written after the commit")
        return {"setDefaultDpAddressResult": 0}

    monkeypatch.setitem(es10a.HANDLERS, "SetDefaultDpAddressRequest", late)
    command = Command("late", set_default_dp_address("smdp.new.example"))
    with pytest.raises(AssertionError, match="effects after the commit point"):
        crash_everywhere(cards, tmp_path, command, torn=False)


# --- card creation --------------------------------------------------------------------------


def _create_with(io: FileIO, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Euicc.create`` with its storage on ``io`` (create builds its storage itself)."""

    def storage(directory: Any, *, fsync: bool = True) -> DirectoryStorage:
        return DirectoryStorage(directory, fsync=fsync, io=io)

    with monkeypatch.context() as m:
        m.setattr(card_module, "DirectoryStorage", storage)
        Euicc.create(path).close()


@pytest.mark.parametrize("torn", [False, True], ids=["clean-cut", "torn-write"])
def test_crash_during_create_leaves_no_half_made_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, torn: bool
) -> None:
    """Until its first state is committed a directory is no card: open says so clearly, and
    create may simply be run again; from the commit on it is a complete, usable card."""
    counter = CrashingIO()
    _create_with(counter, tmp_path / "count", monkeypatch)
    log = counter.log
    state_file = os.path.join(tmp_path / "count", STATE_FILE)
    commit = next(i for i, e in enumerate(log) if e.endswith(f"-> {state_file}"))
    assert commit == len(log) - 2  # the first commit is the last thing create does
    for k in range(len(log)):
        path = tmp_path / f"crash{k}"
        with pytest.raises(SimulatedCrash):
            _create_with(CrashingIO(k, torn_writes=torn), path, monkeypatch)
        if k <= commit:
            with pytest.raises(CardError, match="holds no card|never completely created"):
                Euicc.open(path)
            card = Euicc.create(path)
        else:
            with pytest.raises(CardError, match="already holds a card"):
                Euicc.create(path)
            card = Euicc.open(path)
        assert card.state == CardState(root_ds_address=card.config.root_ds_address)
        check_usable(card, path)
