"""The IoT Profile Assistant (IPAd): ES10 client, card transports and flows."""
