"""ISD-R: receives whole ES10 requests from the card OS and dispatches them by BER tag.

Which tag means which function comes from the ES10 catalogue (:mod:`euicc_protocol.es10`), which
derives the tags from the ASN.1 schema. Handlers live in :mod:`es10a`, :mod:`es10b` and
:mod:`es10c`, keyed by the ASN.1 name of their request type. A handler takes the
:class:`IsdrContext` and the decoded request and returns either the response value (encoded
here with the function's response type) or ``bytes`` it encoded itself (hot paths that
cache encodings).

ES10 functional errors are answered inside the response (result codes), never with status
words. Status words are reserved for transport-level problems: an unknown tag (``6A88``) or
a request the strict decoder (:mod:`euicc_protocol.der`) refuses (``6A80``), unless the
function defines its own result for a value outside a constraint
(``_OWN_CONSTRAINT_RESULTS``).

A handler wrapped in :class:`RawHandler` gets the request bytes exactly as received instead
of a decoded value: signed requests need them (signatures cover the received bytes, never a
re-encoding), and LoadBoundProfilePackage arrives as pieces that are no complete DER values.
The pieces after the first (``A0``, ``A1`` header, ``88``, ``A2``, ``A3`` header, ``86``) are
routed to the same handler by their first tag (``continuation_tags``); the handler answers
``6A88`` itself when no package is being loaded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from euicc_protocol import es10 as catalogue
from euicc_protocol import schema, tlv

from . import gp
from .apdu import SW_MEMORY_FAILURE, StatusWordError
from .config import CardConfig
from .ecasd import ECASD_AID, Credentials, fci
from .proactive import ProactiveSession
from .state import CardState
from .storage import StorageError, StorageWriteError

log = logging.getLogger(__name__)

ISDR_AID = bytes.fromhex("A0000005591010FFFFFFFF8900000100")

Handler = Callable[["IsdrContext", Any], Any]


@dataclass(frozen=True)
class RawHandler:
    """A handler that takes the raw request bytes and returns the encoded response.

    ``continuation_tags``: first tags of the further STORE DATA sequences of a segmented
    function (LoadBoundProfilePackage), which are dispatched to this handler too.
    """

    fn: Callable[[IsdrContext, bytes], bytes]
    continuation_tags: frozenset[bytes] = frozenset()

    def __call__(self, ctx: IsdrContext, request: bytes) -> bytes:
        return self.fn(ctx, request)


class IsdrContext:
    """What handlers may use: the committed state, the keys, the config and a session."""

    def __init__(
        self,
        *,
        config: CardConfig,
        credentials: Credentials,
        storage: Any,
        state: CardState,
        random_bytes: Callable[[int], bytes] = os.urandom,
        proactive: ProactiveSession | None = None,
    ) -> None:
        self.config = config
        #: The card's proactive session (REFRESH after a switch, :mod:`euicc_sim.proactive`).
        self.proactive = proactive if proactive is not None else ProactiveSession()
        self.credentials = credentials
        self.storage = storage
        self.random_bytes = random_bytes
        self.eid = bytes.fromhex(config.eid)
        self._state = state
        #: Volatile session data (challenge, download session); cleared on reset.
        self.session: dict[str, Any] = {}
        #: RAM that outlives sessions and resets but is never persisted: the one-time key pair
        #: a retried PrepareDownload may reuse (a real card keeps it in NVM; secrets stay out
        #: of state.json, so a card reopened from disk has none).
        self.retained: dict[str, Any] = {}
        #: Per-card caches of encodings that only depend on the state they were made from.
        self.cache: dict[Any, Any] = {}
        #: Set by a storage failure that :meth:`recover` could not yet repair: until it can,
        #: the card answers every command ``6581`` (it never answers from stale memory).
        self.needs_recovery = False

    @property
    def state(self) -> CardState:
        """The last committed state."""
        return self._state

    def commit(self, new_state: CardState) -> None:
        """Persist ``new_state`` atomically; only then does it become the card's state.

        If the storage fails, the state becomes whatever the storage then holds (see
        :meth:`recover`): the new state if the commit point was passed (this returns normally:
        the command is done), the old one otherwise (the error is raised: it is not).
        """
        if new_state is self._state:
            return
        try:
            self.storage.commit(new_state)
        except StorageWriteError as exc:
            log.error("card storage failed: %s", exc)
            if self.recover():
                if self._state == new_state:
                    return
                raise
            # The storage is unreadable for now: trust what it said about the commit point.
            # Further commands are refused until recover() succeeds.
            if exc.committed:
                self._state = new_state
                return
            raise
        self._state = new_state

    def recover(self) -> bool:
        """Read the committed state again from the storage after an I/O error.

        Returns ``False`` (and leaves :attr:`needs_recovery` set) if the storage fails again.
        """
        self.needs_recovery = True
        try:
            state = self.storage.recover()
        except (OSError, StorageError) as exc:
            log.error("card storage still failing: %s", exc)
            return False
        if state is None:  # pragma: no cover - a card always has a committed state
            log.error("card storage lost its state")
            return False
        self._state = state
        self.needs_recovery = False
        return True

    def reset(self) -> None:
        self.session.clear()

    def cat_busy(self, refresh: bool) -> bool:
        """Whether a switch asking for a REFRESH must answer catBusy (proactive rule 3)."""
        return refresh and self.proactive.busy

    def refresh_after_switch(self, refresh: bool) -> None:
        """Queue the REFRESH of a committed switch when the device asked for one (rule 1)."""
        if refresh:
            self.proactive.queue_refresh()


#: Requests whose function answers a value outside a SIZE or range constraint with a result
#: of its own, after its other checks: the handler gets the value decoded without the
#: constraints (every other rule holds) instead of ``6A80``. SetNickname: a nickname over 64
#: characters is undefinedError, an unknown ICCID still iccidOrAidNotFound (SGP.22 §5.7.21).
_OWN_CONSTRAINT_RESULTS = frozenset({"SetNicknameRequest"})
_CONSTRAINTS = (schema.Rule.SIZE, schema.Rule.RANGE)


class IsdR:
    """The ISD-R application (an :class:`euicc_sim.application.Application`)."""

    aid = ISDR_AID

    def __init__(self, context: IsdrContext, handlers: dict[str, Handler]) -> None:
        self.context = context
        # The card's kind picks its ES10 catalogue: an IoT card answers what SGP.32 gives the
        # IPAd (no local ES10c profile management), a consumer card answers SGP.22 only. A
        # function outside the catalogue is an unknown tag (6A88), like any other.
        profile = "sgp32" if context.config.is_iot else "sgp22"
        self._functions = dict(catalogue.catalogue_for(profile))
        self._handlers = handlers
        svn = bytes(context.config.svn)
        # ISDRProprietaryApplicationTemplate E0 { 82 svn } inside the FCI (placement per GP).
        self._fci = fci(ISDR_AID, bytes([0xE0, 5, 0x82, 3]) + svn)
        self._dispatch: dict[bytes, tuple[str, Handler]] = {}
        self._continuations: dict[bytes, RawHandler] = {}
        for tag, function in self._functions.items():
            handler = handlers.get(function.request_type)
            if handler is not None:
                self._dispatch[bytes(tag)] = (function.response_type, handler)
                if isinstance(handler, RawHandler):
                    self._continuations.update(dict.fromkeys(handler.continuation_tags, handler))
        self._request_types = {bytes(tag): f.request_type for tag, f in self._functions.items()}
        # GlobalPlatform GET DATA / GET STATUS (euicc_sim.gp).
        config = context.config
        self._gp_objects = gp.card_wide_objects(config.globalplatform_version, context.eid)
        key_info = gp.isdr_key_information()
        self._gp_objects[0xE0] = lambda: key_info
        self._gp_objects[0xC1] = lambda: b"\xc1\x03\x00\x00\x00"  # no SCP03 session yet
        self._gp_objects[0xFF21] = lambda: tlv.encode_tlv(
            b"\xff\x21", gp.ext_card_resources(context.state, config.profile_memory)
        )
        self._gp_status = gp.StatusReporter(
            lambda: gp.isdr_registry(ISDR_AID, ECASD_AID, context.state)
        )
        #: The SGP.32 module each request is decoded (and answered) with.
        self._versions: dict[bytes, str] = {}
        if context.config.is_iot and context.config.sgp32 == "1.0":
            self._speak_v1_0()

    def _speak_v1_0(self) -> None:
        """An SGP.32 v1.0.1 card (:mod:`euicc_sim.iot_v1_0`): v1.2-only functions go, the
        v1.0.1 forms replace the ones v1.2 changed."""
        from . import iot_v1_0

        for tag in iot_v1_0.V1_2_ONLY_TAGS:
            self._dispatch.pop(tag, None)
        for tag, (request_type, response_type, handler) in iot_v1_0.FUNCTIONS.items():
            self._dispatch[tag] = (response_type, handler)
            self._request_types[tag] = request_type
            self._versions[tag] = "1.0"

    def select_response(self) -> bytes:
        return self._fci

    def get_data(self, tag: int) -> bytes:
        """GlobalPlatform GET DATA (:mod:`euicc_sim.gp` rule 1)."""
        return gp.lookup(self._gp_objects, tag)

    def get_status(self, channel: int, p1: int, p2: int, data: bytes) -> tuple[bytes, int]:
        """GlobalPlatform GET STATUS (:mod:`euicc_sim.gp` rules 3, 4)."""
        return self._gp_status.get_status(channel, p1, p2, data)

    def store_data(self, channel: int, request: bytes) -> bytes:
        try:
            return self._store_data(request)
        except (OSError, StorageError) as exc:
            # The command was not done (a commit that passed its commit point returns
            # normally, see IsdrContext.commit): ISO/IEC 7816-4 "memory failure".
            log.error("ES10 command failed on the card's storage: %s", exc)
            self.context.recover()
            raise StatusWordError(SW_MEMORY_FAILURE) from None

    def _store_data(self, request: bytes) -> bytes:
        try:
            tag = tlv.first_tag(request)
        except tlv.TlvError:
            raise StatusWordError(0x6A80) from None
        entry = self._dispatch.get(tag)
        if entry is None:
            continuation = self._continuations.get(tag)
            if continuation is not None:
                return continuation(self.context, request)
            log.info("ES10 request with unsupported tag %s", tag.hex().upper())
            raise StatusWordError(0x6A88)
        response_type, handler = entry
        if isinstance(handler, RawHandler):
            return handler(self.context, request)
        request_type = self._request_types[tag]
        version = self._versions.get(tag, "1.2")
        try:
            value = schema.decode(request_type, request, sgp32=version)
        except schema.StrictDecodeError as exc:
            log.info("undecodable ES10 request: %s", exc)
            if request_type not in _OWN_CONSTRAINT_RESULTS or exc.rule not in _CONSTRAINTS:
                raise StatusWordError(0x6A80) from None
            value = schema.decode(request_type, request, constraints=False, sgp32=version)
        result = handler(self.context, value)
        if isinstance(result, bytes | bytearray):
            return bytes(result)
        return schema.encode(response_type, result, sgp32=version)

    def reset(self) -> None:
        self.context.reset()
        self._gp_status.forget()

    def channel_closed(self, channel: int) -> None:
        self._gp_status.forget(channel)

    @property
    def functions(self) -> dict[bytes, catalogue.Es10Function]:
        """The ES10 functions this ISD-R answers, by request tag (its kind's catalogue)."""
        return {tag: f for tag, f in self._functions.items() if tag in self._dispatch}

    def supported_tags(self) -> list[bytes]:
        """Request tags this ISD-R answers (for tests and documentation)."""
        return sorted(self._dispatch)
