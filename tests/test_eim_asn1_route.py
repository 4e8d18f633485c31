"""The ESipa ASN.1 route served ahead of the Starlette stack (euicc_servers.eim.asn1_route):
the same status codes, headers and bodies as the Starlette responses it replaces, the server's
body limits, and a bug answered 500 without a traceback."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from asgi_client import AsgiClient

from euicc_protocol import schema
from euicc_protocol.crypto import Curve
from euicc_protocol.eid import make_eid
from euicc_protocol.testpki import TestPki, generate_test_pki
from euicc_servers.common.functions import ADMIN_PROTOCOL
from euicc_servers.common.limits import Limits
from euicc_servers.eim import build_eim, create_app, run_in_thread
from euicc_servers.eim.esipa import EimCore
from ipa import esipa_messages

ASN1 = {"Content-Type": "application/x-gsma-rsp-asn1"}
PATH = "/gsma/rsp2/asn1"


@pytest.fixture(scope="module")
def nist() -> TestPki:
    return generate_test_pki(Curve.NIST_P256)


def _client(test_pki: TestPki, **options: Any) -> tuple[EimCore, AsgiClient]:
    eim = build_eim(test_pki, eim_fqdn="eim.test", **options)
    return eim.core, AsgiClient(create_app(eim.core), "http://eim.test")


def _headers(response: httpx.Response) -> list[tuple[str, str]]:
    return [(k, v) for k, v in response.headers.items()]


def test_answers_carry_the_headers_starlette_wrote(nist: TestPki) -> None:
    core, client = _client(nist)
    eid = make_eid("89049032")
    core.register(eid)
    poll = schema.encode("GetEimPackageRequest", {"eidValue": bytes.fromhex(eid)})

    ok = client.request("POST", PATH, content=poll, headers=ASN1)
    assert ok.status_code == 200
    assert ok.content == bytes.fromhex("BF4F03020101")  # noEimPackageAvailable
    assert _headers(ok) == [
        ("x-admin-protocol", ADMIN_PROTOCOL),
        ("content-length", "6"),
        ("content-type", "application/x-gsma-rsp-asn1"),
    ]

    wrong_type = client.request("POST", PATH, content=poll, headers={"Content-Type": "a/b"})
    assert wrong_type.status_code == 415
    assert wrong_type.text == "Content-Type must be application/x-gsma-rsp-asn1"
    assert _headers(wrong_type) == [
        ("content-length", str(len(wrong_type.content))),
        ("content-type", "text/plain; charset=utf-8"),
    ]

    refused = client.request("POST", PATH, content=b"\x30\x00", headers=ASN1)
    assert refused.status_code == 400 and "unsupported ESipa message 30" in refused.text
    assert refused.headers["content-type"] == "text/plain; charset=utf-8"


def test_content_type_parameters_and_case_are_ignored(nist: TestPki) -> None:
    core, client = _client(nist)
    eid = make_eid("89049032")
    core.register(eid)
    poll = schema.encode("GetEimPackageRequest", {"eidValue": bytes.fromhex(eid)})
    headers = {"Content-Type": "Application/X-GSMA-RSP-ASN1; charset=binary"}
    assert client.request("POST", PATH, content=poll, headers=headers).status_code == 200


def test_a_handle_notification_is_204_without_a_body_or_type(nist: TestPki) -> None:
    _, client = _client(nist)
    # HandleNotification with a ProvideEimPackageResult for an unknown EID: dropped, 204.
    error = esipa_messages.package_result_error(1)  # the IPAd's invalidPackageFormat
    result = esipa_messages.provide_eim_package_result(error, make_eid("89049032"))
    result = esipa_messages.handle_notification_request(result)
    answer = client.request("POST", PATH, content=result, headers=ASN1)
    assert answer.status_code == 204 and answer.content == b""
    assert _headers(answer) == [("x-admin-protocol", ADMIN_PROTOCOL)]


def test_a_bug_in_the_core_is_500_without_a_traceback(
    nist: TestPki, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    core, client = _client(nist)

    def broken(message: bytes, **_: Any) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(core, "handle", broken)
    with caplog.at_level(logging.ERROR):
        answer = client.request("POST", PATH, content=bytes.fromhex("BF4F00"), headers=ASN1)
    assert answer.status_code == 500
    assert answer.text == "internal error (logged by the server)"
    assert "Traceback" not in answer.text
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)


def test_other_methods_are_still_405_with_what_is_allowed(nist: TestPki) -> None:
    _, client = _client(nist)
    answer = client.request("GET", PATH)
    assert answer.status_code == 405 and "allowed: POST" in answer.text


def test_the_body_limits_apply_over_real_http(nist: TestPki) -> None:
    eim = build_eim(nist, tls=False, limits=Limits(max_body=64))
    with run_in_thread(eim.core) as server, httpx.Client(base_url=server.base_url) as http:
        big = http.post(PATH, content=b"\x30" * 65, headers=ASN1)
        assert big.status_code == 413 and "limit of 64 bytes" in big.text
        served = http.post(PATH, content=b"\x30\x00", headers=ASN1)
        assert served.status_code == 400  # the next request is served
