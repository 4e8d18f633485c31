"""ipa.es9p: the ES9+ JSON binding at the HTTP edge (GSMA SGP.22 v2.5 §6.5; functions §5.6).

A fake SM-DP+ behind httpx.MockTransport records every request and answers as scripted; one
test serves real HTTPS on 127.0.0.1 to check certificate verification against trust anchors.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.server
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from euicc_protocol.crypto import Curve
from euicc_protocol.pki import CertRole
from euicc_protocol.testpki import Credential, TestPki, generate_test_pki, issue_server_certificate
from ipa.es9p import (
    Es9Config,
    Es9ConnectionError,
    Es9Error,
    Es9PlusClient,
    Es9ProtocolError,
    Es9Timeout,
    base_url_for,
    load_trust_anchors,
)
from ipa.http_pool import FleetHttpClient

VECTOR = json.loads(
    (Path(__file__).parent / "data" / "es9p_initiateAuthentication_production.json").read_text()
)
TID = bytes.fromhex("0102030405060708090A0B0C0D0E0F10")
TID_HEX = "0102030405060708090A0B0C0D0E0F10"
INFO1 = bytes.fromhex("BF2003820102")  # any BF20 TLV will do here
OK_HEADER = {"header": {"functionExecutionStatus": {"status": "Executed-Success"}}}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class FakeSmdp:
    """Answers each ES9+ function with a scripted (status, body) and records the requests."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.answers: dict[str, Callable[[dict[str, Any]], httpx.Response]] = {}

    def answer(self, function: str, status: int = 200, body: Any = None, raw: bytes = b"") -> None:
        def respond(_request: dict[str, Any]) -> httpx.Response:
            if body is None:
                return httpx.Response(status, content=raw)
            return httpx.Response(
                status,
                json=body,
                headers={"X-Admin-Protocol": "gsma/rsp/v2.5.0"},
            )

        self.answers[function] = respond

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        function = request.url.path.rsplit("/", 1)[-1]
        return self.answers[function](json.loads(request.content))

    @property
    def last_json(self) -> dict[str, Any]:
        return json.loads(self.requests[-1].content)

    def client(self, server: str = "smdp.example.com") -> Es9PlusClient:
        return Es9PlusClient(server, Es9Config(transport=httpx.MockTransport(self.handle)))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def smdp() -> FakeSmdp:
    return FakeSmdp()


# -- requests: paths, headers, encodings ------------------------------------------------------


def test_initiate_authentication_request_and_production_answer(smdp: FakeSmdp) -> None:
    body = VECTOR["http_response_body"]
    smdp.answer("initiateAuthentication", body=body)
    challenge = bytes.fromhex(VECTOR["euiccChallenge_sent_hex"])
    address = VECTOR["smdpAddress"]

    ok = run(smdp.client(address).initiate_authentication(challenge, INFO1))

    request = smdp.requests[0]
    assert request.method == "POST"
    assert str(request.url) == f"https://{address}/gsma/rsp2/es9plus/initiateAuthentication"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Admin-Protocol"] == "gsma/rsp/v2.5.0"
    assert request.headers["User-Agent"] == "gsma-rsp-lpad"
    sent = smdp.last_json
    assert set(sent) == {"euiccChallenge", "euiccInfo1", "smdpAddress"}
    assert base64.b64decode(sent["euiccChallenge"]) == challenge  # raw 16 bytes, no tag
    assert base64.b64decode(sent["euiccInfo1"]) == INFO1  # the complete BF20 TLV
    assert sent["smdpAddress"] == address
    # The answer: full TLVs, transactionId from hex.
    assert ok.transaction_id == bytes.fromhex(body["transactionId"])
    assert ok.server_signed1[:1] == b"\x30"
    assert ok.server_signature1[:3] == bytes.fromhex("5F3740")
    assert ok.euicc_ci_pkid_to_be_used == bytes.fromhex(
        "0414" + VECTOR["expected"]["euiccCiPKIdToBeUsed_ski_hex"]
    )
    assert ok.server_certificate == base64.b64decode(body["serverCertificate"])


