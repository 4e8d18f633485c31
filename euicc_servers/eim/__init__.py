"""Reference eIM (SGP.32 v1.2): ESipa (ASN.1 and JSON bindings) over HTTPS, signed eUICC
packages, indirect profile download relayed to an SM-DP+, and an operator API.

- :mod:`.packages` — eUICC packages, eIM configuration data, requests to the IPAd; EPR checks;
- :mod:`.store` — registered eUICCs, orders, results, acknowledgements, sessions (SQLite);
- :mod:`.relay` — ESipa ⇄ ES9+ translation and the ES9+ HTTPS client;
- :mod:`.settings` — the eIM's identity, key and trust anchors;
- :mod:`.esipa` — the protocol core (ESipa messages in and out, no HTTP) and package delivery,
  with its parts :mod:`.results` (ProvideEimPackageResult, HandleNotification),
  :mod:`.notifications` (storing and forwarding them) and :mod:`.operator` (registrations,
  orders);
- :mod:`.app` — the Starlette ASGI app (both bindings and the operator API);
- :mod:`.serve` — building it from a test PKI, uvicorn in a thread or the foreground, the CLI.

Quick start in Python::

    from euicc_protocol.crypto import Curve
    from euicc_protocol.testpki import generate_test_pki
    from euicc_servers.eim import build_eim, run_in_thread

    pki = generate_test_pki(Curve.NIST_P256)
    eim = build_eim(pki)                     # state in memory; state_dir=... to keep it
    with run_in_thread(eim.core, tls=eim.tls) as server:
        ...  # ESipa at server.base_url + "/gsma/rsp2/asn1"; operator API under /api,
             # with the header eim.core.auth.header (Authorization: Bearer <eim.admin_token>)
"""

from .app import create_app
from .esipa import EimCore, EimSettings, MessageError, RegistrationError
from .packages import EimConfigurationData, PackageError
from .relay import Answer, Es9Client, SmdpRelay
from .serve import EimServer, add_eim_command, build_eim, run_in_thread
from .store import EimStore, OrderState

__all__ = [
    "Answer",
    "EimConfigurationData",
    "EimCore",
    "EimServer",
    "EimSettings",
    "EimStore",
    "Es9Client",
    "MessageError",
    "OrderState",
    "PackageError",
    "RegistrationError",
    "SmdpRelay",
    "add_eim_command",
    "build_eim",
    "create_app",
    "run_in_thread",
]
