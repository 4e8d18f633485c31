"""SGP.32 v1.0.1 beside v1.2: every wire difference the project handles, as a test pair (the
same case in both versions), then the pull flow end to end in both.

Parts: the protocol package (both modules compiled, the same decode rules), the card
(``CardConfig.iot_versions``, :mod:`euicc_sim.iot_v1_0`), the IPAd's ES10 and ESipa messages
(:mod:`ipa.esipa_messages`, :mod:`ipa.ipa_data`), the IPAd's version choice
(:mod:`ipa.pull.startup`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_ipa_pull import ICCID_B, NOTIFY, PKG_A, PKG_B, TS48, Signer, _seq, enabled

from euicc_protocol import schema, tlv
from euicc_sim.card import Euicc
from euicc_sim.config import IOT_VERSIONS, CardConfig
from ipa import es10_iot
from ipa.errors import Es10Error, StatusWordError
from ipa.es10 import Es10Client
from ipa.esipa import EsipaClient, EsipaConfig
from ipa.esipa_messages import (
    epr_and_notifications,
    get_eim_package_request,
    handle_notification_request,
    initiate_authentication_request,
    package_result_error,
    profile_download_trigger_result,
    provide_eim_package_result,
)
from ipa.ipa_data import build_ipa_euicc_data
from ipa.pull import Backoff, PullConfig, PullFlow
from ipa.pull.startup import card_sgp32_version
from ipa.sgp32 import Sgp32Version, version_of
from ipa.transport import InProcessTransport

H = bytes.fromhex
VERSIONS = ("1.0", "1.2")
OTHER = {"1.0": "1.2", "1.2": "1.0"}
EID = H("89049032123451234512345678901235")


def make_card(version: str, signer: Signer | None = None, **eim: Any) -> Euicc:
    """Profiles A (enabled) and B, asking for notifications; ``signer`` added as the eIM."""
    config = CardConfig(eid="0" * 32, iot_versions=IOT_VERSIONS[version])
    card = Euicc.create(None, config=config)
    card.preload((TS48 / PKG_A).read_bytes(), notification_address=NOTIFY, enable=True)
    card.preload((TS48 / PKG_B).read_bytes(), notification_address=NOTIFY)
    if signer is not None:
        value = signer.configuration() | eim
        with Es10Client.open(InProcessTransport(card)) as client:
            (token,) = es10_iot.add_initial_eim(client, [value])
        signer.token = token
    return card


def exchange(card: Euicc, request: bytes) -> bytes:
    with Es10Client.open(InProcessTransport(card)) as client:
        return client.exchange(request)


def decodes(type_name: str, data: bytes, version: str) -> bool:
    try:
        schema.decode(type_name, data, sgp32=version)
    except schema.DecodeError:
        return False
    return True


def alternative(type_name: str, data: bytes, version: str) -> str | None:
    """The CHOICE alternative ``data`` decodes to (None: an unknown one, or no decode)."""
    try:
        value = schema.decode(type_name, data, sgp32=version)
    except schema.DecodeError:
        return None
    if isinstance(value, dict):  # v1.2 ProvideEimPackageResult: the CHOICE is a field
        value = value["eimPackageResult"]
    return str(value[0]) if value[0] is not None else None


# -- the protocol package -------------------------------------------------------------------------


def test_both_modules_are_compiled_side_by_side() -> None:
    for version in VERSIONS:
        assert schema.has_type("EuiccPackageRequest", sgp32=version)
    assert schema.has_type("ImmediateEnableRequest", sgp32="1.2")
    assert not schema.has_type("ImmediateEnableRequest", sgp32="1.0")
    assert schema.has_type("EnableUsingDDRequest", sgp32="1.0")
    with pytest.raises(ValueError, match="not one of"):
        schema.spec("1.1")


@pytest.mark.parametrize("version", VERSIONS)
def test_the_same_strict_rules_apply_to_both_modules(version: str) -> None:
    good = H("BF4F125A10") + EID
    assert schema.decode("GetEimPackageRequest", good, sgp32=version)["eidValue"] == EID
    for bad in (good + b"\x00", good[:-1], H("BF50125A10") + EID):
        with pytest.raises(schema.DecodeError):
            schema.decode("GetEimPackageRequest", bad, sgp32=version)


@pytest.mark.parametrize("version", VERSIONS)
def test_psmo_configure_auto_enable_is_configure_immediate_enable_renamed(version: str) -> None:
    names = {
        "1.0": ("configureAutoEnable", {"autoEnableFlag": None, "smdpAddress": "dp.example"}),
        "1.2": (
            "configureImmediateEnable",
            {"immediateEnableFlag": None, "defaultSmdpAddress": "dp.example"},
        ),
    }
    tid = "transactionId" if version == "1.0" else "eimTransactionId"
    value = {"eimId": "e", "eidValue": EID, "counterValue": 1, tid: b"\x01",
             "euiccPackage": ("psmoList", [names[version]])}  # fmt: skip
    encoded = schema.encode("EuiccPackageSigned", value, sgp32=version)
    assert H("A70E8000820A") + b"dp.example" in encoded  # same tag A7, same field tags
    other = schema.decode("EuiccPackageSigned", encoded, sgp32=OTHER[version])
    assert other["euiccPackage"][1] == [names[OTHER[version]]]


@pytest.mark.parametrize("version", VERSIONS)
def test_fallback_psmos_exist_only_in_v1_2(version: str) -> None:
    psmo = ("psmoList", [("unsetFallbackAttribute", {})])
    value = {"eimId": "e", "eidValue": EID, "counterValue": 1, "euiccPackage": psmo}
    if version == "1.2":
        assert schema.encode("EuiccPackageSigned", value, sgp32=version)
    else:
        with pytest.raises(schema.EncodeError):
            schema.encode("EuiccPackageSigned", value, sgp32=version)


@pytest.mark.parametrize("version", VERSIONS)
def test_notification_and_epr_list_exists_only_in_v1_0(version: str) -> None:
    both = H("BF2B06A304A000A100")
    found = alternative("SGP32-RetrieveNotificationsListResponse", both, version)
    assert (found == "notificationAndEprList") is (version == "1.0")


# -- the card -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_euicc_info2_announces_the_card_version(version: str) -> None:
    card = make_card(version)
    info = schema.decode("SGP32-EUICCInfo2", exchange(card, H("BF2200")), sgp32=version)
    iot = info["iotSpecificInfo"]
    assert iot["iotVersion"] == [bytes(v) for v in IOT_VERSIONS[version]]
    assert ("fallbackSupported" in iot) is (version == "1.2")
    with Es10Client.open(InProcessTransport(card)) as client:
        assert card_sgp32_version(client) == Sgp32Version(version)


def test_version_of_picks_v1_0_only_when_nothing_newer_is_announced() -> None:
    assert version_of([H("010001")]) is Sgp32Version.V1_0
    assert version_of([H("010001"), H("010200")]) is Sgp32Version.V1_2
    assert version_of([H("010300")]) is Sgp32Version.V1_2
    assert version_of([]) is Sgp32Version.V1_2


@pytest.mark.parametrize("version", VERSIONS)
def test_memory_reset_of_the_eim_configuration(version: str) -> None:
    signer = Signer()
    card = make_card(version, signer)
    # resetEimConfigData is bit 3 in v1.0.1 (BF34), bit 5 in v1.2 (BF64)
    own, other = ("BF34", "BF64") if version == "1.0" else ("BF64", "BF34")
    bits = H("820204" + "10") if version == "1.0" else H("820202" + "04")  # DER: no trailing 0s
    # v1.0.1 has no BF64; a v1.2 IoT card does not answer the SGP.22 form BF34 either.
    with pytest.raises(StatusWordError):
        exchange(card, H(other) + bytes([len(bits)]) + bits)
    assert card.state.eim_configs != ()
    answer = exchange(card, H(own) + bytes([len(bits)]) + bits)
    decoded = schema.decode("SGP32-EuiccMemoryResetResponse", answer, sgp32=version)
    assert decoded["resetEimResult"] == 0
    assert card.state.eim_configs == ()


def test_v1_0_reset_bit_3_is_not_v1_2s_delete_preloaded_test_profiles() -> None:
    card = make_card("1.0", Signer())
    profiles = len(card.state.profiles)
    exchange(card, H("BF3404820204" + "10"))  # resetEimConfigData (bit 3 in v1.0.1)
    assert len(card.state.profiles) == profiles and card.state.eim_configs == ()


@pytest.mark.parametrize("version", VERSIONS)
def test_enable_using_dd_and_immediate_enable(version: str) -> None:
    card = make_card(version)
    with Es10Client.open(InProcessTransport(card)) as client:
        own = es10_iot.enable_using_dd if version == "1.0" else es10_iot.immediate_enable
        other = es10_iot.immediate_enable if version == "1.0" else es10_iot.enable_using_dd
        with pytest.raises(Es10Error) as refused:  # not configured: the same code in both
            own(client)
        assert refused.value.code == 1
        with pytest.raises((StatusWordError, Es10Error)):  # the other form does not decode
            other(client)


@pytest.mark.parametrize("tag", ["BF5B", "BF5C", "BF5D", "BF5E", "BF5F", "BF42", "BF65"])
@pytest.mark.parametrize("version", VERSIONS)
def test_v1_2_functions_are_answered_only_by_a_v1_2_card(version: str, tag: str) -> None:
    card = make_card(version)
    request = H(tag) + b"\x00"
    if version == "1.0":
        with pytest.raises(StatusWordError) as sw:
            exchange(card, request)
        assert sw.value.sw == 0x6A88
    else:
        try:
            exchange(card, request)
        except StatusWordError as exc:
            assert exc.sw != 0x6A88  # known (maybe refused as malformed), not unsupported


@pytest.mark.parametrize("version", VERSIONS)
def test_unsigned_package_error_carries_the_transaction_id_only_in_v1_2(version: str) -> None:
    card = make_card(version, Signer())
    stranger = Signer(eim_id="stranger")
    package = stranger.package(H(card.eid), [("getRAT", {})], tid=b"\x42")
    answer = exchange(card, package)
    kind, value = schema.decode("EuiccPackageResult", answer, sgp32=version)
    assert kind == "euiccPackageErrorUnsigned"
    tid = value.get("eimTransactionId", value.get("transactionId"))
    assert tid == (b"\x42" if version == "1.2" else None)


@pytest.mark.parametrize("version", VERSIONS)
def test_indirect_profile_download_is_configured_only_in_v1_2(version: str) -> None:
    signer = Signer(indirect=True)
    card = make_card(version, signer)
    with Es10Client.open(InProcessTransport(card)) as client:
        (config,) = es10_iot.get_eim_configuration_data(client)
    assert config.indirect_profile_download is (version == "1.2")
    assert decodes("EimConfigurationData", config.raw, version)


@pytest.mark.parametrize("version", VERSIONS)
def test_get_eim_configuration_data_search_criteria_only_in_v1_2(version: str) -> None:
    first, second = Signer(), Signer(eim_id="eim2.test", fqdn="eim2.test")
    card = make_card(version)
    with Es10Client.open(InProcessTransport(card)) as client:
        es10_iot.add_initial_eim(client, [first.configuration(), second.configuration()])
        found = es10_iot.get_eim_configuration_data(client, "eim2.test")
    expected = ["eim2.test"] if version == "1.2" else ["eim1.test", "eim2.test"]
    assert [c.eim_id for c in found] == expected


# -- the IPAd's ESipa messages --------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_get_eim_package_request(version: str) -> None:
    message = get_eim_package_request(
        EID, state_change_cause=1, rplmn=b"\x21\xf3\x54", sgp32=version
    )
    decoded = schema.decode("GetEimPackageRequest", message, sgp32=version)
    assert decoded["rPLMN"] == b"\x21\xf3\x54"
    if version == "1.0":  # rPLMN [1]; no stateChangeCause, notifyStateChange says it
        assert message.endswith(H("8000810321F354")) and "notifyStateChange" in decoded
    else:
        assert message.endswith(H("810101820321F354")) and decoded["stateChangeCause"] == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_provide_eim_package_result(version: str) -> None:
    epr = H("BF5108A206800465696D31")  # euiccPackageErrorUnsigned {eimId "eim1"}
    note = H("3000")  # shape only: a PendingNotification TLV
    combined = epr_and_notifications(epr, [note], version)
    listed = H("BF2B04A0023000") if version == "1.0" else H("A0023000")
    assert combined == tlv.encode_tlv(b"\x30", epr + listed)
    message = provide_eim_package_result(combined, EID, sgp32=version)
    if version == "1.0":  # BF50 is the CHOICE itself; no eidValue
        assert message == tlv.encode_tlv(b"\xbf\x50", combined)
    else:
        assert message == tlv.encode_tlv(b"\xbf\x50", tlv.encode_tlv(b"\x5a", EID) + combined)
    error = package_result_error(1, b"\x07", version)
    assert error == (H("020101") if version == "1.0" else H("A006800107020101"))
    sent = provide_eim_package_result(error, None, version)
    names = {"1.0": "eimPackageError", "1.2": "eimPackageResultResponseError"}
    assert alternative("ProvideEimPackageResult", sent, version) == names[version]
    assert alternative("ProvideEimPackageResult", sent, OTHER[version]) is None


@pytest.mark.parametrize("version", VERSIONS)
def test_provide_eim_package_result_answers(version: str) -> None:
    """v1.0.1: SEQUENCE { [BF53] } ("BF50 00" when empty); v1.2: a CHOICE ("BF50 02 30 00")."""
    empty = H("BF5000") if version == "1.0" else H("BF50023000")
    acks = H("BF5009BF5306800101800102")
    answers = [empty, acks]
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=answers.pop(0)))

    async def run() -> list[tuple[int, ...]]:
        async with EsipaClient(
            "http://eim.test", EsipaConfig(transport=transport), sgp32=version
        ) as client:
            return [await client.provide_eim_package_result(H("020101")
                                                            if version == "1.0"
                                                            else H("A003020101"))
                    for _ in range(2)]  # fmt: skip

    assert asyncio.run(run()) == [(), (1, 2)]


@pytest.mark.parametrize("version", VERSIONS)
def test_handle_notification_of_a_result(version: str) -> None:
    wrapped = provide_eim_package_result(H("BF5108A206800465696D31"), None, version)
    message = handle_notification_request(wrapped, version)
    kind, _ = schema.decode("HandleNotificationEsipa", message, sgp32=version)
    assert kind == "provideEimPackageResult"
    assert message[3:4] == (b"\xa1" if version == "1.0" else b"\xbf")


@pytest.mark.parametrize("version", VERSIONS)
def test_initiate_authentication_carries_eim_transaction_id_only_in_v1_2(version: str) -> None:
    message = initiate_authentication_request(bytes(16), eim_transaction_id=b"\x09", sgp32=version)
    decoded = schema.decode("InitiateAuthenticationRequestEsipa", message, sgp32=version)
    assert ("eimTransactionId" in decoded) is (version == "1.2")


@pytest.mark.parametrize("version", VERSIONS)
def test_profile_download_error_has_a_reason_only_in_v1_2(version: str) -> None:
    result = profile_download_trigger_result(error_reason=127, sgp32=version)
    _, error = schema.decode("ProfileDownloadTriggerResult", result, sgp32=version)[
        "profileDownloadTriggerResultData"
    ]
    assert error == ({} if version == "1.0" else {"profileDownloadErrorReason": 127})


@pytest.mark.parametrize("version", VERSIONS)
def test_ipa_euicc_data_in_each_version(version: str) -> None:
    signer = Signer()
    card = make_card(version, signer)
    exchange(card, signer.package(H(card.eid), [("enable", {"iccid": ICCID_B})]))
    if version == "1.0":
        request = schema.encode("IpaEuiccDataRequest", {"tagList": H("BF2B8084A8")}, sgp32=version)
        order = [H("84"), H("A8"), H("BF2B")]
    else:
        request = schema.encode(
            "IpaEuiccDataRequest", {"tagList": H("A0818487A8"), "eimTransactionId": b"\x05"}
        )
        order = [H("A0"), H("84"), H("87"), H("A8")]  # no default SM-DP+ address: left out
    with Es10Client.open(InProcessTransport(card)) as client:
        answer = build_ipa_euicc_data(client, request, eim_id=signer.eim_id, sgp32=version)
    kind, data = schema.decode("IpaEuiccDataResponse", answer.raw, sgp32=version)
    assert kind == "ipaEuiccData" and answer.seq_numbers == (1, 2)
    inner = tlv.read_tlv(answer.raw, tlv.read_tlv(answer.raw).value_start)
    tags = [t.tag for t in tlv.iter_tlvs(answer.raw, inner.value_start, inner.value_end)]
    assert tags == order
    listed = data["notificationsList"][1] if version == "1.0" else data["notificationsList"]
    assert [_seq(n) for n in listed] == [1, 2]


@pytest.mark.parametrize("version", VERSIONS)
def test_ipa_euicc_data_tag_list_of_the_other_version_is_incorrect(version: str) -> None:
    card = make_card(version, Signer())
    other_tag = H("A0") if version == "1.0" else H("BF2B")
    request = schema.encode("IpaEuiccDataRequest", {"tagList": other_tag}, sgp32=version)
    with Es10Client.open(InProcessTransport(card)) as client:
        answer = build_ipa_euicc_data(client, request, sgp32=version)
    assert answer.error is not None and int(answer.error) == 1
    assert answer.raw == (H("BF5203810101") if version == "1.0" else H("BF5205A103020101"))


# -- the pull flow end to end in both versions ----------------------------------------------------


@dataclass
class VersionedEim:
    """An ESipa (ASN.1) eIM speaking one version: decodes every request with that version's
    module, answers in it; acknowledges the notifications of ePRAndNotifications."""

    version: str
    queue: list[bytes] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)
    notifications: list[Any] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        message, v = request.content, self.version
        kind, value = schema.decode("EsipaMessageFromIpaToEim", message, sgp32=v)
        self.log.append(kind)
        if kind == "getEimPackageRequest":
            if not self.queue:
                return httpx.Response(200, content=H("BF4F03020101"))
            return httpx.Response(200, content=tlv.encode_tlv(b"\xbf\x4f", self.queue.pop(0)))
        if kind == "handleNotificationEsipa":
            self.notifications.append(value)
            return httpx.Response(204)
        assert kind == "provideEimPackageResult"
        result = value if v == "1.0" else value["eimPackageResult"]
        self.results.append(result)
        acks = [_seq(n) for n in _notifications(result, v)]
        if acks:
            answer = {"eimAcknowledgements": acks} if v == "1.0" else ("eimAcknowledgements", acks)
        else:
            answer = {} if v == "1.0" else ("emptyResponse", {})
        return httpx.Response(
            200, content=schema.encode("ProvideEimPackageResultResponse", answer, sgp32=v)
        )


def _notifications(result: tuple[str, Any], version: str) -> list[Any]:
    kind, value = result
    if kind != "ePRAndNotifications":
        return []
    listed = value["notificationList"]
    return listed[1] if version == "1.0" else listed


def pull(card: Euicc, eim: VersionedEim, tmp_path: Path, **options: Any) -> Any:
    config = PullConfig(
        eim_url="http://eim.test",
        esipa=EsipaConfig(transport=httpx.MockTransport(eim.handle)),
        backoff=Backoff(jitter=0.0),
        **options,
    )

    async def run() -> Any:
        with Es10Client.open(InProcessTransport(card)) as client:
            flow = PullFlow(client, config, state_dir=tmp_path, sleep=_no_sleep)
            try:
                return flow, await flow.poll_once()
            finally:
                await flow.aclose()

    return asyncio.run(run())


async def _no_sleep(seconds: float) -> None:
    return None


@pytest.mark.parametrize("version", VERSIONS)
def test_the_pull_flow_end_to_end(version: str, tmp_path: Path) -> None:
    signer = Signer()
    card = make_card(version, signer)
    eid = H(card.eid)
    data_request = (
        schema.encode("IpaEuiccDataRequest", {"tagList": H("BF2B84")}, sgp32="1.0")
        if version == "1.0"
        else schema.encode("IpaEuiccDataRequest", {"tagList": H("A084")})
    )
    package = signer.package(eid, [("enable", {"iccid": ICCID_B})], tid=b"\x11")
    assert decodes("EuiccPackageRequest", package, version)
    eim = VersionedEim(version, queue=[package, data_request])
    flow, outcome = pull(card, eim, tmp_path)
    assert str(flow.sgp32) == version  # followed the card's iotVersion
    assert outcome.ok and [p.delivered for p in outcome.packages] == [True, True]
    assert enabled(card) == ICCID_B
    assert eim.log == ["getEimPackageRequest", "provideEimPackageResult"] * 2 + [
        "getEimPackageRequest"
    ]
    kind, value = eim.results[0]
    assert kind == "ePRAndNotifications"
    signed = value["euiccPackageResult"][1]["euiccPackageResultDataSigned"]
    tid = signed.get("eimTransactionId", signed.get("transactionId"))
    assert tid == b"\x11" and signed["euiccResult"] == [("enableResult", 0)]
    assert eim.results[1][0] == "ipaEuiccDataResponse"
    with Es10Client.open(InProcessTransport(card)) as client:
        assert client.retrieve_notifications_list() == []  # acknowledged, removed


@pytest.mark.parametrize("version", VERSIONS)
def test_sgp32_overrides_the_card_version(version: str, tmp_path: Path) -> None:
    signer = Signer()
    card = make_card(OTHER[version], signer)
    eim = VersionedEim(version, queue=[signer.package(H(card.eid), [("getRAT", {})])])
    flow, outcome = pull(card, eim, tmp_path, sgp32=version)
    assert str(flow.sgp32) == version and outcome.ok
    assert eim.results[0][0] == "euiccPackageResult"


# -- the command line -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_cli_init_and_poll_in_each_version(
    version: str, tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    from euicc_cli import ipa_command, sim_command
    from ipa import esipa

    card_dir = tmp_path / "card"
    assert sim_command.main(["init", str(card_dir), "--sgp32", version]) == 0
    assert f"(SGP.32 {version})" in capsys.readouterr().out
    card = Euicc.open(card_dir)
    assert card.config.iot_versions == IOT_VERSIONS[version]
    signer = Signer()
    with Es10Client.open(InProcessTransport(card)) as client:
        es10_iot.add_initial_eim(client, [signer.configuration()])
    card.close()  # the command opens the card itself (one owner per card directory)
    eim = VersionedEim(version)
    monkeypatch.setattr(
        esipa.EsipaConfig,
        "http_client",
        lambda self: httpx.AsyncClient(transport=httpx.MockTransport(eim.handle)),
    )
    argv = ["--card", str(card_dir), "--json", "poll", "--once", "--eim-url", "http://eim.test"]
    assert ipa_command.main(argv) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[0])  # JSON Lines: the poll event
    assert (out["sgp32"], out["setAside"]) == (version, {"results": [], "notifications": []})
    assert eim.log == ["getEimPackageRequest"]
    override = argv + ["--sgp32", OTHER[version]]
    eim.version = OTHER[version]
    assert ipa_command.main(override) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["sgp32"] == OTHER[version]


# -- the reference eIM: a version per eUICC, end to end over HTTPS -------------------------------

from test_ipa_pull import (  # noqa: E402 - the servers fixture and its helpers
    EIM_MISSING,
    Servers,
    _iccid,
    e2e_poll,
    needs_eim,
    servers,
)

__all__ = ["servers"]  # a fixture used by the tests below


def _done(servers: Servers, order: int) -> Any:
    return servers.state(order)


@needs_eim
@pytest.mark.parametrize("version", VERSIONS)
def test_e2e_the_reference_eim_answers_each_euicc_in_its_version(
    servers: Servers, version: str
) -> None:
    card = make_card(version)
    initial = servers.provision(card, sgp32=version)
    assert servers.eim.core.store.euicc(card.eid).to_json()["sgp32"] == version
    enable = servers.order(
        card, {"type": "psmo", "operations": [{"enable": {"iccid": _iccid(PKG_B)}}]}
    )
    data = servers.order(card, {"type": "euiccData", "tagList": "A084"})
    outcome = e2e_poll(card, initial)
    assert outcome.ok, outcome.error
    assert all(p.delivered for p in outcome.packages)
    assert enabled(card) == ICCID_B
    done = _done(servers, enable)
    assert (done.state, done.verified) == ("done", True)
    assert _done(servers, data).state == "done"
    with Es10Client.open(InProcessTransport(card)) as client:
        assert client.retrieve_notifications_list() == []  # acknowledged in either version


@needs_eim
def test_e2e_the_eim_learns_a_v1_0_euicc_from_its_euicc_info2(servers: Servers) -> None:
    card = make_card("1.0")
    initial = servers.provision(card)  # no version given: v1.2 until learnt
    order = servers.order(card, {"type": "euiccData", "tagList": "BF22"})
    outcome = e2e_poll(card, initial)
    assert outcome.ok, outcome.error
    assert _done(servers, order).state == "done"
    record = servers.eim.core.store.euicc(card.eid).to_json()
    assert (record["sgp32"], record["sgp32Source"]) == ("1.0", "euiccInfo2")
    enable = servers.order(
        card, {"type": "psmo", "operations": [{"enable": {"iccid": _iccid(PKG_B)}}]}
    )
    assert e2e_poll(card).ok
    assert _done(servers, enable).verified and enabled(card) == ICCID_B


@needs_eim
def test_e2e_a_v1_2_operation_is_not_sent_to_a_v1_0_euicc(servers: Servers) -> None:
    card = make_card("1.0")
    initial = servers.provision(card, sgp32="1.0")
    order = servers.order(card, {"type": "psmo", "operations": [{"unsetFallbackAttribute": {}}]})
    outcome = e2e_poll(card, initial)
    assert outcome.ok, outcome.error
    failed = _done(servers, order)
    assert failed.state == "failed" and "v1.0.1" in failed.error


def test_the_eim_fixture_is_there_or_skipped_for_a_reason() -> None:
    assert EIM_MISSING == "" or "eIM" in EIM_MISSING
