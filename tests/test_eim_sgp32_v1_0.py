"""euicc_servers.eim.sgp32_v1_0: a v1.0.1 IPAd's messages in their v1.2 form and back.

The IPAd's own builders (``ipa.esipa_messages``, ``ipa.ipa_data``) make each message in both
versions; rewriting the v1.0.1 one must give exactly the v1.2 one (without the v1.2-only
eidValue), and every signed TLV inside must come out byte for byte.
"""

from __future__ import annotations

import pytest
from test_ipa_pull import ICCID_B, Signer
from test_sgp32_versions import EID, make_card

from euicc_protocol import schema, tlv
from euicc_servers.eim.sgp32_v1_0 import (
    NotInV1_0,
    answer_to_v1_0,
    looks_v1_0,
    package_to_v1_0,
    request_to_v1_2,
)
from ipa.es10 import Es10Client
from ipa.esipa_messages import (
    epr_and_notifications,
    get_eim_package_request,
    handle_notification_request,
    package_result_error,
    profile_download_trigger_result,
    provide_eim_package_result,
)
from ipa.ipa_data import build_ipa_euicc_data
from ipa.transport import InProcessTransport

H = bytes.fromhex
EPR = H("BF5108A206800465696D31")
NOTE = H("3000")


def both(build: object, *args: object, **kwargs: object) -> tuple[bytes, bytes]:
    return build(*args, **kwargs, sgp32="1.0"), build(*args, **kwargs, sgp32="1.2")  # type: ignore[operator]


def test_get_eim_package_request_rplmn_moves_to_its_v1_2_tag() -> None:
    old, new = both(get_eim_package_request, EID, notify_state_change=True, rplmn=H("21F354"))
    assert request_to_v1_2(old) == new
    assert schema.decode("GetEimPackageRequest", new)["rPLMN"] == H("21F354")


@pytest.mark.parametrize(
    "result",
    [
        lambda v: EPR,
        lambda v: epr_and_notifications(EPR, [NOTE], v),
        lambda v: package_result_error(1, sgp32=v),
        lambda v: profile_download_trigger_result(
            error_reason=127, error_response=H("BF3B03820101"), sgp32=v
        ),
        lambda v: profile_download_trigger_result(
            profile_installation_result=H("BF3700"), eim_transaction_id=b"\x01", sgp32=v
        ),
    ],
    ids=["epr", "epr-and-notifications", "error", "download-error", "download-result"],
)
def test_provide_eim_package_result_in_its_v1_2_form(result: object) -> None:
    old = provide_eim_package_result(result("1.0"), None, "1.0")  # type: ignore[operator]
    new = provide_eim_package_result(result("1.2"), None, "1.2")  # type: ignore[operator]
    assert request_to_v1_2(old) == new
    assert EPR not in old or EPR in request_to_v1_2(old)  # the signed TLV as it came


def test_a_result_in_handle_notification() -> None:
    old = handle_notification_request(provide_eim_package_result(EPR, None, "1.0"), "1.0")
    new = handle_notification_request(provide_eim_package_result(EPR, None, "1.2"), "1.2")
    assert request_to_v1_2(old) == new


def test_ipa_euicc_data_from_a_v1_0_ipad_reads_as_v1_2() -> None:
    signer = Signer()
    card = make_card("1.0", signer)
    with Es10Client.open(InProcessTransport(card)) as client:
        client.set_default_dp_address("dp.example")
        old_request = schema.encode("IpaEuiccDataRequest", {"tagList": H("BF2B8084")}, sgp32="1.0")
        new_request = schema.encode("IpaEuiccDataRequest", {"tagList": H("A08184")})
        client.exchange(signer.package(H(card.eid), [("enable", {"iccid": ICCID_B})]))
        old = build_ipa_euicc_data(client, old_request, eim_id=signer.eim_id, sgp32="1.0").raw
        new = build_ipa_euicc_data(client, new_request, eim_id=signer.eim_id).raw
    assert old != new
    rewritten = request_to_v1_2(provide_eim_package_result(old, None, "1.0"))
    assert rewritten == provide_eim_package_result(new, None, "1.2")
    error = request_to_v1_2(provide_eim_package_result(H("BF5203810101"), None, "1.0"))
    assert error == provide_eim_package_result(H("BF5205A103020101"), None, "1.2")


