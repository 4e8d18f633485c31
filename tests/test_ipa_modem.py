"""ipa.modem and ipa.at_reply: the IPAd's card transport over a module's AT port.

Two layers:

* replay of byte-exact module transcripts (``tests/data/modem/*.txt``, written after the
  modules' manuals and public reports): the transport must write exactly the commands the
  transcript shows and make of the replies exactly the APDU responses or errors it names;
* end to end through ``euicc-sim modem`` on a real pseudo-terminal (in a thread, or the CLI as
  a subprocess): ES10 on every quirks profile, reset, REFRESH carried out by the modem, a
  profile download from the reference SM-DP+ and a pull-flow cycle with the reference eIM.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st
from modem_support import ISD_R, LockedCard, RefreshingCard, modem_transport, served_modem

from euicc_cli import ipa_command as ipa_cli
from euicc_protocol import saip
from euicc_protocol.crypto import Curve
from euicc_protocol.pki import CertRole
from euicc_protocol.testpki import issue_server_certificate, load_sgp26
from euicc_sim.card import Euicc
from euicc_sim.frontends.modem import PROFILES
from ipa import modem as modem_module
from ipa.at_reply import Final, LineSplitter, final_result, hex_field, split_fields
from ipa.channel import ChannelConfig
from ipa.codes import ProfileState
from ipa.es10 import Es10Client
from ipa.modem import (
    MODEM_QUIRKS,
    CmeError,
    ModemErrorReply,
    ModemTimeoutError,
    ModemTransport,
    UnexpectedReplyError,
    open_modem_transport,
)

ROOT = Path(__file__).resolve().parent.parent
TS48 = ROOT / "profiles" / "ts48"
PKG_A, PKG_B = "TS48V1-A-UNIQUE.der", "TS48V1-B-UNIQUE.der"
TRANSCRIPTS = Path(__file__).resolve().parent / "data" / "modem"


def iccid(name: str) -> str:
    return saip.read_package((TS48 / name).read_bytes()).iccid


# -- ipa.at_reply ----------------------------------------------------------------------------


def test_line_splitter_takes_cr_lf_and_bare_cr_or_lf_and_keeps_partial_lines() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"\r\n+CSIM: 4,") == []
    assert splitter.feed(b'"9000"\r\n\r\nOK\r\n') == ['+CSIM: 4,"9000"', "OK"]
    assert splitter.feed(b"AT\r\rOK\n+CP") == ["AT", "OK"]
    assert splitter.partial == b"+CP"


def test_final_result_codes() -> None:
    assert final_result("OK").kind is Final.OK  # type: ignore[union-attr]
    assert final_result("ERROR").kind is Final.ERROR  # type: ignore[union-attr]
    assert final_result("NO CARRIER").kind is Final.ERROR  # type: ignore[union-attr]
    assert final_result("+CME ERROR: 10").code == 10  # type: ignore[union-attr]
    assert final_result("+CME ERROR: SIM failure").text == "SIM failure"  # type: ignore[union-attr]
    assert final_result("+CMS ERROR: 500").code == 500  # type: ignore[union-attr]
    for other in ("+CSIM: 4,9000", "OKAY", "1", "+CPIN: READY"):
        assert final_result(other) is None


def test_fields_and_hex_quoted_or_not() -> None:
    assert split_fields('44,"BF2E,00"') == ["44", "BF2E,00"]
    assert hex_field('"9000"') == hex_field("9000") == b"\x90\x00"
    for bad in ("900", "90G0"):
        with pytest.raises(ValueError):
            hex_field(bad)


# -- transcripts ------------------------------------------------------------------------------


@dataclass
class ScriptedPort:
    """A serial port playing a module's side of a transcript, ``chunk`` bytes per read."""

    exchanges: list[tuple[bytes, bytes]]
    chunk: int = 5
    timeout: float | None = 0.1
    _readable: bytearray = field(default_factory=bytearray)
    written: list[bytes] = field(default_factory=list)
    closed: bool = False

    @property
    def in_waiting(self) -> int:
        return len(self._readable)

    def read(self, size: int = 1) -> bytes:
        if not self._readable:
            time.sleep(min(self.timeout or 0, 0.01))
            return b""
        n = min(size, self.chunk, len(self._readable))
        out = bytes(self._readable[:n])
        del self._readable[:n]
        return out

    def write(self, data: bytes) -> int:
        self.written.append(data)
        assert self.exchanges, f"the TE wrote {data!r} after the end of the transcript"
        expected, reply = self.exchanges.pop(0)
        assert data == expected, f"the TE wrote {data!r}, the transcript has {expected!r}"
        self._readable += reply
        return len(data)

    def reset_input_buffer(self) -> None:
        self._readable.clear()

    def close(self) -> None:
        self.closed = True


