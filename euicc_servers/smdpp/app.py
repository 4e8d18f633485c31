"""The SM-DP+ as a Starlette ASGI app: ES9+ JSON binding over HTTP(S) and an operator API.

ES9+ (GSMA SGP.22 v2.5 §6.5.1): ``POST /gsma/rsp2/es9plus/<function>``. :func:`execute` is the
JSON binding: ASN.1 objects travel as standard base64 (with padding; whitespace ignored on
input) of the complete TLV, euiccChallenge as base64 of its 16 raw bytes, transactionId as
hex (uppercase on output); a missing field is 1.3.1/2.2, a malformed one 1.3.1/2.1.

The request must carry ``Content-Type: application/json`` (a ``charset`` parameter, if any,
must be UTF-8) else 1.2.1/2.1, and an ``X-Admin-Protocol`` starting with ``gsma/rsp/v2`` else
1.2.2/2.1; a body that is not JSON is 1.3.1/2.1. All of these, like every function error, are
HTTP 200 with status Failed. Responses carry ``Content-Type: application/json;charset=UTF-8`` and
``X-Admin-Protocol: gsma/rsp/v2.5.0``; handleNotification answers 204 with no body.

Operator API (JSON; every call needs ``Authorization: Bearer <token>``, else 401: see
:mod:`euicc_servers.common.auth`):

* ``GET /admin/orders`` — all orders; ``GET /admin/orders/{matchingId}`` — one order;
* ``POST /admin/orders`` — add one: ``{"matchingId", "profile", "eid"?, "confirmationCode"?,
  "replaceSessionKeys"?, "profileName"?, "serviceProviderName"?, "profileClass"?, "ppr1"?,
  "ppr2"?, "notifications"?}``; ``profile`` is a file name in the profiles directory;
* ``POST /admin/orders/{matchingId}/release`` — make it downloadable again;
* ``DELETE /admin/orders/{matchingId}``.

Every request passes :class:`~euicc_servers.common.limits.RequestGuard` first (body size and
time limits) and JSON is read with :func:`~euicc_servers.common.limits.parse_json` (depth,
integer size): hostile input gets a 4xx or a function error, never a 500.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from euicc_protocol import bindings

from ..common import is_json_content_type, json_error, json_response
from ..common.functions import (
    ADMIN_PROTOCOL,
    JSON_CONTENT_TYPE,
    FunctionFailed,
    failed_response,
    function_response,
)
from ..common.limits import JsonError, RequestGuard, exception_handlers, parse_json
from .es9p import SmdpCore
from .orders import OrderError, OrderEvent

__all__ = ["ADMIN_PROTOCOL", "FUNCTIONS", "JSON_CONTENT_TYPE", "create_app", "execute"]

log = logging.getLogger(__name__)

_ACCEPTED_PROTOCOL_PREFIX = "gsma/rsp/v2"

#: The ES9+ functions and their JSON fields (:mod:`euicc_protocol.bindings`).
FUNCTIONS = bindings.ES9PLUS


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", name).lower()


def binding_failure(exc: bindings.BindingError) -> FunctionFailed:
    """The function error of a request that does not follow its JSON binding."""
    return FunctionFailed("1.3.1", "2.2" if exc.missing else "2.1", str(exc))


def execute(core: SmdpCore, function: str, body: Any) -> tuple[int, dict[str, Any] | None]:
    """Run ES9+ ``function`` of ``core`` on a decoded JSON request body (the JSON binding).

    Returns (200, response body with ``header``), or (204, None) for handleNotification.

    Raises:
        KeyError: ``function`` is not one of :data:`FUNCTIONS`.
    """
    binding = FUNCTIONS[function]
    try:
        if not isinstance(body, dict):
            raise FunctionFailed("1.3.1", "2.1", "the request body must be a JSON object")
        if not isinstance(body.get("header") or {}, dict):
            raise FunctionFailed("1.3.1", "2.1", "header must be a JSON object")
        try:
            values = bindings.decode(binding.request, body)
        except bindings.BindingError as exc:
            raise binding_failure(exc) from None
        kwargs = {_snake(name): value for name, value in values.items()}
        result = getattr(core, _snake(function))(**kwargs)
    except FunctionFailed as exc:
        if function == "handleNotification":
            log.warning("handleNotification: %s", exc)  # always 204, as real SM-DP+s do
            return 204, None
        log.info("%s failed: %s", function, exc)
        return 200, failed_response(exc)
    if result is None:
        return 204, None
    success = {"functionExecutionStatus": {"status": "Executed-Success"}}
    return 200, {"header": success, **bindings.encode(binding.response, result)}


_es9_response = function_response


def create_app(core: SmdpCore, *, profiles_dir: str | Path | None = None) -> Starlette:
    """The ASGI app serving ``core``; the operator API resolves profile names in
    ``profiles_dir`` (without it, ``profile`` must be a path)."""
    profiles = Path(profiles_dir).resolve() if profiles_dir is not None else None

    async def es9plus(request: Request) -> Response:
        function = request.path_params["function"]
        if function not in FUNCTIONS:
            return _es9_response(
                404, failed_response(FunctionFailed("1.3.1", "2.1", f"unknown function {function}"))
            )
        if not is_json_content_type(request.headers.get("content-type")):
            return _es9_response(
                200,
                failed_response(
                    FunctionFailed("1.2.1", "2.1", "Content-Type must be application/json")
                ),
            )
        protocol = request.headers.get("x-admin-protocol", "")
        if not protocol.startswith(_ACCEPTED_PROTOCOL_PREFIX):
            return _es9_response(
                200,
                failed_response(
                    FunctionFailed("1.2.2", "2.1", f"unsupported X-Admin-Protocol {protocol!r}")
                ),
            )
        try:
            body = parse_json(await request.body(), core.config.limits)
        except JsonError as exc:
            return _es9_response(200, failed_response(FunctionFailed("1.3.1", "2.1", str(exc))))
        if core.orders.directory is None:
            # Nothing to write to disk, only a few milliseconds of CPU: a worker thread
            # would add two thread switches per request and no parallelism (the GIL).
            status, out = execute(core, function, body)
        else:
            # The fsync of the order store runs off the event loop.
            status, out = await run_in_threadpool(execute, core, function, body)
        return _es9_response(status, out)

    def operator(handler: _Handler) -> _Handler:
        async def run(request: Request) -> Response:
            if not core.auth.allows(request.headers.get("authorization")):
                return json_error(401, "unauthorised: send Authorization: Bearer <token>")
            return await handler(request)

        return run

    def resolve_profile(name: str) -> Path:
        if profiles is None:
            return Path(name)
        path = (profiles / name).resolve()
        if not path.is_relative_to(profiles):
            raise OrderError(f"profile {name!r} is outside the profiles directory")
        return path

    @operator
    async def list_orders(request: Request) -> Response:
        return json_response(200, {"orders": [o.to_json(public=True) for o in core.orders]})

    @operator
    async def add_order(request: Request) -> Response:
        try:
            data = parse_json(await request.body(), core.config.limits)
        except JsonError as exc:
            return json_error(400, str(exc))
        problem = _order_problem(data)
        if problem is not None:
            return json_error(400, problem)
        if core.orders.get(data["matchingId"]) is not None:
            return json_error(409, f"an order with matchingId {data['matchingId']!r} exists")
        try:
            order = core.orders.add_order(
                data["matchingId"],
                resolve_profile(data["profile"]),
                eid=data.get("eid"),
                confirmation_code=data.get("confirmationCode"),
                replace_session_keys=data.get("replaceSessionKeys", True),
                profile_name=data.get("profileName"),
                service_provider_name=data.get("serviceProviderName"),
                profile_class=data.get("profileClass"),
                ppr1=data.get("ppr1", False),
                ppr2=data.get("ppr2", False),
                notifications=data.get("notifications", True),
            )
        except (OrderError, OSError, ValueError) as exc:
            return json_error(400, str(exc))
        return json_response(201, order.to_json(public=True))

    @operator
    async def get_order(request: Request) -> Response:
        order = core.orders.get(request.path_params["matching_id"])
        if order is None:
            return json_error(404, "no such order")
        return json_response(200, order.to_json(public=True))

    @operator
    async def delete_order(request: Request) -> Response:
        try:
            core.orders.remove(request.path_params["matching_id"])
        except OrderError:
            return json_error(404, "no such order")
        return Response(status_code=204)

    @operator
    async def release_order(request: Request) -> Response:
        try:
            order = core.orders.transition(request.path_params["matching_id"], OrderEvent.RELEASE)
        except OrderError:
            return json_error(404, "no such order")
        return json_response(200, order.to_json(public=True))

    routes = [
        Route("/gsma/rsp2/es9plus/{function}", es9plus, methods=["POST"]),
        Route("/admin/orders", list_orders, methods=["GET"]),
        Route("/admin/orders", add_order, methods=["POST"]),
        Route("/admin/orders/{matching_id}", get_order, methods=["GET"]),
        Route("/admin/orders/{matching_id}", delete_order, methods=["DELETE"]),
        Route("/admin/orders/{matching_id}/release", release_order, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestGuard, limits=core.config.limits)],  # type: ignore[arg-type]
        exception_handlers=exception_handlers(),
    )
    app.state.core = core
    return app


_Handler = Callable[[Request], Awaitable[Response]]
_ORDER_TEXT = ("eid", "confirmationCode", "profileName", "serviceProviderName", "profileClass")
_ORDER_FLAGS = ("replaceSessionKeys", "ppr1", "ppr2", "notifications")


def _order_problem(data: Any) -> str | None:
    """What is wrong with an operator order body, or ``None``."""
    if not isinstance(data, dict):
        return "the body must be a JSON object"
    if not isinstance(data.get("matchingId"), str) or not isinstance(data.get("profile"), str):
        return "matchingId and profile (strings) are required"
    unknown = sorted(set(data) - {"matchingId", "profile", *_ORDER_TEXT, *_ORDER_FLAGS})
    if unknown:
        return f"unknown field(s) {', '.join(unknown)}"
    if any(not isinstance(data.get(k, ""), str) for k in _ORDER_TEXT):
        return f"{', '.join(_ORDER_TEXT)} must be strings when given"
    if any(not isinstance(data.get(k, False), bool) for k in _ORDER_FLAGS):
        return f"{', '.join(_ORDER_FLAGS)} must be true or false when given"
    if "\0" in data["profile"] or len(data["profile"]) > 255:
        return "profile must be a file name"
    return None