def test_initiate_authentication_smdp_address_can_be_given(smdp: FakeSmdp) -> None:
    smdp.answer("initiateAuthentication", body=VECTOR["http_response_body"])
    run(smdp.client("http://127.0.0.1:8080").initiate_authentication(bytes(16), INFO1, "A.B"))
    assert str(smdp.requests[0].url).startswith("http://127.0.0.1:8080/gsma/rsp2/es9plus/")
    assert smdp.last_json["smdpAddress"] == "A.B"


def test_authenticate_client_sends_hex_transaction_id_and_full_tlv(smdp: FakeSmdp) -> None:
    response = bytes.fromhex("BF3803A10180")  # whatever the card said, forwarded unchanged
    metadata = bytes.fromhex("BF2503 5A0100".replace(" ", ""))
    signed2 = bytes.fromhex("3006800101 010100".replace(" ", ""))
    sig2 = bytes.fromhex("5F3740") + bytes(64)
    cert = bytes.fromhex("3003020100")
    smdp.answer(
        "authenticateClient",
        body={
            **OK_HEADER,
            "transactionId": TID_HEX,
            "profileMetadata": b64(metadata),
            "smdpSigned2": b64(signed2),
            "smdpSignature2": b64(sig2),
            "smdpCertificate": b64(cert),
        },
    )
    ok = run(smdp.client().authenticate_client(TID, response))
    assert smdp.requests[0].url.path == "/gsma/rsp2/es9plus/authenticateClient"
    assert smdp.last_json == {"transactionId": TID_HEX, "authenticateServerResponse": b64(response)}
    assert (ok.transaction_id, ok.profile_metadata, ok.smdp_signed2) == (TID, metadata, signed2)
    assert (ok.smdp_signature2, ok.smdp_certificate) == (sig2, cert)


def test_get_bound_profile_package(smdp: FakeSmdp) -> None:
    bpp = bytes.fromhex("BF3600")
    prepare = bytes.fromhex("BF2100")
    smdp.answer(
        "getBoundProfilePackage",
        body={**OK_HEADER, "transactionId": TID_HEX.lower(), "boundProfilePackage": b64(bpp)},
    )
    ok = run(smdp.client().get_bound_profile_package(TID, prepare))
    assert smdp.last_json == {"transactionId": TID_HEX, "prepareDownloadResponse": b64(prepare)}
    assert ok.bound_profile_package == bpp
    assert ok.transaction_id == TID


def test_answer_for_another_transaction_is_refused(smdp: FakeSmdp) -> None:
    smdp.answer(
        "getBoundProfilePackage",
        body={**OK_HEADER, "transactionId": "FF", "boundProfilePackage": b64(b"\xbf\x36\x00")},
    )
    with pytest.raises(Es9ProtocolError, match="answer is for transaction FF"):
        run(smdp.client().get_bound_profile_package(TID, b"\xbf\x21\x00"))


@pytest.mark.parametrize("status", [204, 200])
def test_handle_notification_accepts_204_and_empty_200(smdp: FakeSmdp, status: int) -> None:
    smdp.answer("handleNotification", status=status)
    notification = bytes.fromhex("BF3703800101")
    assert run(smdp.client().handle_notification(notification)) is None
    assert smdp.last_json == {"pendingNotification": b64(notification)}
    assert smdp.requests[0].url.path == "/gsma/rsp2/es9plus/handleNotification"


def test_handle_notification_accepts_other_signed_notification(smdp: FakeSmdp) -> None:
    smdp.answer("handleNotification", status=204)
    run(smdp.client().handle_notification(bytes.fromhex("3000")))
    with pytest.raises(ValueError):
        run(smdp.client().handle_notification(bytes.fromhex("A000")))


def test_cancel_session_header_only_answer(smdp: FakeSmdp) -> None:
    smdp.answer("cancelSession", body=OK_HEADER)
    cancel = bytes.fromhex("BF410381 0105".replace(" ", ""))
    assert run(smdp.client().cancel_session(TID, cancel)) is None
    assert smdp.last_json == {"transactionId": TID_HEX, "cancelSessionResponse": b64(cancel)}


def test_cancel_session_echoed_transaction_id_is_checked(smdp: FakeSmdp) -> None:
    smdp.answer("cancelSession", body={**OK_HEADER, "transactionId": "AA"})
    with pytest.raises(Es9ProtocolError):
        run(smdp.client().cancel_session(TID, b"\xbf\x41\x00"))


