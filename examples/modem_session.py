"""An emulated cellular modem on a pseudo-terminal, and a plain AT session with it.

What firmware sees when it reaches the eUICC through the module (3GPP TS 27.007): the script
makes a card with a TS.48 test profile enabled, puts it behind ``euicc-sim modem`` (here in a
thread; ``euicc-sim modem DIR --pty PATH`` does the same from a shell), opens the pty with
pyserial and talks AT to it:

* ``ATI``, ``AT+CPIN?`` and ``AT+CPIN="0000"`` (PIN1), ``AT+CIMI`` and ``AT+CCID`` (the modem
  reads EF.IMSI and EF.ICCID itself);
* ``AT+CCHO`` opens a logical channel to ISD-R, ``AT+CGLA`` sends ES10c GetEID
  (``BF3E 03 5C 01 5A`` in STORE DATA) on it, ``AT+CCHC`` closes it;
* ``AT+CRSM`` reads EF.ICCID by file id, the restricted way;
* the same GetEID through the IPAd's modem transport (``ipa --modem`` uses it).

Run: ``python examples/modem_session.py [--quirks NAME]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import serial

from euicc_sim.card import Euicc
from euicc_sim.frontends.modem import PROFILES, Modem, quirks_named
from euicc_sim.frontends.modem.serve import ModemServer
from ipa.es10 import Es10Client
from ipa.modem import open_modem_transport

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "profiles" / "ts48" / "TS48V1-A-UNIQUE.der"
ISD_R = "A0000005591010FFFFFFFF8900000100"


def at(port: serial.Serial, line: str) -> list[str]:
    """Send one command line, print the exchange, return the reply lines up to the final one."""
    port.write(line.encode() + b"\r")
    received = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        received += port.read(max(1, port.in_waiting))
        lines = [x for x in received.decode().replace("\r", "\n").split("\n") if x]
        if lines and (lines[-1] in ("OK", "ERROR") or lines[-1].startswith("+CME ERROR")):
            break
    print(f"> {line}")
    for reply in lines:
        print(f"< {reply}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quirks", default="generic", choices=sorted(PROFILES))
    args = parser.parse_args()

    card = Euicc.create(None)
    card.preload(PACKAGE.read_bytes(), enable=True)
    with tempfile.TemporaryDirectory() as tmp:
        link = Path(tmp) / "ttyEUICC"
        server = ModemServer(Modem(card, quirks_named(args.quirks)), pty_path=link).start()
        print(f"emulated modem ({args.quirks}) on {link} -> {server.device}")
        try:
            with serial.serial_for_url(str(link), timeout=0.1) as port:
                at(port, "ATE0")
                at(port, "AT+CMEE=2")
                at(port, "ATI")
                if "+CPIN: SIM PIN" in at(port, "AT+CPIN?"):
                    at(port, 'AT+CPIN="0000"')  # the TS.48 profiles' PIN1
                at(port, "AT+CIMI")  # EF.IMSI of the enabled profile's USIM
                at(port, "AT+CCID")
                session = at(port, f'AT+CCHO="{ISD_R}"')[0].split(":")[-1].strip()
                get_eid = "80E2910006BF3E035C015A"
                reply = at(port, f'AT+CGLA={session},{len(get_eid)},"{get_eid}"')[0]
                response = reply.split(",")[1].strip('"')
                print(f"EID from the card's answer: {response[10:42]}")
                at(port, f"AT+CCHC={session}")
                at(port, "AT+CRSM=176,12258,0,0,10")
            # The IPAd's own transport: ES10 over whatever the module offers.
            with open_modem_transport(str(link)) as transport:
                with Es10Client.open(transport) as client:
                    print(f"ipa.modem GetEID: {client.get_eid()}")
        finally:
            server.stop()
    print(f"card EID:         {card.eid}")
    print("session finished")


if __name__ == "__main__":
    main()
