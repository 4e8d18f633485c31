"""Quirk profiles: how module families differ from the letter of TS 27.007.

Each :class:`Quirks` is one module family's answer to the questions an IPAd stumbles over:
which commands exist, how replies are formatted, which URCs announce a card (re)start. The
facts and their sources are listed per profile in docs/modem.md; where a manual was not at
hand the behaviour is one that users of open-source LPAs report, and the docs say so.

``generic`` follows TS 27.007 to the letter: ``+CCHO`` answers a bare ``<sessionid>``
(§8.45), hex strings in replies are quoted, no vendor URCs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PROFILES", "Quirks", "quirks_named"]


@dataclass(frozen=True)
class Quirks:
    """One module family's AT behaviour.

    Attributes:
        name: the ``--quirks`` name.
        manufacturer, model, revision: what ``ATI`` (and ``+CGMI``/``+CGMM``/``+CGMR``) show.
        logical_channels: ``+CCHO``/``+CCHC``/``+CGLA`` exist (else they answer ``ERROR``).
        ccho_prefix: ``+CCHO`` answers ``+CCHO: <n>`` instead of the bare ``<n>``.
        session_base: session ids are the channel number plus this (0: the channel itself;
            a large value models modules whose ids are opaque handles).
        quote_hex: hex strings in ``+CSIM``/``+CGLA``/``+CRSM`` replies are quoted.
        cgla_get_response: the MT fetches ``61xx`` data itself on ``+CGLA`` (the TE sees the
            whole answer and ``9000``); otherwise ``61xx`` reaches the TE.
        csim_logical_channels: ``+CSIM`` forwards MANAGE CHANNEL and APDUs whose CLA names a
            logical channel (else it answers ``+CME ERROR: 3``).
        ccid_commands: the ICCID commands and the prefix of their reply (``""``: bare digits).
        ready_urcs: URCs emitted when the card has (re)started: after power-up, ``+CFUN=1``
            and a REFRESH that resets the card.
        refresh_urcs: URCs emitted after a REFRESH that did not reset the card.
        default_echo: echo is on after power-up (V.250 default) or off.
    """

    name: str
    manufacturer: str
    model: str
    revision: str = "1.0"
    logical_channels: bool = True
    ccho_prefix: bool = False
    session_base: int = 0
    quote_hex: bool = True
    cgla_get_response: bool = True
    csim_logical_channels: bool = True
    ccid_commands: dict[str, str] = field(default_factory=lambda: {"+CCID": "+CCID: "})
    ready_urcs: tuple[str, ...] = ("+CPIN: READY",)
    refresh_urcs: tuple[str, ...] = ()
    default_echo: bool = True


PROFILES: dict[str, Quirks] = {
    q.name: q
    for q in (
        Quirks("generic", "euicc-sim", "Emulated TS 27.007 modem"),
        # Quectel EC2x/EG9x (EC25 AT Commands Manual): +CCHO answers "+CCHO: <n>", ICCID
        # through +QCCID, SIM hot-plug status through +QSIMSTAT; +CSIM refuses APDUs on a
        # logical channel (reported by lpac users on an EG25).
        Quirks(
            "quectel",
            "Quectel",
            "EC25",
            revision="EC25EFAR06A07M4G",
            ccho_prefix=True,
            csim_logical_channels=False,
            ccid_commands={"+QCCID": "+QCCID: ", "+CCID": "+CCID: "},
            ready_urcs=("+CPIN: READY", "+QSIMSTAT: 1,1", "+QUSIM: 1"),
        ),
        # SIMCom (SIM7500/SIM7600 manual): ICCID through +CICCID ("+ICCID: "), "SMS DONE" and
        # "PB DONE" after the card is ready; this profile has no +CCHO/+CGLA, so an IPAd must
        # tunnel MANAGE CHANNEL and channel APDUs through +CSIM, which answers unquoted.
        Quirks(
            "simcom",
            "SIMCOM INCORPORATED",
            "SIMCOM_SIM7600E",
            revision="LE20B04SIM7600M22",
            logical_channels=False,
            quote_hex=False,
            cgla_get_response=False,
            ccid_commands={"+CICCID": "+ICCID: ", "+CCID": ""},
            ready_urcs=("+CPIN: READY", "SMS DONE", "PB DONE"),
        ),
        # u-blox SARA-R4 (AT Commands Manual UBX-17003787): +CCID answers "+CCID: <ICCID>",
        # +UUSIMSTAT URC: 6 = (U)SIM operational, 9 = REFRESH successfully concluded.
        Quirks(
            "ublox",
            "u-blox",
            "SARA-R410M-02B",
            revision="L0.0.00.00.05.06",
            ccho_prefix=True,
            ready_urcs=("+UUSIMSTAT: 6", "+UUSIMSTAT: 9"),
            refresh_urcs=("+UUSIMSTAT: 9",),
        ),
        # Telit ME910/ME310 (AT Commands Reference Guide 80617ST10991A): +CCHO answers
        # "+CCHO: <sessionId>", ICCID through #CCID, #QSS URC (3 = SIM inserted and READY).
        Quirks(
            "telit",
            "Telit",
            "ME910C1-E1",
            revision="M0B.660006",
            ccho_prefix=True,
            ccid_commands={"#CCID": "#CCID: ", "+CCID": "+CCID: "},
            ready_urcs=("#QSS: 1", "#QSS: 3"),
        ),
        # Huawei MS2372-class dongles (reported by lpac users): no usable +CCHO, +CSIM cannot
        # open a logical channel: everything runs on the basic channel. ^ICCID, ^SIMST URC.
        Quirks(
            "huawei",
            "huawei",
            "MS2372h-517",
            revision="21.328.62.00.1217",
            logical_channels=False,
            csim_logical_channels=False,
            cgla_get_response=False,
            ccid_commands={"^ICCID": "^ICCID: "},
            ready_urcs=("^SIMST: 1",),
        ),
        # Fibocom FM350-GL (reported to lpac): +CCHO answers the bare number, as 27.007 has
        # it; +CGLA passes 61xx through to the TE.
        Quirks(
            "fibocom",
            "Fibocom",
            "FM350-GL",
            revision="81600.0000.00.29.19.01",
            cgla_get_response=False,
            default_echo=False,
        ),
        # Sierra Wireless MC7455/EM7590 (reported to lpac): session ids are opaque handles,
        # not channel numbers, so a TE must not put them into the CLA byte.
        Quirks(
            "sierra",
            "Sierra Wireless, Incorporated",
            "MC7455",
            revision="SWI9X30C_02.33.03.00",
            ccho_prefix=True,
            session_base=0x385A7C0,
        ),
    )
}


def quirks_named(name: str) -> Quirks:
    """The profile called ``name``.

    Raises:
        ValueError: no such profile (the message lists those that exist).
    """
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown quirks profile {name!r}; available: {', '.join(PROFILES)}"
        ) from None
