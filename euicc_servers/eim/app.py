"""The eIM as a Starlette ASGI app: both ESipa bindings and the operator API.

ESipa, ASN.1 binding (SGP.32 v1.2 §6.3): ``POST /gsma/rsp2/asn1`` with
``Content-Type: application/x-gsma-rsp-asn1`` (else 415); the body is the DER of one
EsipaMessageFromIpaToEim, the answer the DER of the EsipaMessageFromEimToIpa (200), or 204
with no body for HandleNotification. A message the eIM does not take is 400 (plain text).

ESipa, JSON binding: ``POST /gsma/rsp2/esipa/<function>`` with the ES9+ JSON conventions
(§4.2): ASN.1 objects as standard base64 of the complete TLV, ``euiccChallenge`` as base64 of
its 16 bytes, ``transactionId``/``eimTransactionId`` in hex, ``eidValue``/``rPlmn`` in hex.
Each request is turned into the ASN.1 message and handled like the ASN.1 binding; the answer
is turned back into JSON fields (:data:`JSON_FUNCTIONS`). Protocol failures are HTTP 200 with
``functionExecutionStatus.status`` Failed and statusCodeData (a relayed SM-DP+ failure keeps
the SM-DP+'s codes); the integer error alternatives of getEimPackage and
provideEimPackageResult are the fields ``eimPackageError`` / ``provideEimPackageResultError``.
handleNotification answers 204.

The operator API (JSON, ``/api/...``) is described in ``docs/eim.md``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from euicc_protocol import bindings, pki, schema, tlv

from ..common import (
    is_hex,
    is_json_content_type,
    json_error,
    json_response,
    pem,
    tlv_children,
)
from ..common.functions import (
    FunctionFailed,
    failed_response,
    function_response,
    success_response,
)
from ..common.limits import (
    JsonError,
    Receive,
    RequestGuard,
    Scope,
    Send,
    exception_handlers,
    parse_json,
)
from .asn1_route import ASN1_CONTENT_TYPE, ASN1_PATH, Asn1Route, LaneBusy
from .campaigns import CampaignError
from .durability import DurableAcks
from .esipa import EimCore, MessageError, RegistrationError
from .northbound import WebhookError, sse_stream
from .packages import PackageError
from .relay import Answer
from .store import Conflict, NotFound

__all__ = [
    "ASN1_CONTENT_TYPE",
    "JSON_FUNCTIONS",
    "LaneBusy",
    "RelayLane",
    "create_app",
    "execute_json",
    "json_answer",
    "json_message",
]

log = logging.getLogger(__name__)

_B64, _HEX, _TEXT, _RAW = "b64", "hex", "text", "raw"

# --------------------------------------------------------------------------- JSON → ASN.1
# Each builder takes the request values decoded by the binding (euicc_protocol.bindings).


def _get_eim_package(values: dict[str, Any]) -> bytes:
    value: dict[str, Any] = {"eidValue": values["eidValue"]}
    if values.get("notifyStateChange"):
        value["notifyStateChange"] = None
    if "stateChangeCause" in values:
        value["stateChangeCause"] = values["stateChangeCause"]
    if "rPlmn" in values:
        value["rPLMN"] = values["rPlmn"]
    return schema.encode("GetEimPackageRequest", value)


def _provide_eim_package_result(values: dict[str, Any]) -> bytes:
    eid = values.get("eidValue")
    content = tlv.encode_tlv(b"\x5a", eid) if eid is not None else b""
    return tlv.encode_tlv(b"\xbf\x50", content + values["eimPackageResult"])


def _handle_notification(values: dict[str, Any]) -> bytes:
    notification = values.get("pendingNotification")
    if notification is not None:
        return tlv.encode_tlv(b"\xbf\x3d", tlv.encode_tlv(b"\xa0", notification))
    return tlv.encode_tlv(b"\xbf\x3d", values["provideEimPackageResult"])


def _initiate_authentication(values: dict[str, Any]) -> bytes:
    content = tlv.encode_tlv(b"\x81", values["euiccChallenge"])
    if "smdpAddress" in values:
        content += tlv.encode_tlv(b"\x83", values["smdpAddress"].encode("utf-8"))
    content += values.get("euiccInfo1", b"")
    if "eimTransactionId" in values:
        content += tlv.encode_tlv(b"\x82", values["eimTransactionId"])
    return tlv.encode_tlv(b"\xbf\x39", content)


def _with_transaction(tag: bytes, payload_field: str) -> Callable[[dict[str, Any]], bytes]:
    def build(values: dict[str, Any]) -> bytes:
        content = tlv.encode_tlv(b"\x80", values["transactionId"])
        payload = values[payload_field]
        if tag == b"\xbf\x41":  # [1] IMPLICIT: A1 replaces the BF41 of CancelSessionResponse
            payload = tlv.encode_tlv(b"\xa1", tlv.read_tlv(payload).value(payload))
        return tlv.encode_tlv(tag, content + payload)

    return build


# --------------------------------------------------------------------------- ASN.1 → JSON

# Children of each ok alternative, in order: (tag, JSON name, encoding, optional).
_OK_FIELDS: dict[str, list[tuple[bytes, str, str, bool]]] = {
    "initiateAuthentication": [
        (b"\x80", "transactionId", _HEX, True),
        (b"\x30", "serverSigned1", _B64, False),
        (b"\x5f\x37", "serverSignature1", _B64, False),
        (b"\x04", "euiccCiPKIdentifierToBeUsed", _B64, False),
        (b"\x30", "serverCertificate", _B64, False),
        (b"\x0c", "matchingId", _TEXT, True),
        (b"\xa2", "ctxParams1", _RAW, True),
    ],
    "authenticateClient": [
        (b"\x80", "transactionId", _HEX, True),
        (b"\xbf\x25", "profileMetadata", _B64, True),
        (b"\x30", "smdpSigned2", _B64, False),
        (b"\x5f\x37", "smdpSignature2", _B64, False),
        (b"\x30", "smdpCertificate", _B64, False),
        (b"\x04", "hashCc", _B64, True),
    ],
    "getBoundProfilePackage": [
        (b"\x80", "transactionId", _HEX, True),
        (b"\xbf\x36", "boundProfilePackage", _B64, False),
    ],
    "cancelSession": [],
}


def _ok_fields(function: str, message: bytes) -> dict[str, Any]:
    """The values of the ok alternative ``A0 {...}`` of a relayed function's answer."""
    alternative = tlv_children(message)[0][1]
    children = tlv_children(alternative)
    out: dict[str, Any] = {}
    for tag, name, kind, optional in _OK_FIELDS[function]:
        if children and children[0][0] == tag:
            raw = children.pop(0)[1]
            item = tlv.read_tlv(raw)
            if kind == _HEX:
                out[name] = item.value(raw)
            elif kind == _TEXT:
                out[name] = item.value(raw).decode("utf-8")
            elif kind == _RAW:  # [2] wraps the CtxParams1 CHOICE: send the inner TLV
                out[name] = item.value(raw)
            else:
                out[name] = raw
        elif not optional:
            raise ValueError(f"{function} answer lacks {name}")
    return out


