"""euicc_protocol.bindings: the ES9+ and ESipa JSON bindings as data, read and written the
same way by the servers and the IPAd."""

from __future__ import annotations

import pytest

from euicc_protocol import bindings
from euicc_protocol.bindings import ES9PLUS, ESIPA, BindingError, Encoding


def test_every_function_names_each_field_once() -> None:
    for table in (ES9PLUS, ESIPA):
        for name, function in table.items():
            assert function.name == name
            for fields in (function.request, function.response):
                names = [f.name for f in fields]
                assert len(names) == len(set(names)), name
                for field in fields:
                    assert field.tags == () or field.encoding is Encoding.TLV


def test_request_round_trip_and_wire_form() -> None:
    fields = ES9PLUS["authenticateClient"].request
    values = {"transactionId": b"\x0a\xbc", "authenticateServerResponse": b"\xbf\x38\x00"}
    body = bindings.encode(fields, values)
    assert body == {"transactionId": "0ABC", "authenticateServerResponse": "vzgA"}
    assert bindings.decode(fields, {**body, "transactionId": "0abc", "extra": 1}) == values


@pytest.mark.parametrize(
    ("body", "message", "missing"),
    [
        ({"authenticateServerResponse": "vzgA"}, "transactionId is missing", True),
        ({"transactionId": "0G", "authenticateServerResponse": "vzgA"}, "not hex", False),
        ({"transactionId": "00" * 17, "authenticateServerResponse": "vzgA"}, "1..16 bytes", False),
        ({"transactionId": "01", "authenticateServerResponse": "MAA="}, "BF38 TLV", False),
        ({"transactionId": "01", "authenticateServerResponse": "vzgAAA=="}, "complete", False),
        ({"transactionId": "01", "authenticateServerResponse": "%%"}, "not base64", False),
        ({"transactionId": 1, "authenticateServerResponse": "vzgA"}, "is a int", False),
    ],
)
def test_malformed_bodies_say_what_is_wrong(
    body: dict[str, object], message: str, missing: bool
) -> None:
    with pytest.raises(BindingError, match=message) as info:
        bindings.decode(ES9PLUS["authenticateClient"].request, body)
    assert info.value.missing is missing


def test_one_of_and_encoding_checks() -> None:
    function = ESIPA["getEimPackage"]
    both = {"euiccPackageRequest": "v1EA", "eimPackageError": 1}
    with pytest.raises(BindingError, match="exactly one"):
        bindings.decode(function.response, both, one_of=function.one_of_response)
    assert bindings.decode(
        function.response, {"eimPackageError": 1}, one_of=function.one_of_response
    ) == {"eimPackageError": 1}
    with pytest.raises(BindingError, match="16 bytes"):
        bindings.encode(function.request, {"eidValue": b"\x89" * 15})
    with pytest.raises(BindingError, match="unknown"):
        bindings.encode(function.request, {"eidValue": b"\x89" * 16, "eid": "x"})
    with pytest.raises(BindingError, match="true or false"):
        bindings.decode(function.request, {"eidValue": "89" * 16, "notifyStateChange": "yes"})


def test_the_servers_use_these_tables() -> None:
    from euicc_servers.eim.app import JSON_FUNCTIONS
    from euicc_servers.smdpp.app import FUNCTIONS

    assert FUNCTIONS is ES9PLUS
    assert set(JSON_FUNCTIONS) == set(ESIPA)
