"""Delivery modes for the fleet runner: one :class:`~ipa.listen.ListenServer` answers the eIM's
pushes and wake-ups for the fleet's devices that are not (only) polled.

Each device runs in one of three modes (:class:`DeliveryMode`): *poll* (the pull flow alone),
*push* (the eIM sends TransferEimPackage to ``url_for(eid)``; the device's package runs on its
card in the fleet's event loop, so it never overlaps a card command of the device's own
cycle), or *wakeup* (a POST to ``url_for(eid)/wake-up`` makes the device's next cycle run at
once, :meth:`Fleet.wake`). Devices in push and wake-up mode still poll at their own pace (the
pull flow's interval): that is how they learn of what cannot be pushed (download triggers).
"""

from __future__ import annotations

import asyncio
import enum
import ssl
import threading
from collections.abc import Mapping

from ipa.fleet import Device, Fleet
from ipa.listen import ListenServer, PushHandler

__all__ = ["DeliveryMode", "FleetListener"]


class DeliveryMode(enum.StrEnum):
    """How the eIM reaches a device (the eIM's ``delivery.mode``)."""

    POLL = "poll"
    PUSH = "push"
    WAKEUP = "wakeup"


class _LoopHandler(PushHandler):
    """A push handler whose card work runs in the fleet's event loop."""

    def __init__(self, device: Device, loop: asyncio.AbstractEventLoop, fleet: Fleet) -> None:
        def wake() -> None:
            loop.call_soon_threadsafe(fleet.wake, device)

        super().__init__(device.client, on_wakeup=wake)
        self.loop = loop

    def handle(self, message: bytes) -> bytes:
        async def run() -> bytes:
            return PushHandler.handle(self, message)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30.0)


class FleetListener:
    """The listener of a fleet's push and wake-up devices (``modes``: EID → mode; devices not
    named poll). Open the fleet first (the EIDs are read then); ``loop`` is the fleet's."""

    def __init__(
        self,
        fleet: Fleet,
        loop: asyncio.AbstractEventLoop,
        modes: Mapping[str, DeliveryMode | str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        handlers: dict[str, PushHandler] = {}
        self.modes: dict[str, DeliveryMode] = {}
        for device in fleet.devices:
            eid = device.eid
            mode = DeliveryMode(modes.get(eid, DeliveryMode.POLL)) if eid else DeliveryMode.POLL
            if eid is None or mode is DeliveryMode.POLL:
                continue
            handler = _LoopHandler(device, loop, fleet)
            if mode is DeliveryMode.PUSH:
                handler.on_wakeup = None  # a push device is not woken, it is sent the package
            handlers[eid] = handler
            self.modes[eid] = mode
        self.server = ListenServer(handlers, host=host, port=port, tls=tls)
        self._thread: threading.Thread | None = None

    def delivery_for(self, eid: str) -> dict[str, str]:
        """The eIM ``delivery`` setting of ``eid`` (``{"mode": ..., "url": ...}``)."""
        mode = self.modes.get(eid, DeliveryMode.POLL)
        if mode is DeliveryMode.POLL:
            return {"mode": "poll"}
        return {"mode": mode.value, "url": self.server.url_for(eid)}

    def start(self) -> FleetListener:
        """Serve in a daemon thread."""
        self.server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.server.stop()

    def __enter__(self) -> FleetListener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
