"""``python -m ipa``: the ``ipa`` command (its composition lives in :mod:`euicc_cli`)."""

import sys

from euicc_cli.ipa_command import main

sys.exit(main())
