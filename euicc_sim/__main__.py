"""``python -m euicc_sim``: the ``euicc-sim`` command (composed in :mod:`euicc_cli`)."""

import sys

from euicc_cli.sim_command import main

sys.exit(main())