def _get_eim_package_json(message: bytes) -> dict[str, Any]:
    tag, raw = tlv_children(message)[0]
    names = {
        b"\xbf\x51": "euiccPackageRequest",
        b"\xbf\x52": "ipaEuiccDataRequest",
        b"\xbf\x54": "profileDownloadTriggerRequest",
    }
    if tag in names:
        return {names[tag]: raw}
    return {"eimPackageError": schema.decode("GetEimPackageResponse", message)[1]}


def _provide_result_json(message: bytes) -> dict[str, Any]:
    tag, raw = tlv_children(message)[0]
    if tag == b"\xbf\x53":
        return {"eimAcknowledgements": raw}
    if tag == b"\x02":
        code = schema.decode("ProvideEimPackageResultResponse", message)[1]
        return {"provideEimPackageResultError": code}
    return {}


#: The JSON binding: function → (request builder, answer converter or None for 204).
JSON_FUNCTIONS: dict[
    str,
    tuple[Callable[[dict[str, Any]], bytes], Callable[[bytes], dict[str, Any]] | None],
] = {
    "getEimPackage": (_get_eim_package, _get_eim_package_json),
    "provideEimPackageResult": (_provide_eim_package_result, _provide_result_json),
    "handleNotification": (_handle_notification, None),
    "initiateAuthentication": (
        _initiate_authentication,
        lambda m: _ok_fields("initiateAuthentication", m),
    ),
    "authenticateClient": (
        _with_transaction(b"\xbf\x3b", "authenticateServerResponse"),
        lambda m: _ok_fields("authenticateClient", m),
    ),
    "getBoundProfilePackage": (
        _with_transaction(b"\xbf\x3a", "prepareDownloadResponse"),
        lambda m: _ok_fields("getBoundProfilePackage", m),
    ),
    "cancelSession": (
        _with_transaction(b"\xbf\x41", "cancelSessionResponse"),
        lambda m: _ok_fields("cancelSession", m),
    ),
}


