"""Speed of the strict DER decoder (euicc_protocol.der) on real inputs.

    python benchmarks/der.py [--json] [--seconds S]

ts48_package_us     microseconds to decode every ProfileElement of a TS.48 profile package
                    (TS48V1-A-UNIQUE, about 12 KB) with the strict decoder
ts48_mb_per_s       the same as throughput, megabytes of DER per second
read_package_us     microseconds of euicc_protocol.saip.read_package on that package (the
                    decode plus the structural checks and the values an installer takes out)
certificate_us      microseconds to decode an X.509 certificate (the SGP.26 CERT.EUICC)
                    as PKIX ``Certificate``
euicc_info2_us      microseconds to decode an emulated card's SGP32-EUICCInfo2 (BF22, many
                    small fields) with the byte spans of every component recorded

Each figure is the median of five timed batches, CPU time of this process (not wall clock:
the machine may be shared).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import report
from cryptography.hazmat.primitives.serialization import Encoding

from euicc_protocol import saip, schema
from euicc_protocol.crypto import Curve
from euicc_protocol.testpki import load_sgp26
from euicc_sim.card import Euicc
from ipa.es10 import Es10Client
from ipa.transport import InProcessTransport

PACKAGE = Path(__file__).resolve().parent.parent / "profiles" / "ts48" / "TS48V1-A-UNIQUE.der"


def per_call_us(fn: Callable[[], object], seconds: float) -> float:
    """Median CPU microseconds per call of ``fn`` over five batches of about ``seconds / 5``."""
    for _ in range(3):
        fn()
    start = time.process_time()
    fn()
    once = max(time.process_time() - start, 1e-6)
    batch = max(1, int(seconds / 5 / once))
    samples = []
    for _ in range(5):
        start = time.process_time()
        for _ in range(batch):
            fn()
        samples.append((time.process_time() - start) / batch)
    return statistics.median(samples) * 1e6


def _pe_slices(upp: bytes) -> list[bytes]:
    return [pe.raw for pe in saip.read_package(upp).pes]


def _euicc_info2() -> bytes:
    """The SGP32-EUICCInfo2 (BF22) answer of an emulated card."""
    card = Euicc.create(None)
    with Es10Client.open(InProcessTransport(card)) as client:
        return client.exchange(schema.encode("GetEuiccInfo2Request", {}))


def run(seconds: float) -> dict[str, float]:
    upp = PACKAGE.read_bytes()
    pes = _pe_slices(upp)
    nist = load_sgp26(Curve.NIST_P256)
    cert = nist.euicc.cert.public_bytes(Encoding.DER)
    decode = schema.decode

    def package() -> None:
        for raw in pes:
            decode("ProfileElement", raw)

    package_us = per_call_us(package, seconds)
    results = {
        "ts48_package_us": round(package_us, 1),
        "ts48_mb_per_s": round(len(upp) / package_us, 2),
        "read_package_us": round(per_call_us(lambda: saip.read_package(upp), seconds), 1),
        "certificate_us": round(per_call_us(lambda: decode("Certificate", cert), seconds), 1),
    }
    info2 = _euicc_info2()
    results["euicc_info2_us"] = round(
        per_call_us(lambda: schema.decode_spans("SGP32-EUICCInfo2", info2), seconds), 1
    )
    return results


def main() -> int:
    parser = report.parser(__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per figure")
    args = parser.parse_args()
    report.print_figures(run(args.seconds), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
