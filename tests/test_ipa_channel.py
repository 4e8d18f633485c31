"""ipa.channel: logical channels, SELECT, STORE DATA segmentation, GET RESPONSE, status words."""

from __future__ import annotations

import logging

import pytest
from cardscript import ISD_R, ScriptedCard, decode_cla, parse_apdu
from hypothesis import given, settings
from hypothesis import strategies as st

from ipa.channel import (
    DEFAULT_TERMINAL_CAPABILITY,
    ChannelConfig,
    Es10Channel,
    interindustry_cla,
    proprietary_cla,
)
from ipa.errors import (
    CardProtocolError,
    ChannelClosedError,
    StatusWordError,
    TransportError,
    sw_meaning,
)
from ipa.transport import InProcessTransport, ResettableTransport, Transport

GET_EID = bytes.fromhex("BF3E035C015A")
EID_RESPONSE = bytes.fromhex("BF3E125A1089049032123451234512345678901235")


def echo(request: bytes) -> bytes:
    """An ES10 'function' answering with a TLV that wraps the request (any size)."""
    body = request
    n = len(body)
    length = bytes((n,)) if n < 0x80 else b"\x82" + n.to_bytes(2, "big")
    return b"\xbf\x7f" + length + body


def open_channel(card: ScriptedCard, **cfg: object) -> Es10Channel:
    ch = Es10Channel(InProcessTransport(card), ChannelConfig(**cfg))  # type: ignore[arg-type]
    ch.open()
    return ch


# -- CLA ---------------------------------------------------------------------------------------


def test_cla_for_channels_0_to_3_and_4_to_19() -> None:
    assert [interindustry_cla(c) for c in range(4)] == [0x00, 0x01, 0x02, 0x03]
    assert [proprietary_cla(c) for c in range(4)] == [0x80, 0x81, 0x82, 0x83]
    assert [interindustry_cla(c) for c in range(4, 20)] == list(range(0x40, 0x50))
    assert [proprietary_cla(c) for c in range(4, 20)] == list(range(0xC0, 0xD0))
    for bad in (-1, 20):
        with pytest.raises(ValueError):
            interindustry_cla(bad)


# -- opening and closing ---------------------------------------------------------------------


def test_card_assigned_channel_then_select_isd_r() -> None:
    card = ScriptedCard(assign_channel=2)
    ch = open_channel(card)
    assert ch.channel == 2 and ch.is_open
    assert card.apdus[0] == bytes.fromhex("0070000001")
    # SELECT on channel 2 with P2=04, no Le; the FCI comes through GET RESPONSE with CLA 02.
    assert card.apdus[1] == bytes.fromhex("02A4040410") + ISD_R
    assert card.apdus[2][:4] == bytes.fromhex("02C00000")
    assert ch.select_response.startswith(b"\x6f")


def test_fixed_channel_select_p2_00_and_le() -> None:
    card = ScriptedCard()
    ch = open_channel(card, channel=3, select_p2=0x00, select_le=True)
    assert ch.channel == 3
    assert card.apdus[0] == bytes.fromhex("0070000300")
    assert card.apdus[1] == bytes.fromhex("03A4040010") + ISD_R + b"\x00"


def test_basic_channel_opens_nothing_and_closes_nothing() -> None:
    card = ScriptedCard(responses={GET_EID: EID_RESPONSE})
    with Es10Channel(InProcessTransport(card), ChannelConfig(channel=0)) as ch:
        assert ch.channel == 0
        assert ch.exchange(GET_EID) == EID_RESPONSE
    assert not card.by_ins(0x70)
    assert card.by_ins(0xE2)[0].raw == bytes.fromhex("80E291000" + "6") + GET_EID
    assert not ch.is_open


def test_terminal_capability_goes_first_on_the_basic_channel() -> None:
    card = ScriptedCard()
    open_channel(card, terminal_capability=DEFAULT_TERMINAL_CAPABILITY)
    assert card.apdus[0] == bytes.fromhex("80AA000005A903830107")
    assert card.apdus[1] == bytes.fromhex("0070000001")


def test_close_sends_manage_channel_close_and_context_manager_closes() -> None:
    card = ScriptedCard(assign_channel=7)
    with Es10Channel(InProcessTransport(card)) as ch:
        assert ch.channel == 7
    assert card.apdus[-1] == bytes.fromhex("00708007")
    assert card.open_channels == set()
    ch.close()  # idempotent
    assert card.apdus[-1] == bytes.fromhex("00708007")
    with pytest.raises(ChannelClosedError):
        _ = ch.channel


def test_exchange_before_open_is_refused() -> None:
    ch = Es10Channel(InProcessTransport(ScriptedCard()))
    with pytest.raises(ChannelClosedError):
        ch.exchange(GET_EID)


def test_failed_select_closes_the_channel_it_opened() -> None:
    card = ScriptedCard(sw_for_ins={0xA4: 0x6A82})
    ch = Es10Channel(InProcessTransport(card))
    with pytest.raises(StatusWordError) as info:
        ch.open()
    assert info.value.sw == 0x6A82 and info.value.command_name == "SELECT"
    assert card.apdus[-1] == bytes.fromhex("00708001")
    assert not ch.is_open and card.open_channels == set()