# -- answers: Failed, warnings, binding errors ------------------------------------------------


@pytest.mark.parametrize("http_status", [200, 400])
def test_failed_raises_es9_error_with_codes(smdp: FakeSmdp, http_status: int) -> None:
    failed = {
        "header": {
            "functionExecutionStatus": {
                "status": "Failed",
                "statusCodeData": {
                    "subjectCode": "8.2.6",
                    "reasonCode": "3.8",
                    "subjectIdentifier": "matchingId",
                    "message": "Refused",
                },
            }
        }
    }
    smdp.answer("authenticateClient", status=http_status, body=failed)
    with pytest.raises(Es9Error) as info:
        run(smdp.client().authenticate_client(TID, b"\xbf\x38\x00"))
    error = info.value
    assert (error.subject_code, error.reason_code, error.message) == ("8.2.6", "3.8", "Refused")
    assert error.function == "authenticateClient"
    assert error.status == "Failed"
    assert error.subject_identifier == "matchingId"
    assert "subject 8.2.6 reason 3.8" in str(error)


def test_expired_is_an_es9_error_too(smdp: FakeSmdp) -> None:
    smdp.answer(
        "handleNotification",
        body={"header": {"functionExecutionStatus": {"status": "Expired"}}},
    )
    with pytest.raises(Es9Error) as info:
        run(smdp.client().handle_notification(b"\xbf\x37\x00"))
    assert info.value.status == "Expired"
    assert info.value.subject_code == ""


def test_executed_with_warning_is_success(smdp: FakeSmdp) -> None:
    smdp.answer(
        "cancelSession",
        body={"header": {"functionExecutionStatus": {"status": "Executed-WithWarning"}}},
    )
    run(smdp.client().cancel_session(TID, b"\xbf\x41\x00"))


@pytest.mark.parametrize(
    ("status", "raw", "message"),
    [
        (500, b"oops", "body is not a JSON object"),
        (500, b"", "HTTP 500 without a body"),
        (404, b'{"x": 1}', "HTTP 404"),
        (200, b"[1, 2]", "not a JSON object"),
        (200, b'{"header": {}}', "status is None"),
        (200, b"", "without a body"),
    ],
)
def test_binding_errors_are_protocol_errors(
    smdp: FakeSmdp, status: int, raw: bytes, message: str
) -> None:
    smdp.answer("getBoundProfilePackage", status=status, raw=raw)
    with pytest.raises(Es9ProtocolError, match=message) as info:
        run(smdp.client().get_bound_profile_package(TID, b"\xbf\x21\x00"))
    assert info.value.status_code == status


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "boundProfilePackage is missing"),
        (7, "boundProfilePackage is a int"),
        ("***", "not base64"),
        (b64(b"\x30\x00"), "must be a complete BF36 TLV, starts 3000"),
    ],
)
def test_malformed_fields_are_protocol_errors(smdp: FakeSmdp, value: Any, message: str) -> None:
    body: dict[str, Any] = {**OK_HEADER, "transactionId": TID_HEX}
    if value is not None:
        body["boundProfilePackage"] = value
    smdp.answer("getBoundProfilePackage", body=body)
    with pytest.raises(Es9ProtocolError, match=message):
        run(smdp.client().get_bound_profile_package(TID, b"\xbf\x21\x00"))


def test_base64_with_line_breaks_is_accepted(smdp: FakeSmdp) -> None:
    bpp = b"\xbf\x36\x40" + bytes(64)
    text = b64(bpp)
    wrapped = "\n".join(text[i : i + 20] for i in range(0, len(text), 20))
    smdp.answer(
        "getBoundProfilePackage",
        body={**OK_HEADER, "transactionId": TID_HEX, "boundProfilePackage": wrapped},
    )
    ok = run(smdp.client().get_bound_profile_package(TID, b"\xbf\x21\x00"))
    assert ok.bound_profile_package == bpp


def test_bad_transaction_id_hex_is_a_protocol_error(smdp: FakeSmdp) -> None:
    body = dict(VECTOR["http_response_body"], transactionId="XYZ")
    smdp.answer("initiateAuthentication", body=body)
    with pytest.raises(Es9ProtocolError, match="not hex"):
        run(smdp.client().initiate_authentication(bytes(16), INFO1))


