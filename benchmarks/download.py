"""End-to-end profile download over loopback HTTPS, and the cost of its cryptography alone.

    python benchmarks/download.py [--json] [--downloads N]

download_median_ms  median time of one complete download of a TS.48 profile: the IPAd's
                    download flow (ES10 to the in-process card, ES9+ over HTTPS with TLS
                    verified) against the reference SM-DP+ in a background thread, from
                    GetEUICCInfo1 to the delivered and removed install notification
crypto_floor_ms     median time of the cryptographic operations of one download, done
                    back to back in this process: the ECDSA signatures and verifications of
                    both sides (serverSignature1, euiccSignature1, smdpSignature2,
                    euiccSignature2, smdpSign, euiccSignPIR, certificate chains), the two
                    ECKA key pairs and ECDH, the KDF, and SCP03t protect + unprotect of the
                    profile package
ratio               download_median_ms / crypto_floor_ms
download_cpu_ms     CPU time of this process (IPAd, card and SM-DP+ together) per timed
                    download: steadier than wall clock on a shared machine
Floors: download_median_ms <= 25 and ratio <= 10.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import report
from cryptography.hazmat.primitives.serialization import Encoding

from euicc_protocol import crypto, pki, scp03t
from euicc_protocol.crypto import Curve
from euicc_protocol.pki import CertRole
from euicc_protocol.testpki import issue_server_certificate, load_sgp26
from euicc_servers.smdpp import OrderStore, SmdpConfig, SmdpCore, create_app
from euicc_servers.smdpp import run_in_thread as run_smdpp
from euicc_sim.card import Euicc
from ipa.download import download_profile_sync
from ipa.es9p import Es9Config
from ipa.es10 import Es10Client
from ipa.transport import InProcessTransport

PACKAGE = Path(__file__).resolve().parent.parent / "profiles" / "ts48" / "TS48V1-A-UNIQUE.der"
MEDIAN_FLOOR_MS = 25.0
RATIO_FLOOR = 10.0


def crypto_once(upp: bytes) -> float:
    """Seconds for the cryptographic work of one download (both sides)."""
    nist = load_sgp26(Curve.NIST_P256)
    ci_keys = nist.ci_keys()
    data = b"\x30\x40" + bytes(64)
    start = time.perf_counter()
    # Card: the two server certificates and the signatures it verifies; its own signatures.
    pki.check_server_certificate(nist.dp_auth.cert, ci_keys, CertRole.DP_AUTH)
    pki.check_server_certificate(nist.dp_pb.cert, ci_keys, CertRole.DP_PB)
    signatures = {
        "serverSignature1": crypto.sign_raw(nist.dp_auth.key, data),
        "smdpSignature2": crypto.sign_raw(nist.dp_pb.key, data),
        "smdpSign": crypto.sign_raw(nist.dp_pb.key, data),
    }
    crypto.verify_raw(nist.dp_auth.public_key, signatures["serverSignature1"], data)
    crypto.verify_raw(nist.dp_pb.public_key, signatures["smdpSignature2"], data)
    crypto.verify_raw(nist.dp_pb.public_key, signatures["smdpSign"], data)
    for _ in range(3):  # euiccSignature1, euiccSignature2, euiccSignPIR
        sig = crypto.sign_raw(nist.euicc.key, data)
    # Server: the eUICC chain and the three eUICC signatures.
    pki.check_euicc_chain(nist.euicc.cert, nist.eum.cert, ci_keys)
    for _ in range(3):
        crypto.verify_raw(nist.euicc.public_key, sig, data)
    # Key agreement on both sides, key derivation, segment protection both ways.
    euicc_otsk = crypto.generate_private_key(Curve.NIST_P256)
    smdp_otsk = crypto.generate_private_key(Curve.NIST_P256)
    shs = crypto.ecdh_shared_secret(smdp_otsk, euicc_otsk.public_key())
    crypto.ecdh_shared_secret(euicc_otsk, smdp_otsk.public_key())
    eid = bytes.fromhex(nist.eid)
    keys = scp03t.derive_session_keys(shs, host_id=b"euicc-sim", eid=eid)
    scp03t.derive_session_keys(shs, host_id=b"euicc-sim", eid=eid)
    sender = scp03t.SecureChannel.from_session_keys(keys)
    receiver = scp03t.SecureChannel.from_session_keys(keys)
    for offset in range(0, len(upp), 1000):
        receiver.unprotect(sender.protect(0x86, upp[offset : offset + 1000]))
    return time.perf_counter() - start


def run(downloads: int) -> dict[str, float]:
    upp = PACKAGE.read_bytes()
    nist = load_sgp26(Curve.NIST_P256)
    tls = issue_server_certificate(
        nist.ci, CertRole.DP_TLS, "2.999.10", dns_names=("localhost",), ip_addresses=("127.0.0.1",)
    )
    core = SmdpCore(SmdpConfig.from_test_pki([nist], "127.0.0.1", tls=tls), OrderStore())
    config = Es9Config(ca_certificates=(nist.ci.cert.public_bytes(Encoding.PEM),), timeout=10)
    # Cards are made beforehand: issuing their certificates is factory work, not download.
    cards = [Euicc.create(None) for _ in range(downloads + 1)]
    times = []
    cpu = 0.0
    with run_smdpp(create_app(core), tls=tls) as server:
        for i, card in enumerate(cards):
            core.orders.add_order(f"BENCH-{i}", PACKAGE)
            with Es10Client.open(InProcessTransport(card)) as client:
                start, start_cpu = time.perf_counter(), time.process_time()
                result = download_profile_sync(
                    client, f"LPA:1${server.address}$BENCH-{i}", config=config
                )
                elapsed = time.perf_counter() - start
                elapsed_cpu = time.process_time() - start_cpu
            assert result.notification_removed
            if i:  # the first download warms up TLS, the schema and the caches
                times.append(elapsed)
                cpu += elapsed_cpu
    floor = statistics.median(crypto_once(upp) for _ in range(max(downloads, 5)))
    median = statistics.median(times)
    return {
        "download_median_ms": round(median * 1000, 1),
        "crypto_floor_ms": round(floor * 1000, 1),
        "ratio": round(median / floor, 2),
        "download_cpu_ms": round(cpu / len(times) * 1000, 1),
    }


def main() -> int:
    parser = report.parser(__doc__)
    parser.add_argument("--downloads", type=int, default=15, help="downloads to time")
    args = parser.parse_args()
    results = run(args.downloads)
    floors = [
        f"floor: download_median_ms <= {MEDIAN_FLOOR_MS:g}: "
        + report.mark(results["download_median_ms"] <= MEDIAN_FLOOR_MS, "ABOVE FLOOR"),
        f"floor: ratio <= {RATIO_FLOOR:g}: "
        + report.mark(results["ratio"] <= RATIO_FLOOR, "ABOVE FLOOR"),
    ]
    report.print_figures(results, args.json, floors)
    return 0


if __name__ == "__main__":
    sys.exit(main())
