"""The card object: one software eUICC with its directory, keys, applications and card OS.

``Euicc.create(directory)`` makes a new card (as a factory would: keys, certificates,
configuration, an empty profile store), ``Euicc.open(directory)`` powers an existing one up.
Everything talks to it through ``transmit(apdu) -> response`` and ``reset() -> ATR``.

A card object owns its directory until :meth:`Euicc.close` (or the end of a ``with`` block, or
of the process): a second opener gets :class:`CardBusy`, or waits for it with ``wait``. After
a storage I/O error the card reads its state again from disk before it answers anything else;
while it cannot, it answers every command ``6581`` (memory failure). See docs/card.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from euicc_protocol import saip
from euicc_protocol.crypto import Curve
from euicc_protocol.iccid import iccid_to_ef

from . import bpp, crl, download, eim, es10a, es10b, es10c, euicc_package, iot, profiles
from . import credentials as make
from .apdu import SW_MEMORY_FAILURE, sw_bytes
from .cardos import CardOS
from .config import CardConfig
from .ecasd import Ecasd, load_credentials, store_credentials
from .errors import CardBusy, CardClosed, CardError
from .filesystem import FileSystem
from .isdr import IsdR, IsdrContext
from .proactive import ProactiveSession
from .registry import HandlerTable
from .state import CardState, NotificationConfig, NotificationEvent, Profile, ProfileClass
from .storage import STATE_FILE, DirectoryStorage, MemoryStorage, StorageError
from .uicc.uicc import ProfileSource, Uicc

__all__ = ["CardBusy", "CardClosed", "CardError", "Euicc", "ProfileInstallError"]

log = logging.getLogger(__name__)

_CONFIG_FILE = "config.json"
_SW_MEMORY_FAILURE = sw_bytes(SW_MEMORY_FAILURE)
#: Instructions a card whose storage fails still serves: GET RESPONSE, MANAGE CHANNEL, and the
#: proactive session (TERMINAL PROFILE, FETCH, TERMINAL RESPONSE), which is volatile: a switch
#: that reached the disk still delivers its REFRESH.
_STATELESS_INS = (b"\xc0", b"\x70", b"\x10", b"\x12", b"\x14")


class ProfileInstallError(CardError):
    """A profile package could not be installed (result code and reason in the message)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


_INSTALL_ERRORS = {
    profiles.INSTALL_FAILED_ICCID_ALREADY_EXISTS: "a profile with this ICCID is already installed",
    profiles.INSTALL_FAILED_INSUFFICIENT_MEMORY: "the card has no room for this profile",
}


def _all_handlers() -> HandlerTable:
    table = HandlerTable()
    for module in (es10a, es10b, es10c, download, bpp, crl, eim, euicc_package, iot):
        for name, handler in module.HANDLERS.items():
            table.handles(name)(handler)
    return table