def test_request_values_are_checked_before_sending(smdp: FakeSmdp) -> None:
    client = smdp.client()
    with pytest.raises(ValueError, match="16 bytes"):
        run(client.initiate_authentication(bytes(15), INFO1))
    with pytest.raises(ValueError, match="BF20"):
        run(client.initiate_authentication(bytes(16), b"\x30\x00"))
    with pytest.raises(ValueError, match="1..16 bytes"):
        run(client.authenticate_client(bytes(17), b"\xbf\x38\x00"))
    assert smdp.requests == []


# -- transport failures -------------------------------------------------------------------------


def failing(exc: Exception) -> Es9PlusClient:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return Es9PlusClient("smdp.example.com", Es9Config(transport=httpx.MockTransport(handler)))


def test_timeout_raises_es9_timeout() -> None:
    with pytest.raises(Es9Timeout, match="no answer from https://smdp.example.com"):
        run(failing(httpx.ReadTimeout("slow")).cancel_session(TID, b"\xbf\x41\x00"))


def test_connection_failure_raises_es9_connection_error() -> None:
    with pytest.raises(Es9ConnectionError) as info:
        run(failing(httpx.ConnectError("refused")).handle_notification(b"\xbf\x37\x00"))
    assert not isinstance(info.value, Es9Timeout)


# -- base URLs and configuration --------------------------------------------------------------


def test_base_urls() -> None:
    assert base_url_for("smdp.example.com") == "https://smdp.example.com"
    assert base_url_for("smdp.example.com:8443") == "https://smdp.example.com:8443"
    assert base_url_for("http://127.0.0.1:80/") == "http://127.0.0.1:80"
    assert base_url_for("HTTPS://x.example") == "HTTPS://x.example"
    assert base_url_for("127.0.0.1:80", "http") == "http://127.0.0.1:80"
    with pytest.raises(ValueError):
        base_url_for("x.example", "ftp")
    assert Es9PlusClient("http://127.0.0.1:9/").smdp_address == "127.0.0.1:9"


def test_ssl_context_choices(tmp_path: Path) -> None:
    assert Es9Config(insecure=True).ssl_context() is False
    assert isinstance(Es9Config().ssl_context(), ssl.SSLContext)
    pki = generate_test_pki(Curve.NIST_P256)
    pem = tmp_path / "ci.pem"
    pem.write_bytes(pki.ci.cert.public_bytes(serialization.Encoding.PEM))
    anchors = load_trust_anchors([pem, pki.ci.cert_der])
    context = Es9Config(ca_certificates=anchors).ssl_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) == 1  # the same CI twice, and no system roots
    with pytest.raises(ValueError):
        Es9Config(ca_certificates=(b"not a certificate",)).ssl_context()


# -- real TLS on loopback -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_pki() -> TestPki:
    return generate_test_pki(Curve.NIST_P256)


