"""Reference SM-DP+: ES9+ (JSON binding) over HTTPS with real bound profile packages.

- :mod:`.config` — address, DPauth/DPpb credentials per CI, limits;
- :mod:`.orders` — download orders, their life cycle and persistence;
- :mod:`.es9p` — the protocol core (the five ES9+ functions), no HTTP, with its parts:
  :mod:`.received` (FunctionFailed, request values as received), :mod:`.sessions`,
  :mod:`.binding` (confirmation codes, BPPs) and :mod:`.notifications`;
- :mod:`.app` — the Starlette ASGI app (ES9+ routes and the operator API);
- :mod:`.serve` — uvicorn in the foreground or a background thread, the CLI command.

Quick start in Python::

    from euicc_protocol.crypto import Curve
    from euicc_protocol.testpki import generate_test_pki
    from euicc_servers.smdpp import OrderStore, SmdpConfig, SmdpCore, create_app, run_in_thread

    pki = generate_test_pki(Curve.NIST_P256)
    core = SmdpCore(SmdpConfig.from_test_pki(pki, "127.0.0.1"), OrderStore())
    core.orders.add_order("ABC-123", "profiles/ts48/TS48V1-A-UNIQUE.der")
    with run_in_thread(create_app(core), tls=pki.dp_tls) as server:
        ...  # ES9+ at server.base_url, TLS verified against pki.ci.cert; the operator
             # API under /admin with core.auth.header (Bearer core.admin_token)
"""

from .app import create_app
from .config import DpCredentials, SmdpConfig
from .es9p import FunctionFailed, SmdpCore
from .orders import Order, OrderState, OrderStore
from .serve import RunningServer, add_smdpp_command, run_in_thread

__all__ = [
    "DpCredentials",
    "FunctionFailed",
    "Order",
    "OrderState",
    "OrderStore",
    "RunningServer",
    "SmdpConfig",
    "SmdpCore",
    "add_smdpp_command",
    "create_app",
    "run_in_thread",
]