class Euicc:
    """A software eUICC.

    Not thread-safe: like a real card it processes one APDU at a time. Time and randomness
    are injected (``random_bytes``) so tests can make a card deterministic.
    """

    def __init__(
        self,
        storage: DirectoryStorage | MemoryStorage,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        raw_config = storage.read_file(_CONFIG_FILE)
        if raw_config is None:
            raise CardError("no card here: config.json is missing")
        try:
            self.config = CardConfig.from_json(raw_config)
        except (ValueError, TypeError, KeyError) as exc:
            raise CardError(f"{_CONFIG_FILE} is damaged: {exc!r}") from None
        state = storage.load()
        if state is None:
            raise CardError("card was never completely created (no committed state)")
        self.storage = storage
        self.credentials = load_credentials(storage)
        self.proactive = ProactiveSession()
        self.context = IsdrContext(
            config=self.config,
            credentials=self.credentials,
            storage=storage,
            state=state,
            random_bytes=random_bytes,
            proactive=self.proactive,
        )
        self.isdr = IsdR(self.context, _all_handlers())
        self.ecasd = Ecasd(
            self.context.eid,
            chains=len(self.credentials.chains),
            gp_version=self.config.globalplatform_version,
        )
        self.filesystem = FileSystem(iccid=lambda: es10c.enabled_iccid(self.context.state))
        # The enabled profile's applications (file system, PINs, AKA): euicc_sim.uicc.
        self.uicc = Uicc(self._uicc_source, self._save_uicc)
        self._os = CardOS(
            [self.isdr, self.ecasd], self.filesystem, uicc=self.uicc, proactive=self.proactive
        )
        # Bound once: transmit sits on every hot path.
        self._transmit: Callable[[bytes], bytes] = self._os.transmit
        self._closed = False

    def transmit(self, apdu: bytes) -> bytes:
        """Process one command APDU; return the response data followed by SW1 SW2.

        Never raises for anything the card is sent (status words answer every error), but
        :class:`CardClosed` after :meth:`close`.
        """
        if self.context.needs_recovery and not self._recovered():
            # GET RESPONSE of an answer already made, and MANAGE CHANNEL, read no state.
            if apdu[1:2] not in _STATELESS_INS:
                return _SW_MEMORY_FAILURE
        return self._transmit(apdu)

    def _recovered(self) -> bool:
        if self._closed:
            raise CardClosed(f"card {self.eid} was closed")
        if self.context.recover():
            self.context.session.clear()  # the command that failed ended its session
            return True
        return False

    # -- life cycle ---------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        directory: str | os.PathLike[str] | None,
        *,
        eid: str | None = None,
        curves: Sequence[Curve] = (Curve.NIST_P256, Curve.BRAINPOOL_P256R1),
        pki: str | os.PathLike[str] | None = None,
        euicc_key: bytes | None = None,
        euicc_certificate: bytes | None = None,
        eum_certificate: bytes | None = None,
        ci_certificates: Iterable[bytes] = (),
        config: CardConfig | None = None,
        kind: str | None = None,
        fsync: bool = True,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> Euicc:
        """Make a new card in ``directory`` (``None``: in memory only) and power it up.

        ``kind`` is ``"iot"`` (SGP.32 IoT eUICC) or ``"consumer"`` (SGP.22 eUICC with local
        ES10c profile management); it overrides ``config.kind`` (default ``"iot"``).

        Key material, in order of preference: explicit ``euicc_key`` + certificates (PEM or
        DER; the EID is read from the eUICC certificate); a test PKI directory ``pki`` (the
        card's eUICC certificate is issued under its EUM); otherwise the published GSMA
        SGP.26 test EUM of each curve in ``curves`` issues certificates for ``eid`` (a random
        valid EID with the SGP.26 EIN prefix when not given).
        """
        storage: DirectoryStorage | MemoryStorage
        if directory is None:
            storage = MemoryStorage()
        else:
            path = Path(directory)
            storage = DirectoryStorage(path, fsync=fsync)
        try:
            return cls._create(
                storage,
                directory,
                eid,
                curves,
                pki,
                euicc_key,
                euicc_certificate,
                eum_certificate,
                ci_certificates,
                config,
                kind,
                random_bytes,
            )
        except BaseException:
            storage.close()
            raise

    @classmethod
    def _create(
        cls,
        storage: DirectoryStorage | MemoryStorage,
        directory: str | os.PathLike[str] | None,
        eid: str | None,
        curves: Sequence[Curve],
        pki: str | os.PathLike[str] | None,
        euicc_key: bytes | None,
        euicc_certificate: bytes | None,
        eum_certificate: bytes | None,
        ci_certificates: Iterable[bytes],
        config: CardConfig | None,
        kind: str | None,
        random_bytes: Callable[[int], bytes],
    ) -> Euicc:
        # Files left by an interrupted create (no committed state) are simply overwritten.
        if storage.load() is not None:
            raise CardError(f"{directory} already holds a card")
        material = make.credentials(
            eid=eid,
            curves=curves,
            pki_dir=pki,
            euicc_key=euicc_key,
            euicc_certificate=euicc_certificate,
            eum_certificate=eum_certificate,
            ci_certificates=list(ci_certificates),
        )
        base = config or CardConfig(eid=material.eid)
        if base.eid != material.eid:
            base = replace(base, eid=material.eid)
        if kind is not None and kind != base.kind:
            base = replace(base, kind=kind)
        storage.write_file(_CONFIG_FILE, base.to_json())
        store_credentials(storage, material.chains, material.ci_certificates)
        # The first committed state is what makes the directory a card.
        storage.commit(CardState(root_ds_address=base.root_ds_address))
        return cls(storage, random_bytes=random_bytes)

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        fsync: bool = True,
        random_bytes: Callable[[int], bytes] = os.urandom,
        wait: float | None = None,
    ) -> Euicc:
        """Power up the card kept in ``directory`` and own it until :meth:`close`.

        Raises :class:`CardBusy` (naming the directory and the holder's pid) if another card
        object, in this process or another, has the directory open and does not close it
        within ``wait`` seconds (``None``: fail at once).
        """
        path = Path(directory)
        # Checked before touching the directory: opening must not change a non-card folder.
        if not (path / STATE_FILE).is_file():
            raise CardError(f"{path} holds no card (run 'euicc-sim init {path}' first)")
        storage = DirectoryStorage(path, fsync=fsync, wait=wait)
        try:
            if storage.load() is None:
                raise CardError(f"{path} holds no card (run 'euicc-sim init {path}' first)")
            return cls(storage, random_bytes=random_bytes)
        except BaseException:
            storage.close()
            raise

    def close(self) -> None:
        """Power off: release the card directory to the next opener (idempotent).

        The object cannot be used afterwards (:class:`CardClosed`); the state is already on
        disk, nothing is written here.
        """
        self._closed = True
        self.context.needs_recovery = True  # route transmit to the check that raises
        self.storage.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> Euicc:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def reset(self) -> bytes:
        """Cold reset: close channels, abort sessions, return the ATR.

        The file system of the profile enabled at this moment becomes the visible one.
        """
        if self._closed:
            raise CardClosed(f"card {self.eid} was closed")
        return self._os.reset()

    # -- the enabled profile's UICC side ---------------------------------------------------

    def _uicc_source(self) -> ProfileSource | None:
        profile = self.context.state.enabled_profile
        if profile is None or profile.package_digest is None:
            return None
        package = self.storage.get_blob(profile.package_digest)
        stored = self.storage.get_blob(profile.uicc_digest) if profile.uicc_digest else None
        return ProfileSource(profile.iccid, package, stored)

    def _save_uicc(self, iccid: bytes, blob: bytes) -> None:
        """Commit a profile's new UICC state blob (one atomic state commit)."""
        state = self.context.state
        if state.profile_by_iccid(iccid) is None:
            raise CardError("the profile whose file system is visible was deleted")
        try:
            digest = self.storage.put_blob(blob)
        except StorageError:
            self.context.recover()  # the Uicc answers 6581 and keeps its state
            raise
        profiles = tuple(
            replace(p, uicc_digest=digest) if p.iccid == iccid else p for p in state.profiles
        )
        self.context.commit(replace(state, profiles=profiles))

    # -- factory operations (not ES10) --------------------------------------------------

    @property
    def eid(self) -> str:
        """The card's EID (32 digits)."""
        return self.config.eid

    @property
    def kind(self) -> str:
        """``"iot"`` (SGP.32) or ``"consumer"`` (SGP.22)."""
        return self.config.kind

    @property
    def state(self) -> CardState:
        """The committed card state (profiles, notifications, addresses)."""
        return self.context.state

    def preload(
        self,
        package: bytes,
        *,
        iccid: str | None = None,
        profile_name: str | None = None,
        service_provider_name: str | None = None,
        profile_class: ProfileClass | None = None,
        nickname: str | None = None,
        notification_address: str | None = None,
        ppr1: bool = False,
        ppr2: bool = False,
        enable: bool = False,
    ) -> Profile:
        """Install a SAIP package the way a factory does: no download, no notification.

        ICCID, profile name, service provider and class come from the package (header
        ICCID, profileType, EF.SPN; class *test* when the profile type says so) unless given.
        ``notification_address`` makes the profile ask for enable/disable/delete
        notifications to that address.
        """
        try:
            pkg = saip.read_package(package)
        except saip.SaipError as exc:
            raise ProfileInstallError(f"not a valid profile package: {exc}") from exc
        if profile_class is None:
            is_test = "test" in (pkg.profile_type or "").lower()
            profile_class = ProfileClass.TEST if is_test else ProfileClass.OPERATIONAL
        config: tuple[NotificationConfig, ...] = ()
        if notification_address:
            events = frozenset(
                {NotificationEvent.ENABLE, NotificationEvent.DISABLE, NotificationEvent.DELETE}
            )
            config = (NotificationConfig(events, notification_address),)
        profile = Profile(
            iccid=iccid_to_ef(iccid) if iccid else pkg.iccid_ef,
            isdp_aid=b"",
            profile_class=profile_class,
            nickname=nickname,
            service_provider_name=service_provider_name or pkg.service_provider_name,
            profile_name=profile_name or pkg.profile_type,
            notification_config=config,
            ppr1=ppr1,
            ppr2=ppr2,
            package_size=len(package),
            preloaded=True,
        )
        if self.context.needs_recovery and not self._recovered():
            raise CardError(f"card {self.eid}: its storage is failing")
        try:
            return self._preload(package, profile, enable)
        except StorageError as exc:
            self.context.recover()
            raise CardError(f"card {self.eid}: storage failed, nothing preloaded: {exc}") from exc

    def _preload(self, package: bytes, profile: Profile, enable: bool) -> Profile:
        # Check first, so that a refused preload writes nothing at all.
        t = profiles.install(
            self.state,
            profile,
            max_profiles=self.config.max_profiles,
            max_package_bytes=self.config.profile_memory,
        )
        if t.result != 0:
            raise ProfileInstallError(_INSTALL_ERRORS.get(t.result, f"code {t.result}"), t.result)
        profile = replace(profile, package_digest=self.storage.put_blob(package))
        t = profiles.install(
            self.state,
            profile,
            max_profiles=self.config.max_profiles,
            max_package_bytes=self.config.profile_memory,
        )
        if t.result != 0:
            raise ProfileInstallError(_INSTALL_ERRORS.get(t.result, f"code {t.result}"), t.result)
        state = t.state
        installed = state.profiles[-1]
        if enable:
            # The factory is not the end user: the LPA-only refusal of provisioning profiles
            # (profiles.py rule 7) does not bind it, so it enables with the eIM's rights.
            e = profiles.enable(state, iccid=installed.iccid, actor=profiles.Actor.EIM)
            if e.result != 0:
                raise ProfileInstallError(
                    f"cannot enable the profile (code {e.result}); nothing was installed",
                    e.result,
                )
            state = e.state
        self.context.commit(state)
        return next(p for p in self.state.profiles if p.iccid == installed.iccid)

    def profile_package(self, profile: Profile) -> bytes | None:
        """The SAIP package bytes a profile was installed from."""
        if profile.package_digest is None:
            return None
        return self.storage.get_blob(profile.package_digest)