@contextlib.contextmanager
def serving_https(
    credential: Credential, directory: Path, idle_timeout: float | None = None
) -> Iterator[str]:
    """A tiny HTTPS server on 127.0.0.1 with ``credential``, answering 204 to every POST
    (HTTP/1.1, keep-alive; a connection idle for ``idle_timeout`` seconds is closed); yields
    its ``host:port``."""
    cert, key = directory / "tls.pem", directory / "tls.key"
    cert.write_bytes(credential.cert.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(credential.key_pem())

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = idle_timeout

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def https_server(tls_pki: TestPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """HTTPS on 127.0.0.1 with CERT.DP.TLS (names the host and 127.0.0.1), 204 to every POST."""
    with serving_https(tls_pki.dp_tls, tmp_path_factory.mktemp("tls")) as address:
        yield address


def test_tls_verified_against_the_ci(https_server: str, tls_pki: TestPki) -> None:
    config = Es9Config(ca_certificates=(tls_pki.ci.cert_der,), timeout=5)

    async def go() -> None:
        async with Es9PlusClient(https_server, config) as client:
            await client.handle_notification(b"\xbf\x37\x00")

    run(go())


def test_tls_with_an_unknown_ci_is_refused(https_server: str) -> None:
    other = generate_test_pki(Curve.NIST_P256)
    config = Es9Config(ca_certificates=(other.ci.cert_der,), timeout=5)
    with pytest.raises(Es9ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        run(Es9PlusClient(https_server, config).handle_notification(b"\xbf\x37\x00"))


def test_tls_without_anchors_uses_system_roots_and_refuses(https_server: str) -> None:
    with pytest.raises(Es9ConnectionError):
        run(Es9PlusClient(https_server, Es9Config(timeout=5)).handle_notification(b"\x30\x00"))


def test_insecure_skips_verification_only_when_asked(https_server: str) -> None:
    config = Es9Config(insecure=True, timeout=5)
    run(Es9PlusClient(https_server, config).handle_notification(b"\xbf\x37\x00"))


# -- the pooled HTTP client behind Es9PlusClient ------------------------------------------------


PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
)


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_the_default_client_is_pooled_and_keeps_one_connection(
    https_server: str, tls_pki: TestPki, no_proxy: None
) -> None:
    config = Es9Config(ca_certificates=(tls_pki.ci.cert_der,), timeout=5)

    async def go() -> int:
        async with Es9PlusClient(https_server, config) as client:
            assert isinstance(client._http, FleetHttpClient)
            for _ in range(4):  # a download's calls, then its notification
                await client.handle_notification(b"\xbf\x37\x00")
            return client._http.pool.connections_opened

    assert run(go()) == 1


def test_the_tls_context_of_a_set_of_anchors_is_made_once(tls_pki: TestPki) -> None:
    anchors = (tls_pki.ci.cert_der,)
    first = Es9Config(ca_certificates=anchors).ssl_context()
    assert Es9Config(ca_certificates=anchors, timeout=1).ssl_context() is first
    other = generate_test_pki(Curve.NIST_P256).ci.cert_der
    assert Es9Config(ca_certificates=(other,)).ssl_context() is not first


def test_a_certificate_for_another_host_is_refused(
    tls_pki: TestPki, tmp_path: Path, no_proxy: None
) -> None:
    """The chain verifies (same CI) but the certificate names another server."""
    elsewhere = issue_server_certificate(
        tls_pki.ci, CertRole.DP_TLS, "2.999.10", dns_names=("smdp.example.com",)
    )
    config = Es9Config(ca_certificates=(tls_pki.ci.cert_der,), timeout=5)
    with serving_https(elsewhere, tmp_path) as address:
        with pytest.raises(Es9ConnectionError, match="mismatch"):
            run(Es9PlusClient(address, config).handle_notification(b"\xbf\x37\x00"))


def test_a_server_that_never_answers_is_a_timeout(no_proxy: None) -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    try:
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        config = Es9Config(scheme="http", timeout=0.3)
        with pytest.raises(Es9Timeout, match="handleNotification"):
            run(Es9PlusClient(address, config).handle_notification(b"\xbf\x37\x00"))
    finally:
        listener.close()


def test_a_closed_port_is_a_connection_error_not_a_timeout(no_proxy: None) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again when the test connects
    config = Es9Config(scheme="http", timeout=5)
    with pytest.raises(Es9ConnectionError) as caught:
        run(Es9PlusClient(f"127.0.0.1:{port}", config).handle_notification(b"\x30\x00"))
    assert not isinstance(caught.value, Es9Timeout)


def test_a_configured_proxy_is_left_to_httpx(
    no_proxy: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    client = Es9Config().http_client()
    assert not isinstance(client, FleetHttpClient)
    run(client.aclose())


def test_a_connection_the_server_closed_while_the_loop_was_blocked_is_not_reused(
    tls_pki: TestPki, tmp_path: Path, no_proxy: None
) -> None:
    """A plain-function consent callback can keep the event loop from noticing that the
    SM-DP+ closed an idle keep-alive connection; the next call must not be sent on it."""
    config = Es9Config(ca_certificates=(tls_pki.ci.cert_der,), timeout=5)
    with serving_https(tls_pki.dp_tls, tmp_path, idle_timeout=0.2) as address:

        async def go() -> int:
            async with Es9PlusClient(address, config) as client:
                await client.handle_notification(b"\xbf\x37\x00")
                time.sleep(0.6)  # blocks the loop while the server closes the connection
                await client.handle_notification(b"\xbf\x37\x00")
                assert isinstance(client._http, FleetHttpClient)
                return client._http.pool.connections_opened

        assert run(go()) == 2
