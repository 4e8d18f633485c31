"""Reference servers: the SM-DP+ (:mod:`euicc_servers.smdpp`) and the eIM
(:mod:`euicc_servers.eim`).

Servers import :mod:`euicc_protocol` only, never the card emulator or the IPAd."""