def test_manage_channel_open_reply_must_be_one_byte() -> None:
    class TwoByteChannel(ScriptedCard):
        def transmit(self, raw: bytes) -> bytes:
            if raw == bytes.fromhex("0070000001"):
                return b"\x01\x02\x90\x00"
            return super().transmit(raw)

    with pytest.raises(CardProtocolError):
        Es10Channel(InProcessTransport(TwoByteChannel())).open()


def test_error_inside_context_is_not_masked_by_failing_close() -> None:
    card = ScriptedCard()
    with pytest.raises(KeyError):
        with Es10Channel(InProcessTransport(card)):
            card.sw_for_ins[0x70] = 0x6F00
            raise KeyError("original")


def test_config_validation() -> None:
    for kwargs in ({"block_size": 0}, {"block_size": 256}, {"channel": 20}, {"aid": b"\x01"}):
        with pytest.raises(ValueError):
            ChannelConfig(**kwargs)  # type: ignore[arg-type]


# -- STORE DATA segmentation -------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    block_size=st.integers(1, 255),
    channel=st.integers(0, 19),
    size=st.integers(1, 1200),
    data=st.data(),
)
def test_store_data_blocks_concatenate_to_the_request(
    block_size: int, channel: int, size: int, data: st.DataObject
) -> None:
    size = min(size, 256 * block_size)
    request = data.draw(st.binary(min_size=size, max_size=size))
    card = ScriptedCard(responses=echo, assign_channel=1)
    ch = open_channel(card, channel=channel, block_size=block_size)
    start = len(card.apdus)
    assert ch.exchange(request) == echo(request)
    blocks = [parse_apdu(a) for a in card.apdus[start:] if a[1] == 0xE2]
    expected_count = -(-size // block_size)
    assert len(blocks) == expected_count
    assert b"".join(b.data for b in blocks) == request
    assert [b.p2 for b in blocks] == list(range(expected_count))
    assert [b.p1 for b in blocks] == [0x11] * (expected_count - 1) + [0x91]
    assert all(len(b.data) == block_size for b in blocks[:-1])
    assert all(decode_cla(b.cla) == (channel, True) for b in blocks)
    assert all(b.le is None for b in blocks)
    # GET RESPONSE uses the interindustry CLA of the same channel.
    for a in map(parse_apdu, card.apdus[start:]):
        if a.ins == 0xC0:
            assert decode_cla(a.cla) == (channel, False)


def test_p2_restarts_for_each_request() -> None:
    card = ScriptedCard(responses=echo)
    ch = open_channel(card, block_size=4)
    ch.exchange(bytes(10))
    ch.exchange(bytes(5))
    p2s = [a.p2 for a in card.by_ins(0xE2)]
    assert p2s == [0, 1, 2, 0, 1]


def test_request_needing_more_than_256_blocks_is_refused() -> None:
    ch = open_channel(ScriptedCard(responses=echo), block_size=1)
    assert ch.exchange(bytes(256))  # exactly 256 blocks is fine
    with pytest.raises(ValueError, match="257"):
        ch.exchange(bytes(257))
    with pytest.raises(ValueError):
        ch.exchange(b"")


def test_store_data_le_is_sent_on_the_last_block_only() -> None:
    card = ScriptedCard(responses=echo, mode="direct")
    ch = open_channel(card, block_size=3, store_data_le=True)
    start = len(card.apdus)
    assert ch.exchange(bytes(7)) == echo(bytes(7))
    blocks = card.by_ins(0xE2)
    assert [b.le for b in blocks] == [None, None, 0]
    # Direct mode: the data came back with the last STORE DATA, no GET RESPONSE needed.
    assert [a[1] for a in card.apdus[start:]] == [0xE2, 0xE2, 0xE2]


# -- response assembly -----------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(length=st.integers(0, 2000), chunk=st.integers(1, 256), channel=st.integers(0, 19))
def test_get_response_loop_reassembles_any_chunking(length: int, chunk: int, channel: int) -> None:
    response = bytes(i & 0xFF for i in range(length))
    card = ScriptedCard(responses=lambda _req: response, chunk=chunk)
    ch = open_channel(card, channel=channel)
    start = len(card.apdus)
    assert ch.exchange(GET_EID) == response
    gets = [parse_apdu(a) for a in card.apdus[start:] if a[1] == 0xC0]
    assert len(gets) == (-(-length // min(chunk, 256)) if length else 0)
    assert all(g.cla == interindustry_cla(channel) for g in gets)
    assert all(g.p1 == 0 and g.p2 == 0 and not g.data for g in gets)


def test_get_response_le_follows_61xx_and_00_means_256() -> None:
    card = ScriptedCard(responses=lambda _req: bytes(300))
    ch = open_channel(card)
    assert len(ch.exchange(GET_EID)) == 300
    assert [g.raw for g in card.by_ins(0xC0)][-2:] == [
        bytes.fromhex("01C0000000"),
        bytes.fromhex("01C000002C"),
    ]


def test_data_with_61xx_is_kept_and_completed() -> None:
    response = bytes(range(256)) + bytes(range(44))
    card = ScriptedCard(responses=lambda _req: response, mode="direct")
    ch = open_channel(card, store_data_le=True)
    assert ch.exchange(GET_EID) == response


def test_6cxx_reissues_the_command_with_le() -> None:
    card = ScriptedCard(responses={GET_EID: EID_RESPONSE}, mode="6c")
    ch = open_channel(card)
    assert ch.exchange(GET_EID) == EID_RESPONSE
    sd = card.by_ins(0xE2)
    assert sd[0].raw == bytes.fromhex("81E2910006") + GET_EID
    assert sd[1].raw == bytes.fromhex("81E2910006") + GET_EID + b"\x15"


def test_6cxx_in_get_response_reissues_get_response() -> None:
    class PickyGetResponse(ScriptedCard):
        def transmit(self, raw: bytes) -> bytes:
            a = parse_apdu(raw)
            if a.ins == 0xC0 and a.le != 0x15:
                self.apdus.append(raw)
                return b"\x6c\x15"
            return super().transmit(raw)

    card = PickyGetResponse(responses={GET_EID: EID_RESPONSE}, chunk=0x10)
    ch = open_channel(card)
    assert ch.exchange(GET_EID) == EID_RESPONSE


def test_empty_response_is_accepted() -> None:
    card = ScriptedCard(responses=lambda _req: b"")
    ch = open_channel(card, block_size=2)
    start = len(card.apdus)
    assert ch.exchange(bytes.fromhex("A00300")) == b""
    assert [a[1] for a in card.apdus[start:]] == [0xE2, 0xE2]  # no GET RESPONSE


@pytest.mark.parametrize("sw", [0x6A80, 0x6A88, 0x6985, 0x6D00, 0x6E00, 0x6F00, 0x9300, 0x6281])
def test_other_status_words_raise_status_word_error(sw: int) -> None:
    card = ScriptedCard(responses={GET_EID: EID_RESPONSE})
    ch = open_channel(card)
    card.sw_for_ins[0xE2] = sw
    with pytest.raises(StatusWordError) as info:
        ch.exchange(GET_EID)
    err = info.value
    assert err.sw == sw and err.sw1 == sw >> 8 and err.sw2 == sw & 0xFF
    assert err.command_name == "STORE DATA"
    assert f"{sw:04X}" in str(err) and sw_meaning(sw) in str(err)


def test_status_word_error_on_intermediate_block_and_get_response() -> None:
    card = ScriptedCard(responses=echo)
    ch = open_channel(card, block_size=2)
    card.sw_for_ins[0xE2] = 0x6A86
    with pytest.raises(StatusWordError, match="6A86"):
        ch.exchange(bytes(5))
    del card.sw_for_ins[0xE2]
    card.sw_for_ins[0xC0] = 0x6F00
    with pytest.raises(StatusWordError) as info:
        ch.exchange(bytes(5))
    assert info.value.command_name == "GET RESPONSE"


def test_unknown_request_reports_6a88_meaning() -> None:
    ch = open_channel(ScriptedCard())
    with pytest.raises(StatusWordError, match="referenced data or reference data not found"):
        ch.exchange(GET_EID)


def test_sw_meaning_covers_ranges() -> None:
    assert "256" in sw_meaning(0x6100)
    assert "0x" not in sw_meaning(0x6C10) and "16" in sw_meaning(0x6C10)
    assert sw_meaning(0x63C2) == "warning: counter 2"
    assert sw_meaning(0x1234) == "unknown status word"


def test_response_without_status_word_is_a_protocol_error() -> None:
    class Mute:
        def transmit(self, apdu: bytes) -> bytes:
            return b"\x90"

    with pytest.raises(CardProtocolError):
        Es10Channel(InProcessTransport(Mute()), ChannelConfig(channel=0)).open()


# -- transport ---------------------------------------------------------------------------------


def test_in_process_transport_traces_hex_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    card = ScriptedCard()
    transport = InProcessTransport(card)
    assert isinstance(transport, Transport) and isinstance(transport, ResettableTransport)
    with caplog.at_level(logging.DEBUG, logger="ipa.transport"):
        transport.transmit(bytes.fromhex("0070000001"))
    assert "-> 0070000001" in caplog.text and "<- 019000" in caplog.text
    assert transport.reset() == bytes.fromhex("3B9F96801FC78031E073FE211B63F100AD830F9000")


def test_in_process_transport_without_reset() -> None:
    class NoReset:
        def transmit(self, apdu: bytes) -> bytes:
            return b"\x90\x00"

    with pytest.raises(TransportError):
        InProcessTransport(NoReset()).reset()
    with pytest.raises(TypeError):
        InProcessTransport(object())  # type: ignore[arg-type]
