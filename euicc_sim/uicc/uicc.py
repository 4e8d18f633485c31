"""The UICC side of the card: the enabled profile's file system, PINs and AKA behind APDUs.

The card OS (:mod:`euicc_sim.cardos`) hands this object every command that is not for the
ISD-R or the ECASD (SELECT by FID, path or an AID it does not own, and the file, PIN and
AUTHENTICATE commands on a channel where no GlobalPlatform application is selected).
Each logical channel has its own :class:`ChannelState` (current DF/ADF, EF and record).

Which profile is visible: the one enabled at the last reset (:meth:`Uicc.reset`); a profile
switch shows after the next reset (or REFRESH). Without an enabled profile the card shows
an MF with an empty EF.DIR only.

Every change (UPDATE, a PIN counter, an accepted SQN) is saved before it is answered, through
``save(iccid, blob)``: the card commits the profile's new UICC state blob atomically. If the
save fails nothing changes and the command answers ``6581`` (memory problem).

Instructions and classes (ETSI TS 102 221 §10.1.2): SELECT ``A4``, READ/UPDATE BINARY
``B0``/``D6``, READ/UPDATE RECORD ``B2``/``DC``, SEARCH RECORD ``A2``, VERIFY ``20``, CHANGE
``24``, DISABLE ``26``, ENABLE ``28``, UNBLOCK ``2C``, AUTHENTICATE ``88`` with CLA ``0X``/
``4X``; STATUS ``F2`` with CLA ``8X``/``CX``. Status words per TS 102 221 §10.2.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..apdu import Command, StatusWordError
from . import access, aka, pins
from .files import Node, fcp
from .image import GLOBAL_REFS, ImageError, ProfileImage, build_image
from .selection import (
    ChannelState,
    make_current,
    record_number,
    select_aid,
    select_fid,
    select_path,
)
from .state import UiccState, UiccStateError, decode_into, encode
from .templates import Structure

log = logging.getLogger(__name__)

SW_MEMORY_PROBLEM = 0x6581
SW_WRONG_LENGTH = 0x6700
SW_SECURITY_STATUS = 0x6982
SW_INCOMPATIBLE_STRUCTURE = 0x6981
SW_CONDITIONS = 0x6985
SW_NO_CURRENT_EF = 0x6986
SW_INCORRECT_DATA = 0x6A80
SW_FILE_NOT_FOUND = 0x6A82
SW_RECORD_NOT_FOUND = 0x6A83
SW_INCORRECT_P1P2 = 0x6A86
SW_REFERENCED_DATA_NOT_FOUND = 0x6A88
SW_WRONG_P1P2 = 0x6B00
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00

#: Instructions this side answers.
INSTRUCTIONS = frozenset(
    {0xA4, 0xB0, 0xD6, 0xB2, 0xDC, 0xA2, 0xF2, 0x20, 0x24, 0x26, 0x28, 0x2C, 0x88}
)
_PROPRIETARY_INS = frozenset({0xF2})


@dataclass(frozen=True)
class ProfileSource:
    """The enabled profile as the card OS sees it at reset."""

    iccid: bytes
    package: bytes
    stored: bytes | None  # the UICC state blob saved before, if any


@functools.cache
def _empty_image() -> ProfileImage:
    """No enabled profile: an MF with one unused EF.DIR record (one image shared by every
    card and reset: images are never changed after the build, see :func:`_cached_image`)."""
    from .files import Node as _Node

    mf = _Node("3F00", "mf", Structure.MF, 0x3F00, arr=b"\x2f\x06\x01")
    ef_dir = _Node(
        "3F00/2F00",
        "ef-dir",
        Structure.LINEAR_FIXED,
        0x2F00,
        parent=mf,
        sfi=0x1E,
        record_length=32,
        size=32,
    )
    mf.children[0x2F00] = ef_dir
    image = ProfileImage(mf=mf, nodes={mf.key: mf, ef_dir.key: ef_dir})
    image.contents[ef_dir.key] = b"\xff" * 32
    return image


@functools.lru_cache(maxsize=16)
def _cached_image(package: bytes) -> ProfileImage:
    # Building decodes the whole package (tens of ms); images are never changed after the
    # build (every card copies what it changes), so cards and resets share them.
    return build_image(package)


def _initial_state(image: ProfileImage) -> UiccState:
    """The state a profile's UICC side starts from: the image's contents, PINs, PUKs and
    sequence numbers."""
    return UiccState(
        files=dict(image.contents),
        pins={
            k: pins.Pin(p.value, p.retries, p.max_attempts, True, p.puk_ref)
            for k, p in image.pins.items()
        },
        puks={r: pins.Puk(p.value, p.retries, p.max_attempts) for r, p in image.puks.items()},
        sqn={k: a.sqn_init for k, a in image.aka.items()},
    )


@functools.lru_cache(maxsize=16)
def _cached_initial_state(package: bytes) -> UiccState:
    # A reset after every profile switch rebuilt these dictionaries (one entry per file of
    # the profile). The state is shared safely: a Uicc never changes its state in place,
    # every write makes a copy (UiccState.copy) and commits that (Uicc._commit).
    return _initial_state(_cached_image(package))


@functools.cache
def _empty_state() -> UiccState:
    return _initial_state(_empty_image())


_ALWAYS = b"\x80\x01\x03\x90\x00"  # read and update always: files of the empty MF


class Uicc:
    """The UICC side of one card (see the module docstring)."""

    def __init__(
        self,
        load: Callable[[], ProfileSource | None],
        save: Callable[[bytes, bytes], None],
    ) -> None:
        self._load = load
        self._save = save
        self._iccid: bytes | None = None
        self._image = _empty_image()
        self._state = _empty_state()
        self._changed: set[str] = set()
        self._verified: set[tuple[str, int]] = set()
        self.reset()

    # -- life cycle --------------------------------------------------------------------------

    @property
    def iccid(self) -> bytes | None:
        """EF.ICCID coding of the profile whose file system is visible (None: none)."""
        return self._iccid

    @property
    def image(self) -> ProfileImage:
        """The visible profile's file tree and initial values."""
        return self._image

    def reset(self) -> None:
        """Card reset: show the profile enabled now, drop verification status."""
        self._verified = set()
        source = self._load()
        if source is None:
            self._iccid, self._image = None, _empty_image()
            self._state = _empty_state()
            self._changed = set()
            return
        try:
            image = _cached_image(source.package)
        except ImageError:
            log.error("the enabled profile's package cannot be built", exc_info=True)
            self._iccid, self._image = None, _empty_image()
            self._state = _empty_state()
            self._changed = set()
            return
        base = _cached_initial_state(source.package)
        state, changed = base, set[str]()
        if source.stored is not None:
            try:
                state, changed = decode_into(source.stored, base)
            except UiccStateError:
                log.error("stored UICC state of the enabled profile is damaged; using the package")
        self._iccid, self._image, self._state, self._changed = source.iccid, image, state, changed

    def open_channel(self) -> ChannelState:
        """The selection of a newly opened channel (or the basic channel after reset): MF."""
        return ChannelState(self._image.mf)

    # -- dispatch ---------------------------------------------------------------------------

    def command(self, ch: ChannelState, cmd: Command, proprietary: bool) -> tuple[bytes, bool]:
        """Process one command; return (response data, answer T=0 style with ``61xx``).

        Raises :class:`StatusWordError` for every refusal.
        """
        ins = cmd.ins
        if proprietary != (ins in _PROPRIETARY_INS):
            raise StatusWordError(SW_CLA_NOT_SUPPORTED)
        handler = self._handlers.get(ins)
        if handler is None:
            raise StatusWordError(SW_INS_NOT_SUPPORTED)
        return handler(self, ch, cmd)

    # -- persistence --------------------------------------------------------------------------

    def _commit(self, new: UiccState, changed_file: str | None = None) -> None:
        if self._iccid is None:
            self._state = new  # the empty MF: nothing to keep
            return
        changed = self._changed | ({changed_file} if changed_file else set())
        try:
            self._save(self._iccid, encode(new, changed))
        except StatusWordError:
            raise
        except Exception as exc:
            log.error("saving the UICC state failed", exc_info=True)
            raise StatusWordError(SW_MEMORY_PROBLEM) from exc
        self._state, self._changed = new, changed

    # -- PIN status ----------------------------------------------------------------------------

    def _pin_context(self, node: Node, ref: int) -> tuple[str, int] | None:
        """The (DF key, key reference) of PIN ``ref`` as seen from ``node``."""
        if ref in GLOBAL_REFS:
            key = (self._image.mf.key, ref)
            return key if key in self._state.pins else None
        for df in node.ancestors():
            ctx = self._image.pin_alias.get(df.key, df.key)
            if (ctx, ref) in self._state.pins:
                return (ctx, ref)
        return None

    def _key_ok(self, node: Node) -> Callable[[int], bool]:
        def ok(ref: int) -> bool:
            ctx = self._pin_context(node, ref)
            if ctx is None:
                return False
            pin = self._state.pins[ctx]
            return ctx in self._verified or (not pin.enabled and ref not in pins.ADM_REFS)

        return ok

    def _ps_do(self, node: Node) -> int:
        value = 0
        for i, ref in enumerate(node.pin_refs[:8]):
            ctx = self._pin_context(node, ref)
            if ctx is not None and self._state.pins[ctx].enabled:
                value |= 0x80 >> i
        return value

    # -- access rules ---------------------------------------------------------------------------

    def _rule(self, node: Node) -> bytes | None:
        """The EF.ARR record that governs ``node`` (None: not found)."""
        from .files import arr_reference

        ref = arr_reference(node)
        if len(ref) != 3:
            return _ALWAYS if self._iccid is None else None
        fid, number = int.from_bytes(ref[:2], "big"), ref[2]
        start = node if node.is_df else node.parent
        for df in start.ancestors() if start is not None else []:
            arr = df.children.get(fid)
            if arr is not None and not arr.is_df and arr.structure.is_record:
                target = arr.content_node
                content = self._state.files.get(target.key, b"")
                length = target.record_length
                if 1 <= number <= target.record_count:
                    return content[(number - 1) * length : number * length]
                return None
        return None

    def _check_access(self, node: Node, mode: int) -> None:
        rule = self._rule(node)
        if rule is None or not access.allowed(rule, mode, self._key_ok(node)):
            raise StatusWordError(SW_SECURITY_STATUS)

    # -- SELECT (TS 102 221 §11.1.1) --------------------------------------------------------

    def _select(self, ch: ChannelState, cmd: Command) -> tuple[bytes, bool]:
        p1, p2, data = cmd.p1, cmd.p2, cmd.data
        response = p2 & 0x0C
        if response == 0x08 or p2 & 0x90:
            raise StatusWordError(SW_INCORRECT_P1P2)
        if p1 == 0x04:
            node = select_aid(self._image, ch, data, p2)
            if node is None:  # application termination: nothing selected any more
                return b"", True
        elif p1 == 0x00:
            node = select_fid(self._image, ch, data)
        elif p1 in (0x08, 0x09):
            node = select_path(self._image, ch, data, from_mf=p1 == 0x08)
        else:
            raise StatusWordError(SW_INCORRECT_P1P2)
        make_current(ch, node)
        if response == 0x0C:
            return b"", True
        return self._fcp(node), True

    def _fcp(self, node: Node) -> bytes:
        total = 0
        if node.is_df:
            stack = list(node.children.values())
            while stack:
                n = stack.pop()
                if n.is_df:
                    stack.extend(n.children.values())
                elif n.link is None:
                    total += n.size
        return fcp(node, ps_do=self._ps_do(node), total_size=total)

    # -- STATUS (TS 102 221 §11.1.2) ------------------------------------------------------------

    def _status(self, ch: ChannelState, cmd: Command) -> tuple[bytes, bool]:
        if cmd.p1 > 0x02 or cmd.p2 not in (0x00, 0x01, 0x0C):
            raise StatusWordError(SW_INCORRECT_P1P2)
        if cmd.data:
            raise StatusWordError(SW_WRONG_LENGTH)
        if cmd.p2 == 0x0C:
            return b"", False
        if cmd.p2 == 0x01:
            name = ch.adf.df_name if ch.adf is not None else None
            return (bytes((0x84, len(name))) + name if name else b""), False
        return self._fcp(ch.df), False

    # -- EF addressing ----------------------------------------------------------------------------

    def _ef_by_sfi(self, ch: ChannelState, sfi: int) -> Node:
        node = ch.df.find_by_sfi(sfi)
        if node is None:
            raise StatusWordError(SW_FILE_NOT_FOUND)
        ch.ef, ch.record = node, 0  # SFI referencing selects the EF (§8.5.2)
        return node

    def _current_ef(self, ch: ChannelState, sfi: int) -> Node:
        if sfi:
            return self._ef_by_sfi(ch, sfi)
        if ch.ef is None:
            raise StatusWordError(SW_NO_CURRENT_EF)
        return ch.ef

    def _binary_target(self, ch: ChannelState, cmd: Command) -> tuple[Node, int]:
        if cmd.p1 & 0x80:
            if cmd.p1 & 0x60:
                raise StatusWordError(SW_INCORRECT_P1P2)
            node, offset = self._current_ef(ch, cmd.p1 & 0x1F), cmd.p2
        else:
            node, offset = self._current_ef(ch, 0), (cmd.p1 << 8) | cmd.p2
        if node.content_node.structure is not Structure.TRANSPARENT:
            raise StatusWordError(SW_INCOMPATIBLE_STRUCTURE)
        return node, offset

    # -- READ / UPDATE BINARY (§11.1.3, §11.1.4) --------------------------------------------------

    def _read_binary(self, ch: ChannelState, cmd: Command) -> tuple[bytes, bool]:
        if cmd.data:
            raise StatusWordError(SW_WRONG_LENGTH)
        node, offset = self._binary_target(ch, cmd)
        self._check_access(node, access.READ)
        content = self._state.files[node.content_node.key]
        if offset >= len(content):
            raise StatusWordError(SW_WRONG_P1P2)
        le = 256 if cmd.le is None else cmd.le
        return content[offset : offset + le], False

    def _update_binary(self, ch: ChannelState, cmd: Command) -> tuple[bytes, bool]:
        if not cmd.data:
            raise StatusWordError(SW_WRONG_LENGTH)
        node, offset = self._binary_target(ch, cmd)
        self._check_access(node, access.UPDATE)
        key = node.content_node.key
        content = self._state.files[key]
        if offset >= len(content):
            raise StatusWordError(SW_WRONG_P1P2)
        if offset + len(cmd.data) > len(content):
            raise StatusWordError(SW_WRONG_LENGTH)
        new = self._state.copy()
        new.files[key] = content[:offset] + cmd.data + content[offset + len(cmd.data) :]
        self._commit(new, key)
        return b"", False

    # -- records (§11.1.5, §11.1.6, §11.1.7) -------------------------------------------------------

    def _record_target(self, ch: ChannelState, p2: int) -> Node:
        sfi = p2 >> 3
        if sfi == 0x1F:
            raise StatusWordError(SW_INCORRECT_P1P2)
        node = self._current_ef(ch, sfi)
        if not node.content_node.structure.is_record:
            raise StatusWordError(SW_INCOMPATIBLE_STRUCTURE)
        return node

    def _records(self, node: Node) -> tuple[bytes, int]:
        target = node.content_node
        return self._state.files[target.key], target.record_length

    def _read_record(self, ch: ChannelState, cmd: Command) -> tuple[bytes, bool]:
        if cmd.data:
            raise StatusWordError(SW_WRONG_LENGTH)
        node = self._record_target(ch, cmd.p2)
        mode = cmd.p2 & 0x07
        number = record_number(ch, node, cmd.p1, mode)
        self._check_access(node, access.READ)
        content, length = self._records(node)
        if cmd.le is not None and cmd.le != 256 and cmd.le != length:
            raise StatusWordError(0x6C00 | (length & 0xFF))  # wrong Le: the record length
        if mode != 0x04 or cmd.p1 == 0:
            ch.record = number
        return content[(number - 1) * length : number * length], False

    def _update_record(self, ch: ChannelState, cmd: Command) -> tuple[bytes, bool]:
        node = self._record_target(ch, cmd.p2)
        content, length = self._records(node)
        if len(cmd.data) != length:
            raise StatusWordError(SW_WRONG_LENGTH)
        mode = cmd.p2 & 0x07
        cyclic = node.content_node.structure is Structure.CYCLIC
        if cyclic and mode != 0x03:
            raise StatusWordError(SW_INCOMPATIBLE_STRUCTURE)  # cyclic: PREVIOUS only
        number = 1 if cyclic else record_number(ch, node, cmd.p1, mode)
        if cyclic and cmd.p1:
            raise StatusWordError(SW_INCORRECT_P1P2)
        self._check_access(node, access.UPDATE)
        key = node.content_node.key
        if cyclic:  # the oldest record is overwritten and becomes record 1
            new_content = cmd.data + content[: len(content) - length]
        else:
            start = (number - 1) * length
            new_content = content[:start] + cmd.data + content[start + length :]
        new = self._state.copy()
        new.files[key] = new_content
        self._commit(new, key)
        if mode != 0x04 or cmd.p1 == 0 or cyclic:
            ch.record = number
        return b"", False

    def _search_record(self, ch: ChannelState, cmd: Command) -> tuple[bytes, bool]:
        if not cmd.data:
            raise StatusWordError(SW_WRONG_LENGTH)
        node = self._record_target(ch, cmd.p2)
        if node.content_node.structure is not Structure.LINEAR_FIXED and (
            node.content_node.structure is not Structure.CYCLIC
        ):
            raise StatusWordError(SW_INCOMPATIBLE_STRUCTURE)
        content, length = self._records(node)
        count = node.content_node.record_count
        mode, pattern, offset = cmd.p2 & 0x07, cmd.data, 0
        start = cmd.p1 or (ch.record or 1)
        if mode == 0x06:  # enhanced search: indicator, offset, pattern
            if len(cmd.data) < 3 or cmd.data[0] & 0x08:
                raise StatusWordError(SW_INCORRECT_DATA)
            sub = cmd.data[0] & 0x07
            offset, pattern = cmd.data[1], cmd.data[2:]
            if sub in (0x04, 0x05):
                mode = sub
            elif sub == 0x06:
                mode, start = 0x04, (ch.record + 1 if ch.record else 1)
            elif sub == 0x07:
                mode, start = 0x05, (ch.record - 1 if ch.record else count)
            else:
                raise StatusWordError(SW_INCORRECT_DATA)
        elif mode not in (0x04, 0x05):
            raise StatusWordError(SW_INCORRECT_P1P2)
        if not 1 <= start <= count:
            raise StatusWordError(SW_RECORD_NOT_FOUND)
        self._check_access(node, access.READ)
        numbers = range(start, count + 1) if mode == 0x04 else range(start, 0, -1)
        found = [
            n
            for n in numbers
            if content[(n - 1) * length + offset : n * length].startswith(pattern)
        ]
        if not found:
            raise StatusWordError(SW_RECORD_NOT_FOUND)
        ch.record = found[0]
        return bytes(found), True

    # -- PIN commands (§11.1.9 - §11.1.13) ----------------------------------------------------

    def _pin_ref(
        self, ch: ChannelState, cmd: Command, *, p1: tuple[int, ...] = (0x00,)
    ) -> tuple[str, int]:
        if cmd.p1 not in p1:
            raise StatusWordError(SW_INCORRECT_P1P2)
        ref = cmd.p2
        if not (ref in GLOBAL_REFS or 0x81 <= ref <= 0x88 or 0x8A <= ref <= 0x8E):
            raise StatusWordError(SW_INCORRECT_P1P2)
        ctx = self._pin_context(ch.df, ref)
        if ctx is None:
            raise StatusWordError(SW_REFERENCED_DATA_NOT_FOUND)
        return ctx

    def _apply_pin(self, ctx: tuple[str, int], out: pins.Outcome) -> None:
        old = self._state.pins[ctx]
        puk_ref = old.puk_ref
        old_puk = self._state.puks.get(puk_ref) if puk_ref is not None else None
        if out.pin != old or (out.puk is not None and out.puk != old_puk):
            new = self._state.copy()
            new.pins[ctx] = out.pin
            if out.puk is not None and puk_ref is not None:
                new.puks[puk_ref] = out.puk
            self._commit(new)
        if out.verified:
            self._verified.add(ctx)
        elif out.sw != pins.SW_OK:
            self._verified.discard(ctx)
        if out.sw != pins.SW_OK:
            raise StatusWordError(out.sw)

    def _verify(self, ch: ChannelState, cmd: Command) -> tuple[bytes, bool]:
        ctx = self._pin_ref(ch, cmd)
        if cmd.data and len(cmd.data) != 8:
            raise StatusWordError(SW_WRONG_LENGTH)
        pin = self._state.pins[ctx]
        self._apply_pin(ctx, pins.verify(pin, cmd.data or None, verified=ctx in self._verified))
        return b"", False

    def _change(self, ch: ChannelState, cmd: Command) -> tuple[bytes, bool]:
        ctx = self._pin_ref(ch, cmd)
        if len(cmd.data) != 16:
            raise StatusWordError(SW_WRONG_LENGTH)
        self._apply_pin(ctx, pins.change(self._state.pins[ctx], cmd.data[:8], cmd.data[8:]))
        return b"", False

    def _enable_disable(self, ch: ChannelState, cmd: Command) -> tuple[bytes, bool]:
        ctx = self._pin_ref(ch, cmd)
        if len(cmd.data) != 8:
            raise StatusWordError(SW_WRONG_LENGTH)
        enable = cmd.ins == 0x28
        out = pins.set_enabled(self._state.pins[ctx], ctx[1], cmd.data, enable)
        self._apply_pin(ctx, out)
        return b"", False

    def _unblock(self, ch: ChannelState, cmd: Command) -> tuple[bytes, bool]:
        ctx = self._pin_ref(ch, cmd)
        if cmd.data and len(cmd.data) != 16:
            raise StatusWordError(SW_WRONG_LENGTH)
        pin = self._state.pins[ctx]
        puk = self._state.puks.get(pin.puk_ref) if pin.puk_ref is not None else None
        value, new = (cmd.data[:8], cmd.data[8:]) if cmd.data else (None, None)
        self._apply_pin(ctx, pins.unblock(pin, puk, value, new))
        return b"", False

    # -- AUTHENTICATE (TS 31.102 §7.1.2) ----------------------------------------------------------

    def _authenticate(self, ch: ChannelState, cmd: Command) -> tuple[bytes, bool]:
        if cmd.p1 != 0x00:
            raise StatusWordError(SW_INCORRECT_P1P2)
        adf = ch.adf
        config = self._image.aka.get(adf.key) if adf is not None else None
        if adf is None or config is None:
            raise StatusWordError(SW_CONDITIONS)
        # Access condition: the application PIN (TS 31.102 §7.1.2: PIN / TS 102 221 §9.5.1).
        app_pin = next((r for r in adf.pin_refs if 0x01 <= r <= 0x08), None)
        if app_pin is not None and not self._key_ok(adf)(app_pin):
            raise StatusWordError(SW_SECURITY_STATUS)
        is_usim = bool(adf.df_name and adf.df_name[5:7] == b"\x10\x02")
        gsm = is_usim and self._service(adf, 27)
        try:
            result = aka.authenticate(
                config,
                self._state.sqn[adf.key],
                cmd.p2,
                cmd.data,
                gsm_allowed=gsm,
                with_kc=gsm,
            )
        except ValueError:
            log.error("AKA parameters of %s are unusable", adf.key, exc_info=True)
            raise StatusWordError(SW_CONDITIONS) from None
        if result.sqn_array is not None:
            new = self._state.copy()
            new.sqn[adf.key] = result.sqn_array
            self._commit(new)
        if result.sw != 0x9000:
            raise StatusWordError(result.sw)
        return result.data, True

    def _service(self, adf: Node, number: int) -> bool:
        """Whether service ``number`` is available in the ADF's EF.UST (TS 31.102 §4.2.8)."""
        ust = adf.children.get(0x6F38)
        if ust is None:
            return False
        content = self._state.files.get(ust.content_node.key, b"")
        index, bit = divmod(number - 1, 8)
        return index < len(content) and bool(content[index] & (1 << bit))

    _handlers: dict[int, Callable[[Uicc, ChannelState, Command], tuple[bytes, bool]]] = {
        0xA4: _select,
        0xF2: _status,
        0xB0: _read_binary,
        0xD6: _update_binary,
        0xB2: _read_record,
        0xDC: _update_record,
        0xA2: _search_record,
        0x20: _verify,
        0x24: _change,
        0x26: _enable_disable,
        0x28: _enable_disable,
        0x2C: _unblock,
        0x88: _authenticate,
    }
