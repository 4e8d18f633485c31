"""euicc-sim: a software GSMA eUICC (SGP.22 / SGP.32)."""
