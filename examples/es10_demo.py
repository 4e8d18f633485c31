"""euicc-sim demo: a software eUICC driven through the IPAd's ES10 client.

    python examples/es10_demo.py [--dir DIR] [--trace]

Creates a card (in a temporary directory unless --dir is given), preloads two GSMA TS.48
test profiles as a factory would, then enables one, switches to the other and deletes the
first, all through ES10 over APDUs, and shows the card's answers and notifications.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from euicc_sim.card import Euicc
from ipa.es10 import Es10Client, Es10Error
from ipa.transport import InProcessTransport

PROFILES = Path(__file__).resolve().parent.parent / "profiles" / "ts48"
FIRST = PROFILES / "TS48V1-A-UNIQUE.der"
SECOND = PROFILES / "TS48V5-SAIP2-3-NOBERTLV-UNIQUE.der"
NOTIFY = "smdp.example.com"


def show_profiles(client: Es10Client) -> None:
    for p in client.get_profiles_info():
        state = p.profile_state.asn1_name if p.profile_state is not None else "?"
        klass = p.profile_class.asn1_name if p.profile_class is not None else "?"
        nickname = f" (nickname '{p.profile_nickname}')" if p.profile_nickname else ""
        print(f"      {p.iccid:<20} {state:<9} {klass:<12} {p.profile_name}{nickname}")


def step(text: str) -> None:
    print(f"\n--> {text}")


def demo(directory: Path) -> None:
    step(f"create a new consumer (SGP.22) eUICC in {directory}")
    card = Euicc.create(directory, kind="consumer")  # local ES10c profile management
    print(f"      EID {card.eid}")

    step("factory preload of two TS.48 test profiles (enable/disable/delete notify " + NOTIFY + ")")
    for package in (FIRST, SECOND):
        profile = card.preload(package.read_bytes(), notification_address=NOTIFY)
        print(f"      {package.name}: ISD-P {profile.isdp_aid.hex().upper()}")

    step("IPAd opens a logical channel, selects ISD-R and asks who the card is (ES10)")
    client = Es10Client.open(InProcessTransport(card))
    print(f"      channel {client.channel.channel}, GetEID -> {client.get_eid()}")
    info2 = client.get_euicc_info2()
    iot = info2.iot_specific_info
    versions = ", ".join(iot.iot_version) if iot is not None else "-"
    print(f"      GetEUICCInfo2: SGP.22 SVN {info2.svn}, SGP.32 version {versions}")
    show_profiles(client)
    first, second = (p.iccid for p in client.get_profiles_info())

    step(f"EnableProfile {first}")
    client.enable_profile(iccid=first)
    show_profiles(client)

    step(f"EnableProfile {second} (switch: the card disables {first} first)")
    client.enable_profile(iccid=second)
    show_profiles(client)

    step(f"DeleteProfile {second} while it is enabled (the card must refuse)")
    try:
        client.delete_profile(iccid=second)
    except Es10Error as exc:
        print(f"      refused: {exc}")

    step(f"DeleteProfile {first}")
    client.delete_profile(iccid=first)
    client.set_nickname(second, "demo")
    show_profiles(client)

    step("pending notifications (signed by the eUICC, waiting for delivery)")
    for n in client.list_notification():
        event = n.event.asn1_name if n.event is not None else "?"
        print(f"      #{n.seq_number} {event:<20} {n.iccid} -> {n.notification_address}")
    for n in client.retrieve_notifications_list():
        client.remove_notification_from_list(n.seq_number)
    print(f"      delivered and removed; {len(client.list_notification())} left")
    client.close()
    card.close()  # one owner per card directory: let go before opening it again

    step("power cycle: reopen the card from its directory")
    with Euicc.open(directory) as reopened:
        client = Es10Client.open(InProcessTransport(reopened))
        show_profiles(client)
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="keep the card in this (new) directory")
    parser.add_argument("--trace", action="store_true", help="print every APDU")
    args = parser.parse_args()
    if args.trace:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    if args.dir:
        demo(args.dir)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            demo(Path(tmp) / "card")
    print("\ndemo finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