_success = success_response


def json_message(function: str, body: Any) -> bytes:
    """The ESipa ASN.1 message of a JSON request of ``function``.

    Raises:
        KeyError: ``function`` is not one of :data:`JSON_FUNCTIONS`.
        FunctionFailed: a field is missing or malformed (1.3.1).
    """
    build, _ = JSON_FUNCTIONS[function]
    if not isinstance(body, dict) or not isinstance(body.get("header", {}), dict):
        raise FunctionFailed("1.3.1", "2.1", "the body must be a JSON object")
    binding = bindings.ESIPA[function]
    try:
        values = bindings.decode(binding.request, body, one_of=binding.one_of_request)
        return build(values)
    except bindings.BindingError as exc:
        raise FunctionFailed("1.3.1", "2.2" if exc.missing else "2.1", str(exc)) from None
    except (ValueError, schema.Asn1Error, tlv.TlvError) as exc:
        raise FunctionFailed("1.3.1", "2.1", str(exc)) from None


def json_answer(function: str, answer: Answer | None) -> tuple[int, dict[str, Any] | None]:
    """(HTTP status, JSON body or None) of ``function``'s ``answer``."""
    _, convert = JSON_FUNCTIONS[function]
    if convert is None or answer is None:
        return 204, None
    if answer.failure is not None:
        return 200, failed_response(answer.failure)
    binding = bindings.ESIPA[function]
    fields = bindings.encode(
        binding.response, convert(answer.message), one_of=binding.one_of_response
    )
    return 200, _success(fields)


def execute_json(core: EimCore, function: str, body: Any) -> tuple[int, dict[str, Any] | None]:
    """Run ESipa ``function`` on a decoded JSON request body: (HTTP status, JSON or None).

    Raises:
        KeyError: ``function`` is not one of :data:`JSON_FUNCTIONS`.
    """
    try:
        answer = core.handle(json_message(function, body), json=True)
    except FunctionFailed as exc:
        return 200, failed_response(exc)
    except (MessageError, schema.Asn1Error, tlv.TlvError) as exc:
        return 200, failed_response(FunctionFailed("1.3.1", "2.1", str(exc)))
    return json_answer(function, answer)


