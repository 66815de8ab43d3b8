"""TLS context for the TLS port, from PEM files, through Twisted's pyOpenSSL support."""

from __future__ import annotations

from twisted.internet import ssl

_END = b"-----END CERTIFICATE-----"


def server_context(cert_path: str, key_path: str) -> ssl.CertificateOptions:
    """The certificate (any chain may follow it in the file) and its key; Twisted's safe defaults."""
    with open(cert_path, "rb") as f:
        cert_pem = f.read()
    with open(key_path, "rb") as f:
        key_pem = f.read()
    pems = [p + _END for p in cert_pem.split(_END) if b"-----BEGIN CERTIFICATE-----" in p]
    if not pems:
        raise ValueError(f"no certificate in {cert_path}")
    leaf = ssl.PrivateCertificate.loadPEM(pems[0] + b"\n" + key_pem)
    return ssl.CertificateOptions(
        privateKey=leaf.privateKey.original,
        certificate=leaf.original,
        extraCertChain=[ssl.Certificate.loadPEM(p).original for p in pems[1:]],
    )