def load_transcript(name: str) -> tuple[list[tuple[bytes, bytes]], list[str]]:
    """The (TE line, module reply) pairs and the ``!`` steps of a transcript file."""
    exchanges: list[tuple[bytes, bytes]] = []
    steps: list[str] = []
    for raw in (TRANSCRIPTS / name).read_text().splitlines():
        if not raw or raw.startswith("#"):
            continue
        kind, text = raw[0], raw[2:]
        data = codecs.decode(text, "unicode_escape").encode("latin-1")
        if kind == ">":
            exchanges.append((data, b""))
        elif kind == "<":
            te, reply = exchanges[-1]
            exchanges[-1] = (te, reply + data)
        elif kind == "!":
            steps.append(text)
        else:
            raise ValueError(f"{name}: bad line {raw!r}")
    return exchanges, steps


ERRORS: dict[str, type[Exception]] = {
    "CmeError": CmeError,
    "ModemErrorReply": ModemErrorReply,
    "ModemTimeoutError": ModemTimeoutError,
    "UnexpectedReplyError": UnexpectedReplyError,
}


@pytest.mark.parametrize("name", sorted(p.name for p in TRANSCRIPTS.glob("*.txt")))
def test_transcript(name: str) -> None:
    exchanges, steps = load_transcript(name)
    port = ScriptedPort(exchanges)
    transport = ModemTransport(port, timeout=0.3)
    for step in steps:
        verb, _, rest = step.partition(" ")
        if verb == "transmit":
            apdu, _, response = rest.partition(" -> ")
            got = transport.transmit(bytes.fromhex(apdu))
            assert got.hex().upper() == response.replace(" ", ""), step
        elif verb == "error":
            apdu, error, *attrs = rest.split(" ", 2)
            with pytest.raises(ERRORS[error]) as caught:
                transport.transmit(bytes.fromhex(apdu))
            for attr in attrs:
                key, _, value = attr.partition("=")
                assert str(getattr(caught.value, key)) == value
        elif verb == "urcs":
            assert list(transport.urcs) == rest.split(", ")
        else:
            raise AssertionError(f"unknown step {step!r}")
    assert port.exchanges == [], "the transport stopped before the end of the transcript"


def test_a_reply_without_its_information_text_is_unexpected() -> None:
    exchanges = [
        (b"AT\r", b"\r\nOK\r\n"),
        (b"ATE0\r", b"\r\nOK\r\n"),
        (b"AT+CMEE=1\r", b"\r\nOK\r\n"),
        (b'AT+CSIM=10,"0070000001"\r', b"\r\n+CSIM: 7,0190000\r\n\r\nOK\r\n"),
        (b'AT+CSIM=14,"00A4000C023F00"\r', b"\r\nOK\r\n"),
    ]
    transport = ModemTransport(ScriptedPort(exchanges), timeout=0.3)
    with pytest.raises(UnexpectedReplyError, match="hex"):
        transport.csim(bytes.fromhex("0070000001"))
    with pytest.raises(UnexpectedReplyError, match="one \\+CSIM: line"):
        transport.csim(bytes.fromhex("00A4000C023F00"))


def test_reset_waits_for_the_ready_urc() -> None:
    exchanges = [
        (b"AT\r", b"\r\nOK\r\n"),
        (b"ATE0\r", b"\r\nOK\r\n"),
        (b"AT+CMEE=1\r", b"\r\nOK\r\n"),
        (b"AT+CFUN=0\r", b"\r\nOK\r\n"),
        (b"AT+CFUN=1\r", b"\r\nOK\r\n\r\n+QUSIM: 1\r\n"),
    ]
    port = ScriptedPort(exchanges)
    transport = ModemTransport(port, quirks=MODEM_QUIRKS["auto"], timeout=0.3)
    assert transport.reset() == b""
    assert transport.card_restarts == 1 and port.exchanges == []


def test_reset_without_urc_asks_cpin_and_gives_up_when_not_ready() -> None:
    exchanges = [
        (b"AT\r", b"\r\nOK\r\n"),
        (b"ATE0\r", b"\r\nOK\r\n"),
        (b"AT+CMEE=1\r", b"\r\nOK\r\n"),
        (b"AT+CFUN=0\r", b"\r\nOK\r\n"),
        (b"AT+CFUN=1\r", b"\r\nOK\r\n"),
        (b"AT+CPIN?\r", b"\r\n+CPIN: NOT READY\r\n\r\nOK\r\n"),
    ]
    transport = ModemTransport(ScriptedPort(exchanges), timeout=0.3, reset_timeout=0.3)
    with pytest.raises(ModemTimeoutError, match="did not restart"):
        transport.reset()


