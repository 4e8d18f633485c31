"""The IPAd's listening side of ESipa: the eIM pushes packages (TransferEimPackage, SGP.32
§5.9 / §6.x ESipa, eIM as the HTTP client) or asks the device to poll now.

:class:`PushHandler` is the pure part: the DER of one TransferEimPackageRequest (``BF4E``) in,
the DER of the TransferEimPackageResponse (``BF4E``) out, the card driven through
:class:`~ipa.es10.Es10Client`:

* ``BF51`` EuiccPackageRequest: ES10b.LoadEuiccPackage; the answer is the EuiccPackageResult,
  or ePRAndNotifications when notifications are pending on the card. The card's results stay
  on the card until the eIM acknowledges them.
* ``BF52`` IpaEuiccDataRequest: the IpaEuiccData (:mod:`ipa.ipa_data`).
* ``BF53`` eimAcknowledgements: each seqNumber is removed from the card
  (ES10b.RemoveNotificationFromList); the answer is eimPackageReceived.
* ``BF54`` ProfileDownloadTriggerRequest: not run from a push (a download takes minutes and
  its own ESipa exchanges); answered eimPackageError unknownPackage, and the eIM keeps such
  orders for the device's next poll.
* anything that does not decode: eimPackageError invalidPackageFormat.

:class:`ListenServer` serves the handlers over HTTP(S) with the ESipa ASN.1 binding's
conventions (``POST <base>/gsma/rsp2/asn1``, ``Content-Type: application/x-gsma-rsp-asn1``,
415 otherwise), one device at ``/`` or several at ``/eid/<EID>/``; ``POST <base>/wake-up``
calls the device's wake-up callback (it should poll the eIM at once) and answers 202.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from euicc_protocol import schema, tlv
from ipa.es10 import Es10Client
from ipa.esipa_codes import EimPackageResultErrorCode
from ipa.ipa_data import InvalidIpaEuiccDataRequest, build_ipa_euicc_data
from ipa.pull.packages import execute_package

__all__ = ["ASN1_CONTENT_TYPE", "ListenServer", "PushHandler", "eim_package_error"]

log = logging.getLogger(__name__)

ASN1_CONTENT_TYPE = "application/x-gsma-rsp-asn1"
_RECEIVED = tlv.encode_tlv(b"\xbf\x4e", b"\x05\x00")  # eimPackageReceived
_MAX_BODY = 64 * 1024


def eim_package_error(code: EimPackageResultErrorCode) -> bytes:
    """TransferEimPackageResponse eimPackageError ``BF4E { 02 code }``."""
    return tlv.encode_tlv(b"\xbf\x4e", tlv.encode_tlv(b"\x02", bytes([int(code)])))


class PushHandler:
    """One device's answers to pushed packages (see the module rules). Card access is
    serialised: the device's pull flow may share the card."""

    def __init__(
        self,
        client: Es10Client,
        *,
        eim_id: str | None = None,
        on_wakeup: Callable[[], None] | None = None,
        lock: threading.Lock | None = None,
        sgp32: str = "1.2",
    ) -> None:
        self.client = client
        self.eim_id = eim_id
        #: The SGP.32 version the card speaks ("1.0" or "1.2"): how packages are decoded.
        self.sgp32 = sgp32
        self.on_wakeup = on_wakeup
        self.lock = lock or threading.Lock()

    def handle(self, message: bytes) -> bytes:
        """A TransferEimPackageRequest (DER) → the TransferEimPackageResponse (DER)."""
        try:
            item = tlv.read_tlv(message)
            inner = message[item.value_start : item.value_end]
            package = tlv.read_tlv(inner) if inner else None
        except tlv.TlvError as exc:
            log.warning("pushed message refused: %s", exc)
            return eim_package_error(EimPackageResultErrorCode.INVALID_PACKAGE_FORMAT)
        if item.tag != b"\xbf\x4e" or item.end != len(message):
            log.warning("pushed message refused: not one TransferEimPackageRequest (BF4E)")
            return eim_package_error(EimPackageResultErrorCode.INVALID_PACKAGE_FORMAT)
        if package is None or package.end != len(inner):
            log.warning("pushed message refused: not one package inside BF4E")
            return eim_package_error(EimPackageResultErrorCode.INVALID_PACKAGE_FORMAT)
        with self.lock:
            return self._run(package.tag, inner)

    def _run(self, tag: bytes, package: bytes) -> bytes:
        if tag == b"\xbf\x51":
            handled = execute_package(self.client, package, self.sgp32)
            if handled.result[:1] == b"\xa0":  # eimPackageResultResponseError: its code
                code = schema.decode("EimPackageResult", handled.result)[1]
                return eim_package_error(code["eimPackageResultErrorCode"])
            return tlv.encode_tlv(b"\xbf\x4e", handled.result)
        if tag == b"\xbf\x52":
            try:
                answer = build_ipa_euicc_data(
                    self.client, package, eim_id=self.eim_id, sgp32=self.sgp32
                )
            except InvalidIpaEuiccDataRequest as exc:
                log.warning("%s", exc)
                return eim_package_error(EimPackageResultErrorCode.INVALID_PACKAGE_FORMAT)
            return tlv.encode_tlv(b"\xbf\x4e", answer.raw)
        if tag == b"\xbf\x53":
            try:
                acks = schema.decode("EimAcknowledgements", package)
            except schema.DecodeError:
                return eim_package_error(EimPackageResultErrorCode.INVALID_PACKAGE_FORMAT)
            for seq in acks:
                try:
                    self.client.remove_notification_from_list(seq)
                except Exception as exc:  # noqa: BLE001 - already removed: nothing to do
                    log.info("seqNumber %d not removed: %s", seq, exc)
            return _RECEIVED
        return eim_package_error(EimPackageResultErrorCode.UNKNOWN_PACKAGE)


