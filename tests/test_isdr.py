"""ISD-R dispatch, fed straight through the card OS: every supported ES10 request answers with
its response type, and no input at all (valid, random or damaged) makes the card fail with
6F00 or an exception."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import strategy_for

from euicc_protocol import es10, schema
from euicc_sim.card import Euicc
from euicc_sim.isdr import ISDR_AID

TS48 = Path(__file__).resolve().parent.parent / "profiles" / "ts48"
# Functions whose requests need a download session (issue 3) or an eIM (issue 4).
LATER = {"BoundProfilePackage"}


@pytest.fixture(scope="module")
def card() -> Euicc:
    card = Euicc.create(None, kind="consumer")
    card.preload((TS48 / "TS48V1-A-UNIQUE.der").read_bytes(), notification_address="a.example")
    card.preload((TS48 / "TS48V1-B-UNIQUE.der").read_bytes(), enable=True)
    return card


def store_data(card: Euicc, request: bytes) -> tuple[bytes, int]:
    """Send one ES10 request on the basic channel (ISD-R selected); return (data, SW)."""
    card.reset()
    select = bytes([0x00, 0xA4, 0x04, 0x00, len(ISDR_AID)]) + ISDR_AID
    assert card.transmit(select)[-2] == 0x61
    data = b""
    blocks = [request[i : i + 255] for i in range(0, len(request), 255)] or [b""]
    for n, block in enumerate(blocks):
        last = n == len(blocks) - 1
        response = card.transmit(bytes([0x80, 0xE2, 0x91 if last else 0x11, n, len(block)]) + block)
        if not last:
            assert response == b"\x90\x00"
    sw = int.from_bytes(response[-2:], "big")
    while sw >> 8 == 0x61:
        response = card.transmit(bytes([0x00, 0xC0, 0x00, 0x00, sw & 0xFF]))
        data += response[:-2]
        sw = int.from_bytes(response[-2:], "big")
    return data, sw


def answered(card: Euicc) -> dict[bytes, es10.Es10Function]:
    functions = {**es10.catalogue_for("sgp22"), **es10.catalogue_for("sgp32")}
    return {t: f for t, f in functions.items() if bytes(t) in set(card.isdr.supported_tags())}


def test_isdr_answers_every_issue_2_function(card: Euicc) -> None:
    iot = Euicc.create(None, kind="iot")
    names = {f.name for f in (answered(card) | answered(iot)).values()}
    expected = {
        "GetEuiccConfiguredAddresses", "SetDefaultDpAddress", "GetEUICCInfo1", "GetEUICCInfo2",
        "GetEUICCChallenge", "GetRAT", "ListNotification", "RetrieveNotificationsList",
        "RemoveNotificationFromList", "GetCerts", "GetProfilesInfo", "EnableProfile",
        "DisableProfile", "DeleteProfile", "SetNickname", "GetEID", "EuiccMemoryReset",
    }  # fmt: skip
    missing = {n for n in expected if not any(n in name for name in names)}
    assert not missing


def test_unknown_tag_is_6a88_and_garbage_is_6a80(card: Euicc) -> None:
    assert store_data(card, bytes.fromhex("BF7F00"))[1] == 0x6A88
    assert store_data(card, bytes.fromhex("BF3E05"))[1] == 0x6A80  # length runs past the end
    assert store_data(card, bytes.fromhex("BF3E035C025A"))[1] == 0x6A80


@pytest.mark.parametrize(
    "tag", sorted(es10.catalogue_for("sgp32")), ids=lambda t: bytes(t).hex().upper()
)
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_valid_request_gets_its_response_type(
    card: Euicc, tag: bytes, data: st.DataObject
) -> None:
    function = answered(card).get(tag) or es10.catalogue_for("sgp32")[tag]
    if function.request_type in LATER or bytes(tag) not in card.isdr.supported_tags():
        return  # not answered by this card yet: covered by test_unknown_tag...
    value: Any = data.draw(strategy_for(function.request_type))
    response, sw = store_data(card, schema.encode(function.request_type, value))
    assert sw == 0x9000
    schema.decode(function.response_type, response)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=st.binary(max_size=600))
def test_random_store_data_never_breaks_the_card(card: Euicc, payload: bytes) -> None:
    if not payload:
        return
    _, sw = store_data(card, payload)
    assert sw in (0x9000, 0x6A80, 0x6A88, 0x6985)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_damaged_valid_requests_never_break_the_card(card: Euicc, data: st.DataObject) -> None:
    functions = [f for f in answered(card).values() if f.request_type not in LATER]
    function = data.draw(st.sampled_from(functions))
    encoded = bytearray(
        schema.encode(function.request_type, data.draw(strategy_for(function.request_type)))
    )
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(encoded) - 1))
        encoded[i] = data.draw(st.integers(0, 255))
    _, sw = store_data(card, bytes(encoded))
    # 6985: a bound profile package piece with no download in progress (euicc_sim/bpp.py)
    assert sw in (0x9000, 0x6A80, 0x6A88, 0x6985)
