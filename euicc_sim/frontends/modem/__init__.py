"""An emulated cellular modem (3GPP TS 27.007 AT commands) around an emulated card.

* :mod:`.at`: the V.250 command line and result codes (pure);
* :mod:`.mt`: the modem itself, AT bytes in and out (pure, any card object inside);
* :mod:`.files`: what the modem reads from the card itself (+CRSM, +CCID, +CIMI);
* :mod:`.terminal`: the terminal side of proactive commands (REFRESH);
* :mod:`.quirks`: profiles of module families;
* :mod:`.serve`: the pseudo-terminal / TCP edge and the ``euicc-sim modem`` command.
"""

from .mt import Modem
from .quirks import PROFILES, Quirks, quirks_named

__all__ = ["PROFILES", "Modem", "Quirks", "quirks_named"]
