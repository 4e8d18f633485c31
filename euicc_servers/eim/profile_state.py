"""What the eIM knows of an eUICC's profiles, learnt only from verified results.

A pure function: the profile states before, the operations of a PSMO order and the
``euiccResult`` list of its verified EuiccPackageResult (SGP.32 §2.11.2, EuiccResultData)
give the states after. Only operations whose result is ``ok`` (0) change anything:

* ``enable`` ok: the profile is ``enabled`` and any other profile known as enabled becomes
  ``disabled`` (one enabled profile at a time, SGP.22 §3.2.1 / SGP.32 §3.2.1);
* ``disable`` ok: ``disabled``;
* ``delete`` ok: the profile is forgotten.

Results the operations did not produce (a list shorter than the operations: processing stopped
at an error) leave the rest unchanged. The states are keyed by ICCID (as the operator wrote it
in the order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["learn_from_psmo", "operation_failed"]

_RESULT_OF = {"enable": "enableResult", "disable": "disableResult", "delete": "deleteResult"}


def learn_from_psmo(
    profiles: Mapping[str, str], operations: Sequence[Any], results: Sequence[Any]
) -> dict[str, str]:
    """The profile states after a verified PSMO result (see the module rules)."""
    states = dict(profiles)
    for operation, result in zip(operations, results, strict=False):
        if not isinstance(operation, dict) or len(operation) != 1:
            continue
        ((name, argument),) = operation.items()
        wanted = _RESULT_OF.get(name)
        if wanted is None or not isinstance(result, dict) or result.get(wanted) != 0:
            continue
        iccid = argument.get("iccid") if isinstance(argument, dict) else None
        if not isinstance(iccid, str):
            continue
        if name == "enable":
            for other, state in states.items():
                if state == "enabled":
                    states[other] = "disabled"
            states[iccid] = "enabled"
        elif name == "disable":
            states[iccid] = "disabled"
        else:
            states.pop(iccid, None)
    return states


def operation_failed(result: Any) -> bool:
    """Whether a verified EuiccPackageResult (its JSON form) reports an operation whose
    result is not ``ok`` (0): the package ran, one of its operations did not succeed."""
    if not isinstance(result, dict):
        return False
    signed = result.get("euiccPackageResultSigned")
    if not isinstance(signed, dict):
        return False
    for item in signed.get("euiccPackageResultDataSigned", {}).get("euiccResult", []):
        if isinstance(item, dict) and any(v != 0 for v in item.values() if isinstance(v, int)):
            return True
    return False
