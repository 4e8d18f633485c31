"""Test PKI sets a reference server starts from: a directory written by
:meth:`euicc_protocol.testpki.TestPki.save` (one set per curve) or the GSMA SGP.26 sets."""

from __future__ import annotations

import os
from pathlib import Path

from euicc_protocol.crypto import Curve
from euicc_protocol.testpki import TestPki, load_sgp26

__all__ = ["SGP26", "PkiSetError", "load_pki_sets"]

#: The ``--pki`` value that selects the GSMA SGP.26 test set in ``euicc_protocol/data/sgp26``.
SGP26 = "sgp26"


class PkiSetError(ValueError):
    """The directory holds no usable test PKI."""


def load_pki_sets(directory: str | os.PathLike[str]) -> list[TestPki]:
    """Every curve's test PKI saved in ``directory`` (NIST first), or the SGP.26 sets for
    :data:`SGP26`.

    Raises:
        PkiSetError: the directory holds no complete set.
    """
    if str(directory) == SGP26:
        return [load_sgp26(Curve.NIST_P256), load_sgp26(Curve.BRAINPOOL_P256R1)]
    base = Path(directory)
    sets = []
    for curve in (Curve.NIST_P256, Curve.BRAINPOOL_P256R1):
        try:
            sets.append(TestPki.load(base, curve))
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            raise PkiSetError(f"{base}: unusable {curve.value} PKI: {exc}") from exc
    if not sets:
        raise PkiSetError(f"{base} holds no test PKI (see euicc_protocol.testpki.TestPki.save)")
    return sets
