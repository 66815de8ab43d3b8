"""TLS context for the TLS port, from PEM files, through Twisted's pyOpenSSL support."""

from __future__ import annotations

from twisted.internet import ssl
from twisted.internet.protocol import Factory
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol

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


class RecordPerWriteTLSFactory(TLSMemoryBIOFactory):
    """TLS on top of a plain listener where every write becomes its own TLS records.

    Twisted's default TLS transport joins the small writes of a reactor turn into one
    buffer, so TLS records span SPICE messages. spice-gtk reads a message, then polls
    the socket before reading the next: a message that sits whole in a record it has
    already decrypted waits until more bytes arrive, which may be never. Our channels
    write each message (or a large body's last piece) with one call, so here every
    message ends at a record boundary, as with upstream spice-server.
    """

    protocol = TLSMemoryBIOProtocol


def tls_listener_factory(ctx: ssl.CertificateOptions, wrapped: Factory) -> RecordPerWriteTLSFactory:
    return RecordPerWriteTLSFactory(ctx, False, wrapped)
