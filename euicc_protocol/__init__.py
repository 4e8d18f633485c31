"""What every side of the RSP system speaks: ASN.1 schema and codec, crypto, PKI, SAIP."""
