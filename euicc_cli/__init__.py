"""The command-line front ends: the one place that wires card, IPAd and servers together.

``euicc-sim`` (:mod:`euicc_cli.sim_command`) manages emulated cards and runs the reference
servers; ``ipa`` (:mod:`euicc_cli.ipa_command`) drives a card through the IPAd, whether the card
is emulated (``--card DIR``) or physical (``--reader NAME``). The libraries never import this
package: :mod:`ipa` runs against a physical card with the emulator not installed, and
:mod:`euicc_sim` knows nothing of the IPAd or the servers.
"""
