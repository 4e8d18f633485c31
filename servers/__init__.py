"""Reference SM-DP+ and eIM servers (to come)."""
