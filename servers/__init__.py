"""Reference servers: the SM-DP+ (:mod:`servers.smdpp`) and the eIM (:mod:`servers.eim`).

Servers import :mod:`rsp` only, never the card emulator or the IPAd."""
