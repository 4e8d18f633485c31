"""A scripted fake eUICC for unit tests of the IPAd's card layers.

It is the edge these tests stand on, not an emulator: it speaks just enough ISO 7816-4 to
open/close logical channels, SELECT ISD-R, reassemble STORE DATA blocks and hand responses
out through ``61xx`` + GET RESPONSE, and answers each complete ES10 request from a table or
a function. Every APDU it receives is recorded so tests can assert the exact bytes.

CLA decoding is written here independently of ``ipa.channel`` on purpose, so a shared bug
cannot make both sides agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

ISD_R = bytes.fromhex("A0000005591010FFFFFFFF8900000100")
FCI = bytes.fromhex("6F108410") + ISD_R  # minimal FCI: 6F { 84 <AID> }
ATR = bytes.fromhex("3B9F96801FC78031E073FE211B63F100AD830F9000")

SW_OK = b"\x90\x00"


def sw(value: int) -> bytes:
    """Two status bytes."""
    return value.to_bytes(2, "big")


def decode_cla(cla: int) -> tuple[int, bool]:
    """``(channel, proprietary)`` per ISO/IEC 7816-4 §5.4.1 (first and further interindustry)."""
    if cla & 0x40:  # further interindustry class: b7 = 1, channel = 4 + b4..b1
        return 4 + (cla & 0x0F), bool(cla & 0x80)
    return cla & 0x03, bool(cla & 0x80)


@dataclass
class Apdu:
    """One parsed command APDU (short form)."""

    raw: bytes
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int | None  # None = absent; 0 means 256

    @property
    def channel(self) -> int:
        return decode_cla(self.cla)[0]

    @property
    def proprietary(self) -> bool:
        return decode_cla(self.cla)[1]


def parse_apdu(raw: bytes) -> Apdu:
    """Split a short command APDU into its fields (cases 1 to 4)."""
    if len(raw) < 4:
        raise ValueError(f"APDU too short: {raw.hex()}")
    cla, ins, p1, p2 = raw[:4]
    body = raw[4:]
    if not body:
        return Apdu(raw, cla, ins, p1, p2, b"", None)
    if len(body) == 1:
        return Apdu(raw, cla, ins, p1, p2, b"", body[0])
    lc = body[0]
    data = body[1 : 1 + lc]
    if len(data) != lc:
        raise ValueError(f"Lc {lc} but {len(data)} data bytes: {raw.hex()}")
    rest = body[1 + lc :]
    if len(rest) > 1:
        raise ValueError(f"trailing bytes after Le: {raw.hex()}")
    return Apdu(raw, cla, ins, p1, p2, data, rest[0] if rest else None)


Handler = Callable[[bytes], bytes]


@dataclass
class ScriptedCard:
    """A fake card with ISD-R that answers ES10 requests from ``responses``.

    Args:
        responses: request TLV -> response TLV, or a function of the request. An unknown
            request gets SW 6A88.
        assign_channel: the number MANAGE CHANNEL open (card-assigned) hands out.
        mode: how response data leaves the card: ``"t0"`` (``61xx`` then GET RESPONSE, like a
            T=0 card), ``"direct"`` (data + ``9000`` in the STORE DATA response when it fits in
            256 bytes, else the first 256 bytes + ``61xx``), or ``"6c"`` (``6Cxx`` unless the
            command carries exactly the right Le, then data + ``9000``).
        chunk: the largest amount a ``61xx`` announces (so one response takes several GET
            RESPONSEs when it is smaller than the response).
        sw_for_ins: INS -> status word to answer instead of processing (error injection).
    """

    responses: Mapping[bytes, bytes] | Handler = field(default_factory=dict)
    assign_channel: int = 1
    mode: str = "t0"
    chunk: int = 256
    sw_for_ins: dict[int, int] = field(default_factory=dict)
    select_response: bytes = FCI

    apdus: list[bytes] = field(default_factory=list)
    requests: list[bytes] = field(default_factory=list)
    open_channels: set[int] = field(default_factory=set)
    selected: set[int] = field(default_factory=set)
    _blocks: dict[int, list[Apdu]] = field(default_factory=dict)
    _pending: dict[int, bytes] = field(default_factory=dict)
    _awaiting_le: dict[int, bytes] = field(default_factory=dict)

    # -- recording helpers for assertions ---------------------------------------------------

    def by_ins(self, ins: int) -> list[Apdu]:
        """Every received APDU with instruction ``ins``, parsed."""
        return [a for a in map(parse_apdu, self.apdus) if a.ins == ins]

    # -- the card ---------------------------------------------------------------------------

    def reset(self) -> bytes:
        self.open_channels.clear()
        self.selected.clear()
        self._blocks.clear()
        self._pending.clear()
        self._awaiting_le.clear()
        return ATR

    def transmit(self, raw: bytes) -> bytes:
        self.apdus.append(bytes(raw))
        apdu = parse_apdu(bytes(raw))
        if apdu.ins in self.sw_for_ins:
            return sw(self.sw_for_ins[apdu.ins])
        ch = apdu.channel
        if ch != 0 and ch not in self.open_channels:
            return sw(0x6881)
        handler = {
            0x70: self._manage_channel,
            0xAA: self._terminal_capability,
            0xA4: self._select,
            0xE2: self._store_data,
            0xC0: self._get_response,
        }.get(apdu.ins)
        if handler is None:
            return sw(0x6D00)
        return handler(apdu)

    def _manage_channel(self, a: Apdu) -> bytes:
        if a.proprietary:
            return sw(0x6E00)
        if a.p1 == 0x00:
            ch = self.assign_channel if a.p2 == 0 else a.p2
            if ch in self.open_channels or not 1 <= ch <= 19:
                return sw(0x6A81)
            self.open_channels.add(ch)
            return (bytes((ch,)) if a.p2 == 0 else b"") + SW_OK
        if a.p1 == 0x80:
            if a.p2 not in self.open_channels:
                return sw(0x6A88)
            self.open_channels.discard(a.p2)
            self.selected.discard(a.p2)
            return SW_OK
        return sw(0x6A86)

    def _terminal_capability(self, a: Apdu) -> bytes:
        return SW_OK if a.cla == 0x80 and a.data[:1] == b"\xa9" else sw(0x6A80)

    def _select(self, a: Apdu) -> bytes:
        if a.proprietary:
            return sw(0x6E00)
        if a.p1 != 0x04 or a.data != ISD_R:
            return sw(0x6A82)
        self.selected.add(a.channel)
        return self._deliver(a.channel, self.select_response, a.le)

    def _store_data(self, a: Apdu) -> bytes:
        ch = a.channel
        if not a.proprietary:
            return sw(0x6E00)
        if ch not in self.selected:
            return sw(0x6985)
        awaiting = self._awaiting_le.pop(ch, None)
        if awaiting is not None:
            if a.le is not None and (a.le or 256) == len(awaiting):
                return awaiting + SW_OK
            return sw(0x6985)
        blocks = self._blocks.setdefault(ch, [])
        if a.p1 not in (0x11, 0x91) or a.p2 != len(blocks) or not a.data:
            self._blocks.pop(ch, None)
            return sw(0x6A86)
        blocks.append(a)
        if a.p1 == 0x11:
            return SW_OK
        request = b"".join(b.data for b in blocks)
        del self._blocks[ch]
        self.requests.append(request)
        if callable(self.responses):
            response = self.responses(request)
        elif request in self.responses:
            response = self.responses[request]
        else:
            return sw(0x6A88)
        if self.mode == "6c" and response:
            if a.le is not None and (a.le or 256) == len(response):
                return response + SW_OK
            self._awaiting_le[ch] = response
            return sw(0x6C00 | (len(response) & 0xFF))
        return self._deliver(ch, response, a.le)

    def _deliver(self, ch: int, data: bytes, le: int | None) -> bytes:
        if not data:
            return SW_OK
        if self.mode == "direct" and le is not None:
            head, rest = data[:256], data[256:]
            if rest:
                self._pending[ch] = rest
                return head + sw(0x6100 | (min(len(rest), self.chunk) & 0xFF))
            return head + SW_OK
        self._pending[ch] = data
        return sw(0x6100 | (min(len(data), self.chunk) & 0xFF))

    def _get_response(self, a: Apdu) -> bytes:
        pending = self._pending.get(a.channel)
        if not pending:
            return sw(0x6985)
        n = 256 if a.le in (None, 0) else a.le
        out, rest = pending[:n], pending[n:]
        if rest:
            self._pending[a.channel] = rest
            return out + sw(0x6100 | (min(len(rest), self.chunk) & 0xFF))
        del self._pending[a.channel]
        return out + SW_OK
