"""A modem's start-up against the emulated card, in plain APDUs (no ES10).

    python examples/usim_startup.py [--trace]

Makes an eUICC with a GSMA TS.48 test profile enabled, powers it up, and does what a modem's
SIM driver does first: read EF.DIR to find the USIM, read EF.ICCID, select ADF.USIM, verify
PIN1 if the PIN status says so, read EF.IMSI, and run AUTHENTICATE. The network side (the
AuC) is played here with the profile's published test key and the 3GPP TS 34.108 test
algorithm, so the card's RES can be checked; a replayed challenge shows the
synchronisation failure and how the network recovers from AUTS.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from euicc_protocol import profiles
from euicc_sim.card import Euicc
from euicc_sim.uicc.testalg import TestAlgorithm

PACKAGE = "TS48V5-SAIP2-3-NOBERTLV-UNIQUE"  # a shipped GSMA TS.48 test profile
TS48_KI = bytes(range(16))  # every TS.48 profile's published test key
TS48_PIN1 = b"0000"


class Modem:
    """The SIM driver of a modem: APDUs on the basic channel, T=0 style ``61xx`` handling."""

    def __init__(self, transmit: Callable[[bytes], bytes], trace: bool) -> None:
        self._transmit = transmit
        self._trace = trace

    def send(self, apdu: str | bytes) -> tuple[bytes, int]:
        raw = bytes.fromhex(apdu) if isinstance(apdu, str) else apdu
        response = self._exchange(raw)
        data, sw = response[:-2], int.from_bytes(response[-2:], "big")
        while sw >> 8 == 0x61:  # data waiting: GET RESPONSE
            more = self._exchange(bytes((0x00, 0xC0, 0x00, 0x00, sw & 0xFF)))
            data, sw = data + more[:-2], int.from_bytes(more[-2:], "big")
        return data, sw

    def _exchange(self, apdu: bytes) -> bytes:
        response = self._transmit(apdu)
        if self._trace:
            print(f"      > {apdu.hex().upper()}\n      < {response.hex().upper()}")
        return response


def tlvs(data: bytes) -> dict[int, bytes]:
    out, pos = {}, 0
    while pos + 2 <= len(data):
        out[data[pos]] = data[pos + 2 : pos + 2 + data[pos + 1]]
        pos += 2 + data[pos + 1]
    return out


def imsi_digits(ef: bytes) -> str:
    body = ef[1 : 1 + ef[0]]
    nibbles = [body[0] >> 4] + [n for b in body[1:] for n in (b & 0x0F, b >> 4)]
    return "".join(str(n) for n in nibbles if n <= 9)


def autn_for(algo: TestAlgorithm, rand: bytes, sqn: int, amf: bytes = b"\x80\x00") -> bytes:
    """The network side: AUTN = SQN XOR AK || AMF || MAC (3GPP TS 33.102 §6.3.2)."""
    sqn_bytes = sqn.to_bytes(6, "big")
    mac, _ = algo.f1_f1star(rand, sqn_bytes, amf)
    ak = algo.f2345(rand).ak
    return bytes(a ^ b for a, b in zip(sqn_bytes, ak, strict=True)) + amf + mac


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", action="store_true", help="print every APDU")
    args = parser.parse_args()

    card = Euicc.create(None, fsync=False)
    card.preload(profiles.load(PACKAGE), enable=True)
    print(f"--> power on: ATR {card.reset().hex().upper()}")
    modem = Modem(card.transmit, args.trace)

    print("--> SELECT MF, read EF.DIR")
    fcp, sw = modem.send("00A40004023F00")
    assert sw == 0x9000 and fcp[0] == 0x62
    modem.send("00A40004022F00")
    usim_aid = None
    for number in range(1, 255):
        record, sw = modem.send(bytes((0x00, 0xB2, number, 0x04, 0x00)))
        if sw != 0x9000:
            break
        if record[0] != 0x61:
            continue
        app = tlvs(record[2 : 2 + record[1]])
        label = app.get(0x50, b"").decode(errors="replace")
        print(f"      application {app[0x4F].hex().upper()} {label}")
        if app[0x4F][:7] == bytes.fromhex("A0000000871002") and usim_aid is None:
            usim_aid = app[0x4F]  # 3GPP RID and the USIM application code
    assert usim_aid is not None, "EF.DIR lists no USIM"

    iccid, sw = modem.send("00B0820000")  # READ BINARY with SFI 02: EF.ICCID
    swapped = "".join(f"{b & 0x0F:X}{b >> 4:X}" for b in iccid).rstrip("F")
    print(f"--> EF.ICCID {swapped}")

    print(f"--> SELECT ADF.USIM {usim_aid.hex().upper()}")
    fcp, sw = modem.send(bytes((0x00, 0xA4, 0x04, 0x04, len(usim_aid))) + usim_aid)
    template = tlvs(fcp[2:])[0xC6]
    refs = [template[i + 2] for i in range(3, len(template), 3) if template[i] == 0x83]
    ps_do = template[2]  # 90 01 PS_DO, then 83 01 <key reference> per PIN
    pin1_enabled = bool(ps_do & (0x80 >> refs.index(0x01)))
    print(f"      PIN1 {'enabled' if pin1_enabled else 'disabled'}")
    _, sw = modem.send("0020000100")
    if sw != 0x9000:
        print(f"--> VERIFY PIN1 ({sw & 0x0F} tries left)")
        _, sw = modem.send(bytes.fromhex("0020000108") + TS48_PIN1.ljust(8, b"\xff"))
        assert sw == 0x9000, f"VERIFY answered {sw:04X}"

    imsi, sw = modem.send("00B0870009")  # READ BINARY with SFI 07: EF.IMSI
    assert sw == 0x9000
    print(f"--> EF.IMSI {imsi_digits(imsi)}")

    network = TestAlgorithm(TS48_KI)  # the AuC of the test network
    rand = os.urandom(16)
    sqn = 32  # SEQ 1, IND 0
    print(f"--> AUTHENTICATE RAND {rand.hex().upper()} SQN {sqn}")
    answer, sw = modem.send(
        bytes.fromhex("0088008122") + b"\x10" + rand + b"\x10" + autn_for(network, rand, sqn)
    )
    assert sw == 0x9000 and answer[0] == 0xDB, f"{answer.hex()} {sw:04X}"
    res = answer[2 : 2 + answer[1]]
    xres = network.f2345(rand).res
    print(f"      RES {res.hex().upper()} {'== XRES: authenticated' if res == xres else 'WRONG'}")

    print("--> the same challenge again (a replay)")
    answer, sw = modem.send(
        bytes.fromhex("0088008122") + b"\x10" + rand + b"\x10" + autn_for(network, rand, sqn)
    )
    assert answer[:2] == b"\xdc\x0e"
    auts = answer[2:]
    sqn_ms = bytes(a ^ b for a, b in zip(auts[:6], network.f5star(rand), strict=True))
    print(f"      synchronisation failure: the card's SQN_MS is {int.from_bytes(sqn_ms, 'big')}")
    sqn = int.from_bytes(sqn_ms, "big") + 32
    answer, sw = modem.send(
        bytes.fromhex("0088008122") + b"\x10" + rand + b"\x10" + autn_for(network, rand, sqn)
    )
    assert sw == 0x9000 and answer[0] == 0xDB
    print(f"      with SQN {sqn}: authenticated again")
    print("start-up finished")


if __name__ == "__main__":
    main()
