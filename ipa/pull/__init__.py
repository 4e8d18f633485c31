"""The IPAd's automated pull flow (SGP.32 v1.2 and v1.0.1): poll the eIM over ESipa,
run what it sends against the eUICC, report the results; a broken eIM cannot stall it.

- :mod:`ipa.pull.rules`: the states and every transition, as one pure function
  ``step(memory, event) -> (memory, actions)`` with its rules written at the top;
- :mod:`ipa.pull.driver`: :class:`PullFlow`, which performs the actions (ES10, ESipa, sleeps,
  the state file);
- :mod:`ipa.pull.startup`: S0, shared with the fleet (initial eIM, eIM choice, TLS trust,
  SGP.32 version);
- :mod:`ipa.pull.packages`: the card's work for each eIM package (S3, S5, S6);
- :mod:`ipa.pull.state`: what is kept across cycles and restarts (the state file);
- :mod:`ipa.pull.config`: :class:`PullConfig`, :class:`Backoff`, :class:`DownloadMode`.

Every public name is importable from ``ipa.pull``.
"""

from ipa.pull.config import Backoff, DownloadMode, PullConfig
from ipa.pull.driver import ProfileSwitchHook, PullFlow
from ipa.pull.rules import TRANSITIONS, PackageOutcome, PollOutcome, State, step
from ipa.pull.state import STATE_FILE, PendingResult, SetAsideNotification

__all__ = [
    "STATE_FILE",
    "TRANSITIONS",
    "Backoff",
    "DownloadMode",
    "PackageOutcome",
    "PendingResult",
    "PollOutcome",
    "ProfileSwitchHook",
    "PullConfig",
    "PullFlow",
    "SetAsideNotification",
    "State",
    "step",
]
