"""Delivery modes: how an order reaches its eUICC (set per eUICC by the operator).

* ``{"mode": "poll"}`` (default): the IPAd asks with GetEimPackage (SGP.32 §3.5, the only
  mode every IPAd has).
* ``{"mode": "push", "url": "https://device:port/base"}``: the eIM is the HTTP client and sends
  the package as an ESipa TransferEimPackageRequest (``BF4E``, ASN.1 binding:
  ``POST <url>/gsma/rsp2/asn1``, ``Content-Type: application/x-gsma-rsp-asn1``). The
  TransferEimPackageResponse is taken exactly as the same result would be in a
  ProvideEimPackageResult (rules 3-5 of :mod:`.esipa`: only a verified result completes the
  order); the acknowledgements that result earns are pushed at once as a
  TransferEimPackageRequest eimAcknowledgements (``BF53``), answered eimPackageReceived.
  eimPackageError is recorded as an unverified report. Download triggers are not pushed:
  they wait for the device's poll, as a download is a long exchange the IPAd starts.
* ``{"mode": "wakeup", "url": "https://device:port/base"}``: when an order waits for the
  eUICC, the eIM POSTs (empty body) to ``<url>/wake-up``, and the device polls at once. SGP.32
  leaves the trigger mechanism open (SMS, a push service, a vendor channel); an HTTP POST
  stands for all of them here. A device is woken again after :data:`REWAKE` seconds while the
  order still waits.

A delivery that fails (unreachable, non-200) leaves the order as it was (a pushed package is
*sent*: the same bytes are pushed again, or fetched by a poll) and is retried after 1, 2, 4 ...
60 seconds.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from euicc_protocol import tlv

from .results import PACKAGE_KINDS
from .store import OrderState

if TYPE_CHECKING:
    from .esipa import EimCore

__all__ = ["DeliveryError", "Pusher", "REWAKE", "parse_delivery"]

log = logging.getLogger(__name__)

ASN1_CONTENT_TYPE = "application/x-gsma-rsp-asn1"
#: Seconds after which a device whose order still waits is woken again.
REWAKE = 30.0
_MODES = ("poll", "push", "wakeup")
_PUSHED_KINDS = (*PACKAGE_KINDS, "euiccData")


class DeliveryError(ValueError):
    """A delivery setting is invalid."""


def parse_delivery(value: Any) -> dict[str, Any]:
    """A validated delivery setting (see the module doc).

    Raises:
        DeliveryError: unknown mode, or push/wakeup without an http(s) URL.
    """
    if not isinstance(value, dict) or value.get("mode") not in _MODES:
        raise DeliveryError(f"delivery must be an object with mode {', '.join(_MODES)}")
    if set(value) - {"mode", "url"}:
        raise DeliveryError("delivery takes mode and url only")
    if value["mode"] == "poll":
        return {"mode": "poll"}
    url = value.get("url")
    if not isinstance(url, str):
        raise DeliveryError(f"delivery mode {value['mode']} needs an http(s) url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryError(f"delivery mode {value['mode']} needs an http(s) url")
    return {"mode": value["mode"], "url": url.rstrip("/")}


class Pusher:
    """Push and wake-up delivery of one eIM (``core.pusher``); :meth:`step` is called by the
    scheduler. ``verify``: how the devices' TLS certificates are checked."""

    def __init__(self, core: EimCore, verify: ssl.SSLContext | bool = True) -> None:
        self.core = core
        self.verify = verify
        self._retry: dict[str, tuple[int, float]] = {}  # EID -> (failures, next attempt)
        self._woken: dict[tuple[str, int], float] = {}  # (EID, order) -> when
        self._client: httpx.AsyncClient | None = None

    async def close(self) -> None:
        """Close the HTTP connections to devices."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def step(self) -> int:
        """One delivery attempt for every push/wake-up device with work; returns how many
        requests were answered 2xx."""
        if self._client is None:
            self._client = httpx.AsyncClient(verify=self.verify, timeout=10.0)
        answered = 0
        now = time.monotonic()
        # Only devices that are not polled (a poll fleet costs this step one small query).
        rows = self.core.store.rows(
            "SELECT eid, delivery FROM euiccs WHERE delivery IS NOT NULL "
            "AND delivery NOT LIKE '%\"poll\"%'"
        )
        targets = {r["eid"]: json.loads(r["delivery"]) for r in rows}
        targets = {e: d for e, d in targets.items() if d.get("mode") in ("push", "wakeup")}
        waiting = [
            o
            for eid in targets
            for o in self.core.store.orders(eid, states=[OrderState.QUEUED, OrderState.SENT])
        ]
        for eid in dict.fromkeys(o.eid for o in waiting):
            delivery = targets[eid]
            failures, due = self._retry.get(eid, (0, 0.0))
            if due > now:
                continue
            try:
                if delivery["mode"] == "push":
                    ok = await self._push(eid, delivery["url"])
                else:
                    ok = await self._wake(eid, delivery["url"], waiting, now)
            except httpx.HTTPError as exc:
                log.info("delivery to %s failed: %s", eid, exc)
                ok = False
            except Exception:  # one device's bad answer must not stop the others
                log.exception("delivery to %s failed", eid)
                ok = False
            if ok:
                answered += 1
                self._retry.pop(eid, None)
            elif ok is False:
                self._retry[eid] = (failures + 1, now + min(60.0, 2.0**failures))
        return answered

    async def _wake(self, eid: str, url: str, waiting: list[Any], now: float) -> bool | None:
        order = next(o for o in waiting if o.eid == eid)
        woken = self._woken.get((eid, order.id))
        if woken is not None and now - woken < REWAKE:
            return None
        assert self._client is not None
        response = await self._client.post(url + "/wake-up", content=b"")
        if not response.is_success:
            return False
        self._woken[(eid, order.id)] = now
        self.core.store.publish("euicc.woken", {"eid": eid, "orderId": order.id})
        return True

    async def _push(self, eid: str, url: str) -> bool | None:
        package = self._package(eid)
        if package is None:
            return None
        answer = await self._transfer(url, tlv.encode_tlv(b"\xbf\x4e", package))
        if answer is None:
            return False
        inner = answer[tlv.read_tlv(answer).value_start :]
        eid_tlv = tlv.encode_tlv(b"\x5a", bytes.fromhex(eid))
        if inner[:1] == b"\x02":  # eimPackageError: the IPAd's word, unsigned
            tid = self._sent_tid(eid)
            error = tlv.encode_tlv(b"\x80", tid) if tid else b""
            result = tlv.encode_tlv(b"\xa0", error + inner)
            self.core.handle(tlv.encode_tlv(b"\xbf\x50", eid_tlv + result))
            return True
        if inner[:2] in (b"\xbf\x51", b"\xbf\x52") or inner[:1] == b"\x30":
            reply = self.core.provide_eim_package_result(
                tlv.encode_tlv(b"\xbf\x50", eid_tlv + inner)
            )
            acks = reply[tlv.read_tlv(reply).value_start :]
            if acks[:2] == b"\xbf\x53":
                await self._transfer(url, tlv.encode_tlv(b"\xbf\x4e", acks))
        return True

    def _package(self, eid: str) -> bytes | None:
        """The package to push: the one sent already, else the next queued order's (which the
        eIM signs and marks sent as for a poll). Download triggers are left for the poll."""
        pending = self.core.store.find_order(eid, states=[OrderState.QUEUED, OrderState.SENT])
        if pending is None or pending.kind not in _PUSHED_KINDS:
            return None
        record = self.core.store.euicc(eid)
        assert record is not None
        with self.core.store.transaction():
            return self.core.next_package(record)

    def _sent_tid(self, eid: str) -> bytes | None:
        order = self.core.store.find_order(eid, states=[OrderState.SENT])
        return order.eim_transaction_id if order is not None else None

    async def _transfer(self, url: str, message: bytes) -> bytes | None:
        assert self._client is not None
        response = await self._client.post(
            url + "/gsma/rsp2/asn1",
            content=message,
            headers={"Content-Type": ASN1_CONTENT_TYPE, "X-Admin-Protocol": "gsma/rsp/v2.1.0"},
        )
        body = response.content
        if response.status_code != 200 or body[:2] != b"\xbf\x4e":
            log.info("push to %s: HTTP %d", url, response.status_code)
            return None
        try:
            item = tlv.read_tlv(body)
        except tlv.TlvError:
            return None
        return body if item.end == len(body) else None