class RelayLane:
    """Where ESipa requests that may reach an SM-DP+ run: ``threads`` threads of their own
    (never the event loop, never the pool other requests use), at most ``threads * 4``
    waiting; more are refused at once. A slow SM-DP+ so fills this lane only, and
    GetEimPackage and results (run on the event loop) go on being served."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.max_waiting = threads * 4
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, "eim-relay")
        self._lock = threading.Lock()
        self._in_flight = 0

    async def run(self, fn: Callable[[bytes], Answer | None], message: bytes) -> Answer | None:
        """``fn(message)`` in the lane.

        Raises:
            LaneBusy: the lane is full.
        """
        with self._lock:
            if self._in_flight >= self.threads + self.max_waiting:
                raise LaneBusy("too many requests wait for an SM-DP+; try again later")
            self._in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, fn, message)
        finally:
            with self._lock:
                self._in_flight -= 1


# --------------------------------------------------------------------------- HTTP


_esipa_json_response = function_response


class _EimApp(Starlette):
    """The Starlette app with ``POST /gsma/rsp2/asn1`` served ahead of its stack
    (:mod:`.asn1_route`: the same limits and answers, a fraction of the work per request)."""

    asn1_route: Asn1Route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == ASN1_PATH and scope["method"] == "POST":
            await self.asn1_route(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


_Handler = Callable[[Request], Awaitable[Response]]


def _store_only(message: bytes) -> bool:
    """Whether handling ``message`` touches nothing but the store (no SM-DP+ is reached):
    GetEimPackage, and ProvideEimPackageResult with an EuiccPackageResult alone. Those run
    on the event loop: the hop to the thread pool costs more CPU than handling them."""
    if message[:2] == b"\xbf\x4f":
        return True
    if message[:2] != b"\xbf\x50":
        return False
    try:
        tags = [tag for tag, _ in tlv_children(message)]
    except tlv.TlvError:
        return False
    return tags in ([b"\xbf\x51"], [b"\x5a", b"\xbf\x51"])


def create_app(core: EimCore, *, scheduler: bool = True) -> Starlette:
    """The ASGI app serving ``core``: ESipa (both bindings) and the operator API. Its
    lifespan runs the background work (:func:`run_scheduler`) unless ``scheduler`` is false
    (the other workers of several sharing one state directory)."""

    transport = core.relay.transport if core.relay is not None else None
    lane = RelayLane(getattr(transport, "max_concurrent", 8))

    # One thread for the fsyncs of acknowledging answers; the answers that arrive while one
    # runs share the next (group commit, :mod:`.durability`).
    durable = DurableAcks(core.store)

    async def handle(message: bytes) -> Answer | None:
        if not _store_only(message):
            return await lane.run(core.handle, message)  # may reach an SM-DP+ (blocking HTTP)
        # The store only: quicker here than a thread hop. An answer that acknowledges results
        # leaves once they are durable; the fsync (milliseconds of waiting on a busy disk) is
        # done in that thread meanwhile the loop serves other requests.
        store = core.store
        before = store.acknowledged
        with store.deferred_sync():
            answer = core.handle(message)
        if store.acknowledged != before:
            await durable.wait(store.acknowledged)
        return answer

    # Served by _EimApp ahead of the stack; the route stays for 405 on other methods.
    asn1 = Asn1Route(handle, core.settings.limits)

    async def esipa_json(request: Request) -> Response:
        function = request.path_params["function"]
        if function not in JSON_FUNCTIONS:
            status = 501 if function == "transferEimPackage" else 404
            failure = FunctionFailed("1.3.1", "2.1", f"function {function} is not offered")
            return _esipa_json_response(status, failed_response(failure))
        if not is_json_content_type(request.headers.get("content-type")):
            failure = FunctionFailed("1.2.1", "2.1", "Content-Type must be application/json")
            return _esipa_json_response(200, failed_response(failure))
        protocol = request.headers.get("x-admin-protocol")
        if protocol is not None and not protocol.startswith("gsma/rsp/v"):
            failure = FunctionFailed("1.2.2", "2.1", f"unsupported X-Admin-Protocol {protocol!r}")
            return _esipa_json_response(200, failed_response(failure))
        try:
            body = parse_json(await request.body(), core.settings.limits)
        except JsonError as exc:
            return _esipa_json_response(
                200, failed_response(FunctionFailed("1.3.1", "2.1", str(exc)))
            )
        try:
            answer = await handle(json_message(function, body))
        except FunctionFailed as exc:
            return _esipa_json_response(200, failed_response(exc))
        except (MessageError, schema.Asn1Error, tlv.TlvError) as exc:
            failure = FunctionFailed("1.3.1", "2.1", str(exc))
            return _esipa_json_response(200, failed_response(failure))
        except LaneBusy as exc:
            failure = FunctionFailed("8.8", "5.1", str(exc))  # as an unreachable SM-DP+
            return _esipa_json_response(200, failed_response(failure))
        return _esipa_json_response(*json_answer(function, answer))

    routes = [
        Route(ASN1_PATH, asn1, methods=["POST"]),
        Route("/gsma/rsp2/esipa/{function}", esipa_json, methods=["POST"]),
        *_operator_routes(core),
    ]
    app = _EimApp(
        routes=routes,
        middleware=[Middleware(RequestGuard, limits=core.settings.limits)],  # type: ignore[arg-type]
        exception_handlers=exception_handlers(),
        lifespan=_lifespan,
    )
    app.state.core = core
    app.state.scheduler = scheduler
    app.asn1_route = asn1
    return app


# --------------------------------------------------------------------------- scheduler


async def run_scheduler(core: EimCore, *, interval: float | None = None) -> None:
    """The eIM's background work, until cancelled: every ``interval`` seconds, advance the
    campaigns (:meth:`.campaigns.Campaigns.tick`) and deliver webhooks that are due. A
    failing step is logged and the loop goes on."""
    pause = core.settings.scheduler_interval if interval is None else interval
    async with httpx.AsyncClient(timeout=5.0) as client:
        while True:
            try:
                core.campaigns.tick()
                await core.pusher.step()
                await core.webhooks.deliver_due(client)
            except Exception:  # one bad step must not end the scheduler
                log.exception("scheduler step failed")
            await asyncio.sleep(pause)


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    if not app.state.scheduler:
        yield
        return
    task = asyncio.create_task(run_scheduler(app.state.core), name="eim-scheduler")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await app.state.core.pusher.close()


# --------------------------------------------------------------------------- operator API


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _json_body(request: Request) -> dict[str, Any]:
    core: EimCore = request.app.state.core
    try:
        data = parse_json(await request.body() or b"null", core.settings.limits)
    except JsonError as exc:
        raise _ApiError(400, str(exc)) from None
    if not isinstance(data, dict):
        raise _ApiError(400, "the body must be a JSON object")
    return data


def _only(data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    extra = sorted(set(data) - set(allowed))
    if extra:
        raise _ApiError(400, f"unknown field(s) {', '.join(extra)}; allowed: {', '.join(allowed)}")


def _certificate(data: dict[str, Any], name: str) -> bytes | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or "-----BEGIN CERTIFICATE-----" not in value:
        raise _ApiError(400, f"{name} must be a PEM certificate")
    try:
        return pki.load_certificate(value.encode()).public_bytes(Encoding.DER)
    except pki.CertificateError as exc:
        raise _ApiError(400, f"{name}: {exc}") from None


def _version(data: dict[str, Any]) -> str | None:
    value = data.get("sgp32")
    if value is not None and value not in ("1.0", "1.2"):
        raise _ApiError(400, 'sgp32 must be "1.0" or "1.2"')
    return value if isinstance(value, str) else None


def _int(data: dict[str, Any], name: str, low: int = -1, high: int = 2**31 - 1) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _ApiError(400, f"{name} must be an integer in {low}..{high}")
    return value


def _operator_routes(core: EimCore) -> list[Route]:
    def guarded(handler: _Handler) -> _Handler:
        async def run(request: Request) -> Response:
            if not core.auth.allows(request.headers.get("authorization")):
                return json_error(401, "unauthorised: send Authorization: Bearer <token>")
            try:
                return await handler(request)
            except _ApiError as exc:
                return json_error(exc.status, str(exc))
            except (PackageError, RegistrationError, CampaignError, WebhookError) as exc:
                return json_error(400, str(exc))
            except NotFound as exc:
                return json_error(404, str(exc))
            except Conflict as exc:
                return json_error(409, str(exc))

        return run

    def eid_of(request: Request) -> str:
        eid = request.path_params["eid"]
        if core.store.euicc(eid) is None:
            raise _ApiError(404, f"EID {eid[:40]} is not registered")
        return str(eid)

    def order_id(request: Request) -> int:
        text = request.path_params["order_id"]
        # SQLite row ids are below 2^63: a longer number names no order (and must not reach
        # the database, which cannot bind it).
        if not (text.isascii() and text.isdigit()) or len(text) > 18:
            raise _ApiError(404, f"no order {text[:40]}")
        return int(text)

    def configuration(eid: str) -> dict[str, Any]:
        config = core.configuration(eid)
        return {
            "eimConfiguration": config.to_json(),
            "eimConfigurationData": config.encode().hex().upper(),
            "addInitialEimRequest": config.add_initial_eim_request().hex().upper(),
        }

    async def eim_info(request: Request) -> Response:
        settings = core.settings
        return json_response(
            200,
            {
                "eimId": settings.eim_id,
                "eimFqdn": core.eim_fqdn,
                "eimIdType": settings.eim_id_type,
                "eimPublicKey": pem(settings.public_key_info, "PUBLIC KEY"),
                "indirectProfileDownload": core.relay is not None,
            },
        )

    async def list_euiccs(request: Request) -> Response:
        return json_response(200, {"euiccs": [e.to_json() for e in core.store.euiccs()]})

    async def register(request: Request) -> Response:
        data = await _json_body(request)
        fields = (
            "eid",
            "euiccCertificate",
            "eumCertificate",
            "associationToken",
            "counterValue",
            "euiccCiPKId",
            "labels",
            "delivery",
            "sgp32",
        )
        _only(data, fields)
        eid = data.get("eid")
        if not isinstance(eid, str):
            raise _ApiError(400, "eid (32 digits) is required")
        ci: bytes | None | str = "default"
        if "euiccCiPKId" in data:
            value = data["euiccCiPKId"]
            if value is not None and not (isinstance(value, str) and is_hex(value, max_bytes=20)):
                raise _ApiError(400, "euiccCiPKId must be hex of 1..20 bytes, or null")
            ci = bytes.fromhex(value) if value is not None else None
        record = core.register(
            eid,
            euicc_certificate=_certificate(data, "euiccCertificate"),
            eum_certificate=_certificate(data, "eumCertificate"),
            association_token=_int(data, "associationToken"),
            counter_value=_int(data, "counterValue") or 0,
            euicc_ci_pkid=ci,
            labels=data.get("labels"),
            delivery=data.get("delivery"),
            sgp32=_version(data),
        )
        return json_response(201, {"euicc": record.to_json(), **configuration(record.eid)})

    async def get_euicc(request: Request) -> Response:
        record = core.store.euicc(eid_of(request))
        assert record is not None
        return json_response(200, {"euicc": record.to_json(), **configuration(record.eid)})

    async def patch_euicc(request: Request) -> Response:
        eid = eid_of(request)
        data = await _json_body(request)
        allowed = ("euiccCertificate", "eumCertificate", "associationToken", "counterValue")
        _only(data, (*allowed, "sgp32", "labels", "delivery"))
        record = core.update_registration(
            eid,
            euicc_certificate=_certificate(data, "euiccCertificate"),
            eum_certificate=_certificate(data, "eumCertificate"),
            association_token=_int(data, "associationToken"),
            counter_value=_int(data, "counterValue"),
            labels=data.get("labels"),
            delivery=data.get("delivery"),
            sgp32=_version(data),
        )
        return json_response(200, {"euicc": record.to_json(), **configuration(record.eid)})

    async def delete_euicc(request: Request) -> Response:
        core.store.delete_euicc(eid_of(request))
        return Response(status_code=204)

    async def get_configuration(request: Request) -> Response:
        return json_response(200, configuration(eid_of(request)))

    async def list_orders(request: Request) -> Response:
        orders = core.store.orders(eid_of(request))
        return json_response(200, {"orders": [o.to_json() for o in orders]})

    async def add_order(request: Request) -> Response:
        eid = eid_of(request)
        order = core.queue(eid, await _json_body(request))
        return json_response(201, order.to_json())

    async def list_events(request: Request) -> Response:
        events = core.store.events(eid_of(request))
        return json_response(200, {"events": [e.to_json() for e in events]})

    async def get_order(request: Request) -> Response:
        order = core.store.require_order(order_id(request))
        events = [e.to_json() for e in core.store.events(order_id=order.id)]
        return json_response(200, {**order.to_json(), "events": events})

    async def cancel_order(request: Request) -> Response:
        return json_response(200, core.cancel(order_id(request)).to_json())

    async def requeue_order(request: Request) -> Response:
        return json_response(200, core.requeue(order_id(request)).to_json())

    async def list_sessions(request: Request) -> Response:
        return json_response(200, {"sessions": [s.to_json() for s in core.store.sessions()]})

    def number(request: Request, name: str) -> int:
        text = request.path_params[name]
        if not (text.isascii() and text.isdigit()) or len(text) > 18:
            raise _ApiError(404, f"no {name.split('_')[0]} {text[:40]}")
        return int(text)

    async def list_campaigns(request: Request) -> Response:
        return json_response(200, {"campaigns": core.campaigns.list()})

    async def add_campaign(request: Request) -> Response:
        data = await _json_body(request)
        _only(data, ("name", "select", "order", "rollout", "follow"))
        for required in ("name", "select", "order"):
            if required not in data:
                raise _ApiError(400, f"{required} is required")
        view = core.campaigns.create(
            data["name"],
            data["select"],
            data["order"],
            data.get("rollout"),
            follow=data.get("follow", False),
        )
        return json_response(201, view)

    async def get_campaign(request: Request) -> Response:
        return json_response(200, core.campaigns.get(number(request, "campaign_id")))

    def campaign_action(action: str) -> _Handler:
        async def run(request: Request) -> Response:
            campaign_id = number(request, "campaign_id")
            operation = getattr(core.campaigns, action)
            return json_response(200, operation(campaign_id))

        return run

    async def events_stream(request: Request) -> Response:
        after: int | None = None
        given = request.query_params.get("after") or request.headers.get("last-event-id")
        if given is not None:
            if not (given.isascii() and given.isdigit()) or len(given) > 18:
                raise _ApiError(400, "Last-Event-ID / after must be an event id")
            after = int(given)
        types = tuple(t for t in request.query_params.get("types", "").split(",") if t)
        return StreamingResponse(
            sse_stream(core.store, after, types=types),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def feed(request: Request) -> Response:
        given = request.query_params.get("after", "0")
        if not (given.isascii() and given.isdigit()) or len(given) > 18:
            raise _ApiError(400, "after must be an event id")
        events = core.store.feed(after=int(given))
        return json_response(200, {"events": [e.to_json() for e in events]})

    async def list_webhooks(request: Request) -> Response:
        return json_response(200, {"webhooks": [w.to_json() for w in core.webhooks.list()]})

    async def add_webhook(request: Request) -> Response:
        data = await _json_body(request)
        _only(data, ("url", "secret", "after"))
        after = _int(data, "after", 0, 2**62)
        return json_response(
            201, core.webhooks.add(str(data.get("url", "")), data.get("secret"), after=after)
        )

    async def delete_webhook(request: Request) -> Response:
        core.webhooks.delete(number(request, "webhook_id"))
        return Response(status_code=204)

    table: list[tuple[str, _Handler, str]] = [
        ("/api/eim", eim_info, "GET"),
        ("/api/euiccs", list_euiccs, "GET"),
        ("/api/euiccs", register, "POST"),
        ("/api/euiccs/{eid}", get_euicc, "GET"),
        ("/api/euiccs/{eid}", patch_euicc, "PATCH"),
        ("/api/euiccs/{eid}", delete_euicc, "DELETE"),
        ("/api/euiccs/{eid}/configuration", get_configuration, "GET"),
        ("/api/euiccs/{eid}/orders", list_orders, "GET"),
        ("/api/euiccs/{eid}/orders", add_order, "POST"),
        ("/api/euiccs/{eid}/events", list_events, "GET"),
        ("/api/orders/{order_id}", get_order, "GET"),
        ("/api/orders/{order_id}", cancel_order, "DELETE"),
        ("/api/orders/{order_id}/requeue", requeue_order, "POST"),
        ("/api/sessions", list_sessions, "GET"),
        ("/api/campaigns", list_campaigns, "GET"),
        ("/api/campaigns", add_campaign, "POST"),
        ("/api/campaigns/{campaign_id}", get_campaign, "GET"),
        ("/api/campaigns/{campaign_id}/pause", campaign_action("pause"), "POST"),
        ("/api/campaigns/{campaign_id}/resume", campaign_action("resume"), "POST"),
        ("/api/campaigns/{campaign_id}/abort", campaign_action("abort"), "POST"),
        ("/api/events", events_stream, "GET"),
        ("/api/feed", feed, "GET"),
        ("/api/webhooks", list_webhooks, "GET"),
        ("/api/webhooks", add_webhook, "POST"),
        ("/api/webhooks/{webhook_id}", delete_webhook, "DELETE"),
    ]
    return [Route(path, guarded(handler), methods=[method]) for path, handler, method in table]
