"""TLS context for the TLS port, from PEM files, through Twisted's pyOpenSSL support.

TLS 1.2 is the oldest version offered. `--tls-ciphers` is an OpenSSL cipher string for
TLS 1.2 (TLS 1.3's suites are OpenSSL's own, all of them sound). `--tls-client-ca FILE`
asks every SPICE client for a certificate signed by a CA in FILE and refuses the rest.
"""

from __future__ import annotations

from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.protocol import Factory
from twisted.protocols.tls import TLSMemoryBIOFactory

from .tls_write import DirectTLSProtocol

_END = b"-----END CERTIFICATE-----"


def _pem_certificates(path: str) -> list[bytes]:
    with open(path, "rb") as f:
        data = f.read()
    return [p + _END for p in data.split(_END) if b"-----BEGIN CERTIFICATE-----" in p]


HTTP_1_1 = b"http/1.1"
MODE_ENABLE_PARTIAL_WRITE = 0x1  # OpenSSL's SSL_MODE_ENABLE_PARTIAL_WRITE (a stable ABI value)


def _alpn_select(connection: SSL.Connection, offered: list[bytes]) -> bytes | object:
    """HTTP/1.1 when offered (a WebSocket upgrade, the admin site), else no ALPN at all."""
    return HTTP_1_1 if HTTP_1_1 in offered else SSL.NO_OVERLAPPING_PROTOCOLS


class ServerOptions(ssl.CertificateOptions):
    """Twisted's options with an ALPN answer every client can take.

    Twisted's own select callback answers a client whose protocols it has none of with an
    empty name, which this pyOpenSSL and OpenSSL turn into a fatal internal_error alert:
    every browser offers ALPN ("h2", "http/1.1"), so every browser failed the handshake
    (wss:// to the SPICE port, https:// to the admin site). spice-gtk offers none.
    """

    def getContext(self) -> SSL.Context:
        ctx = super().getContext()
        if not getattr(self, "_alpn_set", False):
            ctx.set_alpn_select_callback(_alpn_select)  # type: ignore[arg-type]
            # pyOpenSSL asks for partial writes: SSL_write then returns after each 16 KiB
            # record. Into a memory BIO a write never blocks, so without them one call
            # encrypts a whole message (tls_write.py): fewer calls, the same records.
            ctx.clear_mode(MODE_ENABLE_PARTIAL_WRITE)
            self._alpn_set = True
        return ctx


def server_context(cert_path: str, key_path: str, ciphers: str | None = None, client_ca: str | None = None) -> ssl.CertificateOptions:
    """The certificate (any chain may follow it in the file) and its key; Twisted's safe
    defaults, TLS 1.2 or newer, optionally only `ciphers` and only clients `client_ca` signed."""
    pems = _pem_certificates(cert_path)
    with open(key_path, "rb") as f:
        key_pem = f.read()
    if not pems:
        raise ValueError(f"no certificate in {cert_path}")
    leaf = ssl.PrivateCertificate.loadPEM(pems[0] + b"\n" + key_pem)
    extra: dict[str, object] = {}
    if ciphers:
        extra["acceptableCiphers"] = ssl.AcceptableCiphers.fromOpenSSLCipherString(ciphers)
    if client_ca:
        cas = _pem_certificates(client_ca)
        if not cas:
            raise ValueError(f"no certificate in {client_ca}")
        extra.update(verify=True, requireCertificate=True, caCerts=[ssl.Certificate.loadPEM(p).original for p in cas])
    return ServerOptions(
        privateKey=leaf.privateKey.original,
        certificate=leaf.original,
        extraCertChain=[ssl.Certificate.loadPEM(p).original for p in pems[1:]],
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        **extra,  # type: ignore[arg-type]
    )


class RecordPerWriteTLSFactory(TLSMemoryBIOFactory):
    """TLS on top of a plain listener where every write becomes its own TLS records.

    Twisted's default TLS transport joins the small writes of a reactor turn into one
    buffer, so TLS records span SPICE messages. spice-gtk reads a message, then polls
    the socket before reading the next: a message that sits whole in a record it has
    already decrypted waits until more bytes arrive, which may be never. Our channels
    write each message (or a large body's last piece) with one call, so here every
    message ends at a record boundary, as with upstream spice-server. The ciphertext
    goes to the socket without Twisted's buffer while it takes it (tls_write.py).
    """

    protocol = DirectTLSProtocol

    def buildProtocol(self, addr):  # type: ignore[no-untyped-def]
        # The wrapped factory may refuse a connection (per-address limit): no TLS for it either.
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            return None
        return self.protocol(self, wrapped)


def tls_listener_factory(ctx: ssl.CertificateOptions, wrapped: Factory) -> RecordPerWriteTLSFactory:
    return RecordPerWriteTLSFactory(ctx, False, wrapped)