def test_a_silent_port_is_a_timeout(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        with pytest.raises(ModemTimeoutError, match="AT: no answer"):
            open_modem_transport(os.ttyname(slave), timeout=0.2)
    finally:
        os.close(master)
        os.close(slave)


def test_unknown_quirks_and_missing_device() -> None:
    with pytest.raises(ValueError, match="available: auto"):
        open_modem_transport("/dev/null", quirks="nokia")
    with pytest.raises(modem_module.ModemError, match="cannot open"):
        open_modem_transport("/nonexistent/ttyUSB9")


# -- end to end through euicc-sim modem on a pty ------------------------------------------------


def two_profile_card(directory: Path | None = None) -> Euicc:
    card = Euicc.create(directory, fsync=False)
    card.preload((TS48 / PKG_A).read_bytes(), enable=True)
    card.preload((TS48 / PKG_B).read_bytes())
    return card


def test_ipa_and_modem_profiles_match() -> None:
    assert set(PROFILES) | {"auto"} == set(MODEM_QUIRKS)


@pytest.mark.parametrize("quirks", sorted(PROFILES))
@pytest.mark.parametrize("ipa_quirks", ["auto", "same"])
def test_es10_over_every_quirks_profile(tmp_path: Path, quirks: str, ipa_quirks: str) -> None:
    card = two_profile_card()
    with modem_transport(card, tmp_path, quirks, quirks if ipa_quirks == "same" else "auto") as t:
        for framing in (ChannelConfig(), ChannelConfig(channel=7, block_size=16, select_p2=0)):
            with Es10Client.open(t, framing) as client:
                assert client.get_eid() == card.eid
                states = {p.iccid: p.profile_state for p in client.get_profiles_info()}
                assert states == {
                    iccid(PKG_A): ProfileState.ENABLED,
                    iccid(PKG_B): ProfileState.DISABLED,
                }
                # Several hundred bytes each way: GET RESPONSE chains, many STORE DATA blocks.
                info2 = client.get_euicc_info2()
                assert info2.to_json()["svn"]
                assert client.retrieve_notifications_list() == []
        # Every channel the client opened is closed again on the card.
        assert card._os.open_channels == (0,)


def test_reset_powers_the_card_off_and_on(tmp_path: Path) -> None:
    card = two_profile_card()
    with modem_transport(card, tmp_path, "telit") as transport:
        client = Es10Client.open(transport)
        assert card._os.open_channels == (0, 1)
        transport.reset()
        assert card._os.open_channels == (0,)  # the reset closed the card's channels
        with Es10Client.open(transport) as again:
            assert again.get_eid() == card.eid
        del client


@pytest.mark.parametrize("quirks", ["quectel", "simcom", "huawei", "ublox"])
def test_refresh_carried_out_by_the_modem_is_transparent_to_the_es10_client(
    tmp_path: Path, quirks: str
) -> None:
    """A command ends with 91xx; the modem fetches the REFRESH (UICC reset), resets the card
    and announces it; the IPAd opens its channel again and carries on."""
    card = two_profile_card()
    stub = RefreshingCard(card, qualifier=0x04, arm_on=b"\xbf\x2d")  # on GetProfilesInfo
    with modem_transport(stub, tmp_path, quirks) as transport:
        with Es10Client.open(transport) as client:
            states = {p.iccid: p.profile_state for p in client.get_profiles_info()}
            assert client.get_eid() == card.eid  # on a channel opened again after the reset
        assert states[iccid(PKG_A)] == ProfileState.ENABLED
        assert stub.resets == 2  # the modem's power-up, then the REFRESH
        assert stub.fetches == 1 and stub.terminal_responses == []
        assert transport.card_restarts >= 1
    assert card._os.open_channels == (0,)


def test_refresh_after_a_profile_switch_is_carried_out_by_the_modem(tmp_path: Path) -> None:
    """The card's own REFRESH (EnableProfile with refreshFlag): the modem fetches it, resets
    the card, announces it; the ES10 client carries on and the new profile's USIM shows."""
    pytest.importorskip("euicc_sim.proactive", reason="the card has no proactive REFRESH")
    card = Euicc.create(None, fsync=False, kind="consumer")  # type: ignore[call-arg]
    card.preload((TS48 / PKG_A).read_bytes(), enable=True)
    card.preload((TS48 / PKG_B).read_bytes())
    with modem_transport(card, tmp_path, "quectel") as transport:
        with Es10Client.open(transport) as client:
            client.enable_profile(iccid=iccid(PKG_B), refresh=True)
            states = {p.iccid: p.profile_state for p in client.get_profiles_info()}
        assert transport.card_restarts >= 1
        assert transport.command("AT+QCCID", expect="+QCCID:") == [f"+QCCID: {iccid(PKG_B)}"]
    assert states[iccid(PKG_B)] == ProfileState.ENABLED


# -- a profile download from the reference SM-DP+ over the modem -----------------------------


@pytest.fixture(scope="module")
def smdpp() -> Iterator[tuple[Any, str, Any]]:
    from euicc_servers.smdpp import OrderStore, SmdpConfig, SmdpCore, create_app
    from euicc_servers.smdpp import run_in_thread as run_smdpp
    from ipa.es9p import Es9Config

    nist = load_sgp26(Curve.NIST_P256)
    tls = issue_server_certificate(
        nist.ci, CertRole.DP_TLS, "2.999.10", dns_names=("localhost",), ip_addresses=("127.0.0.1",)
    )
    core = SmdpCore(SmdpConfig.from_test_pki([nist], "127.0.0.1", tls=tls), OrderStore())
    config = Es9Config(ca_certificates=(nist.ci.cert.public_bytes(Encoding.PEM),), timeout=10)
    with run_smdpp(create_app(core), tls=tls) as server:
        yield core, server.address, config


@pytest.mark.parametrize("quirks", ["generic", "simcom"])
def test_profile_download_over_the_modem(
    tmp_path: Path, smdpp: tuple[Any, str, Any], quirks: str
) -> None:
    from ipa.download import download_profile_sync

    core, address, config = smdpp
    matching_id = f"MODEM-{quirks}"
    core.orders.add_order(matching_id, TS48 / PKG_B)
    card = Euicc.create(None, fsync=False)
    with modem_transport(card, tmp_path, quirks) as transport:
        with Es10Client.open(transport) as client:
            result = download_profile_sync(client, f"LPA:1${address}${matching_id}", config=config)
            installed = {p.iccid: p.profile_state for p in client.get_profiles_info()}
    assert result.iccid == iccid(PKG_B)
    assert installed == {iccid(PKG_B): ProfileState.DISABLED}
    assert result.notification_delivered and result.notification_removed


# -- a pull-flow cycle with the reference eIM over the modem ------------------------------------


def test_pull_flow_cycle_over_the_modem_runs_the_eims_enable(tmp_path: Path) -> None:
    from euicc_servers.eim import OrderState, build_eim
    from euicc_servers.eim import run_in_thread as run_eim
    from ipa.pull import PullConfig, PullFlow

    card = two_profile_card()
    eim = build_eim("sgp26")
    with run_eim(eim.core, tls=eim.tls), modem_transport(card, tmp_path, "ublox") as transport:
        eim.core.register(card.eid)  # the eIM's address is known once it runs
        initial = bytes(eim.core.configuration(card.eid).add_initial_eim_request())
        order = eim.core.queue(
            card.eid, {"type": "psmo", "operations": [{"enable": {"iccid": iccid(PKG_B)}}]}
        )

        async def cycle() -> Any:
            with Es10Client.open(transport) as client:
                flow = PullFlow(client, PullConfig(initial_eim=initial))
                try:
                    return await flow.poll_once()
                finally:
                    await flow.aclose()

        outcome = asyncio.run(cycle())
    assert outcome.ok, outcome.error
    assert card.state.enabled_profile is not None
    assert saip.read_package((TS48 / PKG_B).read_bytes()).iccid_ef == (
        card.state.enabled_profile.iccid
    )
    done = eim.core.store.order(int(order.id))
    assert (done.state, done.verified) == (OrderState.DONE, True)


# -- the command lines ------------------------------------------------------------------------


def test_ipa_cli_over_modem(tmp_path: Path, capsys: Any) -> None:
    card = LockedCard(two_profile_card())
    with served_modem(card, tmp_path, "quectel") as server:
        assert ipa_cli.main(["--modem", server.url, "--quirks", "quectel", "eid"]) == 0
        assert capsys.readouterr().out.strip() == card.card.eid
        assert ipa_cli.main(["--modem", server.url, "--json", "profiles"]) == 0
        listed = json.loads(capsys.readouterr().out)["data"]["profileInfoListOk"]
        assert {p["iccid"] for p in listed} == {iccid(PKG_A), iccid(PKG_B)}
        assert ipa_cli.main(["--modem", server.url, "notifications"]) == 0
        assert "no pending notifications" in capsys.readouterr().out
    assert ipa_cli.main(["--modem", str(tmp_path / "gone"), "eid"]) == 3  # unreachable
    assert "cannot open" in capsys.readouterr().err
    assert ipa_cli.main(["--card", str(tmp_path), "--baud", "9600", "eid"]) == 2
    assert ipa_cli.main(["--card", str(tmp_path), "--modem", "x", "eid"]) == 2


def test_euicc_sim_modem_command_serves_a_card_directory(tmp_path: Path, capsys: Any) -> None:
    directory = tmp_path / "card"
    card = two_profile_card(directory)
    card.close()  # the modem process owns the directory from now on
    link = tmp_path / "ttyEUICC"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [sys.executable, "-m", "euicc_sim", "modem", str(directory), "--pty", str(link)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()  # printed once the pty is linked
        assert f"on {link}" in banner, banner + (process.stderr.read() if process.stderr else "")
        assert ipa_cli.main(["--modem", str(link), "eid"]) == 0
        assert capsys.readouterr().out.strip() in banner
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0
    assert not link.exists()


def test_modem_command_usage_errors(tmp_path: Path, capsys: Any) -> None:
    from euicc_cli import sim_command

    assert sim_command.main(["modem", str(tmp_path)]) == 2  # neither --pty nor --tcp
    assert sim_command.main(["modem", str(tmp_path), "--tcp", "nowhere"]) == 2
    capsys.readouterr()
    assert sim_command.main(["modem", str(tmp_path), "--tcp", "127.0.0.1:0"]) == 3
    assert "holds no card" in capsys.readouterr().err


def test_isd_r_aid_constant() -> None:
    from ipa.channel import ISD_R_AID

    assert ISD_R == ISD_R_AID


@settings(max_examples=80)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(
                [
                    "+CSIM: 4,9000",
                    '+CSIM: 4,"9000"',
                    "+CSIM: 3,900",
                    "+CSIM:",
                    "+CSIM: x,y,z",
                    "+CPIN: READY",
                    "RING",
                    "AT+CSIM=10",
                    "",
                    '+CSIM: 6,"01900"',
                ]
            ),
            st.text(alphabet='+CSIM:,"0123456789ABCDEFx ', max_size=20),
        ),
        max_size=4,
    ),
    st.sampled_from(["OK", "ERROR", "+CME ERROR: 4", "+CME ERROR: SIM busy", ""]),
)
def test_any_module_reply_is_bytes_or_a_modem_error(lines: list[str], final: str) -> None:
    reply = "".join(f"\r\n{line}\r\n" for line in lines + [final]).encode()
    exchanges = [
        (b"AT\r", b"\r\nOK\r\n"),
        (b"ATE0\r", b"\r\nOK\r\n"),
        (b"AT+CMEE=1\r", b"\r\nOK\r\n"),
        (b'AT+CSIM=10,"0070000001"\r', reply),
    ]
    transport = ModemTransport(ScriptedPort(exchanges, chunk=64), timeout=0.05)
    try:
        response = transport.csim(bytes.fromhex("0070000001"))
    except modem_module.ModemError:
        return
    assert len(response) >= 2


def test_a_slow_answer_is_awaited_until_the_timeout() -> None:
    """The answer comes after many empty reads (a card busy computing a signature)."""

    @dataclass
    class SlowPort(ScriptedPort):
        silent_reads: int = 0

        def read(self, size: int = 1) -> bytes:
            if self._readable and self.silent_reads > 0:
                self.silent_reads -= 1
                return b""
            return super().read(size)

    exchanges = [
        (b"AT\r", b"\r\nOK\r\n"),
        (b"ATE0\r", b"\r\nOK\r\n"),
        (b"AT+CMEE=1\r", b"\r\nOK\r\n"),
        (b'AT+CSIM=10,"0070000001"\r', b'\r\n+CSIM: 6,"019000"\r\n\r\nOK\r\n'),
    ]
    port = SlowPort(exchanges)
    transport = ModemTransport(port, timeout=5)
    port.silent_reads = 20
    assert transport.csim(bytes.fromhex("0070000001")) == b"\x01\x90\x00"
    assert port.silent_reads == 0