def test_unchanged_messages_pass_through() -> None:
    cancel = H("BF410980020102A103810105")  # CancelSessionRequestEsipa
    eim_package = get_eim_package_request(EID, sgp32="1.0")  # no rPLMN: as in v1.2
    for message in (cancel, eim_package):
        assert request_to_v1_2(message) == message


# -- answers and packages -------------------------------------------------------------------------


def test_provide_eim_package_result_answers() -> None:
    assert answer_to_v1_0(H("BF50023000")) == H("BF5000")
    acks = H("BF5009BF5306800101800102")
    assert answer_to_v1_0(acks) == acks
    assert schema.decode("ProvideEimPackageResultResponse", acks, sgp32="1.0")
    with pytest.raises(NotInV1_0):
        answer_to_v1_0(H("BF5003020102"))  # eidNotFound: no v1.0.1 form


def test_an_ipa_euicc_data_request_for_a_v1_0_ipad() -> None:
    request = schema.encode(
        "IpaEuiccDataRequest",
        {"tagList": H("A0818487"), "eimTransactionId": b"\x05",
         "searchCriteriaNotification": ("seqNumber", 3)},
    )  # fmt: skip
    answer = answer_to_v1_0(tlv.encode_tlv(b"\xbf\x4f", request))
    decoded = schema.decode("GetEimPackageResponse", answer, sgp32="1.0")
    kind, value = decoded
    assert kind == "ipaEuiccDataRequest"
    assert value == {"tagList": H("BF2B8084"), "searchCriteria": ("seqNumber", 3)}
    results_only = schema.encode("IpaEuiccDataRequest", {"tagList": H("A2")})
    value = schema.decode("IpaEuiccDataRequest", package_to_v1_0(results_only), sgp32="1.0")
    assert value == {"tagList": H("BF2B"), "searchCriteria": ("euiccPackageResults", None)}
    with pytest.raises(NotInV1_0):
        package_to_v1_0(schema.encode("IpaEuiccDataRequest", {"tagList": H("87")}))


def test_a_package_v1_2_added_operations_to_is_refused_for_v1_0() -> None:
    signer = Signer()
    good = signer.package(EID, [("getRAT", {})])
    assert package_to_v1_0(good) == good
    with pytest.raises(NotInV1_0, match="unsetFallbackAttribute"):
        package_to_v1_0(signer.package(EID, [("unsetFallbackAttribute", {})]))


def test_which_version_a_result_without_eid_looks_like() -> None:
    def shape(result: bytes, version: str) -> bool | None:
        return looks_v1_0(provide_eim_package_result(result, None, version))

    assert shape(EPR, "1.0") is None and shape(EPR, "1.2") is None  # the same bytes
    with_notes = [epr_and_notifications(EPR, [NOTE], v) for v in ("1.0", "1.2")]
    assert (shape(with_notes[0], "1.0"), shape(with_notes[1], "1.2")) == (True, False)
    errors = [package_result_error(1, sgp32=v) for v in ("1.0", "1.2")]
    assert (shape(errors[0], "1.0"), shape(errors[1], "1.2")) == (True, False)
    assert looks_v1_0(provide_eim_package_result(EPR, EID, "1.2")) is False
    wrapped = provide_eim_package_result(EPR, None, "1.0")
    assert looks_v1_0(handle_notification_request(wrapped, "1.0")) is True


@pytest.mark.parametrize("tag_list", ["5A", "BF2D", "A0BF2D", ["euiccInfo2", "5A"]])
def test_the_eim_never_asks_for_what_ipaeuiccdata_does_not_hold(tag_list: object) -> None:
    """IPAds in the field answer incorrectTagList to the EID or the profile list."""
    from euicc_servers.eim.packages import PackageError, tag_list_from_json

    with pytest.raises(PackageError, match="tagList"):
        tag_list_from_json(tag_list)
    assert tag_list_from_json("A084BF22") == H("A084BF22")
