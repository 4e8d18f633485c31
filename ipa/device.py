"""A small synchronous IPAd for scripts and firmware prototypes.

:class:`Ipad` owns the ES10 channel to the card, one event loop and the pull flow, and offers
blocking calls::

    from ipa.device import Ipad
    from ipa.pcsc import open_reader_transport

    with Ipad(open_reader_transport("0"), state_dir="/var/lib/ipad") as ipad:
        print(ipad.eid)
        ipad.run_forever()          # poll the eIM until stop is set (or Ctrl-C)

The eIM comes from the card's eIM configuration (``eimFqdn``); ``eim_url`` overrides where it
is reached (``http://127.0.0.1:8000`` for a lab eIM). Everything else is a
:class:`~ipa.pull.PullConfig`. One event loop serves every call, so the HTTPS connections to
the eIM are reused from cycle to cycle.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from collections.abc import Coroutine, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from ipa import es10_iot
from ipa.activation import ActivationCode
from ipa.channel import ChannelConfig
from ipa.download import DownloadResult, download_profile
from ipa.errors import IpaError
from ipa.es10 import Es10Client
from ipa.es10_iot import EimConfiguration
from ipa.esipa import EsipaClient
from ipa.indirect import download_profile_indirect
from ipa.pull import PollOutcome, ProfileSwitchHook, PullConfig, PullFlow
from ipa.transport import Transport

__all__ = ["Ipad"]

T = TypeVar("T")


class Ipad:
    """The IPAd of one device: card transport in, blocking pull-flow calls out.

    Args:
        transport: the card (``InProcessTransport(card)``, a PC/SC transport, ...).
        eim_url: where to reach the eIM instead of ``https://<eimFqdn>``.
        state_dir: directory for the IPAd's state file (pending results survive restarts).
        config: the pull-flow configuration (``eim_url`` overrides its field).
        channel: logical channel / STORE DATA settings.
        on_profile_switch: called after the enabled profile changed; returns True once the
            device is connected again (see :class:`~ipa.pull.PullFlow`).
        esipa: an ESipa client to use (tests); made from the eIM configuration otherwise.
    """

    def __init__(
        self,
        transport: Transport,
        eim_url: str | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        config: PullConfig | None = None,
        channel: ChannelConfig | None = None,
        on_profile_switch: ProfileSwitchHook | None = None,
        esipa: EsipaClient | None = None,
    ) -> None:
        config = config or PullConfig()
        if eim_url is not None:
            config = dataclasses.replace(config, eim_url=eim_url)
        self.config = config
        self._loop = asyncio.new_event_loop()
        self.client = Es10Client.open(transport, channel)
        self.flow = PullFlow(
            self.client,
            config,
            state_dir=state_dir,
            esipa=esipa,
            on_profile_switch=on_profile_switch,
        )

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coroutine)

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the ESipa client, the card channel and the event loop."""
        if self._loop.is_closed():
            return
        try:
            self._run(self.flow.aclose())
        finally:
            try:
                self.client.close()
            finally:
                self._loop.close()

    def __enter__(self) -> Ipad:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- card ----------------------------------------------------------------------------

    @property
    def eid(self) -> str:
        """The card's EID (32 digits)."""
        return self.flow.eid or self.client.get_eid()

    def eim_configuration(self) -> list[EimConfiguration]:
        """ES10b.GetEimConfigurationData: the eIMs the card is associated with."""
        return es10_iot.get_eim_configuration_data(self.client)

    def add_initial_eim(
        self, request: bytes | str | Path | Iterable[Mapping[str, Any]]
    ) -> list[int | None]:
        """ES10b.AddInitialEim (see :func:`ipa.es10_iot.add_initial_eim`)."""
        return es10_iot.add_initial_eim(self.client, request)

    # -- pull flow -----------------------------------------------------------------------

    def poll_once(self) -> PollOutcome:
        """One pull cycle (see :meth:`ipa.pull.PullFlow.poll_once`)."""
        return self._run(self.flow.poll_once())

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Poll until ``stop`` is set (from another thread) or Ctrl-C, waiting each cycle's
        back-off delay in between."""
        stop = stop or threading.Event()
        try:
            while not stop.is_set():
                outcome = self.poll_once()
                stop.wait(outcome.next_delay)
        except KeyboardInterrupt:
            pass

    # -- downloads -----------------------------------------------------------------------

    def download(
        self, activation_code: ActivationCode | str, *, indirect: bool = False, **options: Any
    ) -> DownloadResult:
        """Download a profile now: directly from the SM-DP+ (ES9+ with ``config.es9``) or, with
        ``indirect``, through the eIM. Takes the options of
        :func:`ipa.download.download_profile` (confirmation_code, consent, ...)."""
        if not indirect:
            options.setdefault("config", self.config.es9)
            options.setdefault("device_info", self.config.device_info)
            return self._run(download_profile(self.client, activation_code, **options))
        esipa = self.flow.esipa
        if esipa is None:
            if not self._run(self.flow.boot()) or self.flow.esipa is None:
                raise IpaError("no eIM is configured to download through")
            esipa = self.flow.esipa
        options.setdefault("device_info", self.config.device_info)
        return self._run(download_profile_indirect(self.client, esipa, activation_code, **options))