class ListenServer:
    """HTTP(S) endpoint of one or more devices (``handlers``: EID → handler; with one device
    it also answers at the root). ``tls``: a server :class:`ssl.SSLContext` or ``None``."""

    def __init__(
        self,
        handlers: Mapping[str, PushHandler],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.handlers = dict(handlers)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                outer._serve(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("listen: " + format, *args)

        self.http = ThreadingHTTPServer((host, port), Handler)
        self.http.daemon_threads = True
        if tls is not None:
            self.http.socket = tls.wrap_socket(self.http.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``scheme://host:port``."""
        host, port = self.http.server_address[:2]
        return f"{self.scheme}://{host!s}:{port}"

    def url_for(self, eid: str) -> str:
        """The base URL the eIM is given for ``eid``'s pushes and wake-ups."""
        return f"{self.base_url}/eid/{eid}"

    def start(self) -> ListenServer:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self.http.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.http.shutdown()
        self.http.server_close()

    def __enter__(self) -> ListenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handler_for(self, path: str) -> tuple[PushHandler | None, str]:
        if path.startswith("/eid/"):
            eid, _, rest = path[5:].partition("/")
            return self.handlers.get(eid.upper()), "/" + rest
        if len(self.handlers) == 1:
            return next(iter(self.handlers.values())), path
        return None, path

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        def answer(status: int, body: bytes = b"", kind: str = "text/plain") -> None:
            request.send_response(status)
            request.send_header("Content-Type", kind)
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            request.wfile.write(body)

        length = request.headers.get("Content-Length", "0")
        if not length.isdigit() or int(length) > _MAX_BODY:
            answer(413, b"body too large\n")
            return
        body = request.rfile.read(int(length))
        handler, rest = self._handler_for(request.path.split("?")[0])
        if handler is None:
            answer(404, b"no such device\n")
        elif rest == "/wake-up":
            if handler.on_wakeup is None:
                answer(404, b"this device does not take wake-ups\n")
                return
            handler.on_wakeup()
            answer(202)
        elif rest == "/gsma/rsp2/asn1":
            kind = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if kind != ASN1_CONTENT_TYPE:
                answer(415, f"Content-Type must be {ASN1_CONTENT_TYPE}\n".encode())
                return
            answer(200, handler.handle(body), ASN1_CONTENT_TYPE)
        else:
            answer(404, b"not found\n")
