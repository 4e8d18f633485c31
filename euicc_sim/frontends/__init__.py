"""Front ends: what puts an emulated card in front of a device (the emulated AT modem)."""
