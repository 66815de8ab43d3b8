"""Ticket (password) auth: the per-link RSA key, and the 128-byte RSA-OAEP(SHA-1) ticket.

The client encrypts `password + NUL` with the 1024-bit public key from the link
reply; `cryptography` does the RSA work (audited, constant-time), not our code.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .enums import MAX_PASSWORD_LENGTH, TICKET_ENCRYPTED_BYTES, TICKET_PUBKEY_BYTES

_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


class LinkKey:
    """One RSA key pair for one link, as upstream does (a key never serves two links)."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        self.public_der = self._key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        assert len(self.public_der) == TICKET_PUBKEY_BYTES

    def decrypt_ticket(self, encrypted: bytes) -> bytes | None:
        """The password the client sent, or None if the ticket does not decrypt."""
        if len(encrypted) != TICKET_ENCRYPTED_BYTES:
            return None
        try:
            plain = self._key.decrypt(encrypted, _OAEP)
        except ValueError:
            return None
        return plain.split(b"\0", 1)[0]


def encrypt_ticket(public_der: bytes, password: bytes) -> bytes:
    """What a client sends: used by our test and benchmark clients."""
    key = serialization.load_der_public_key(public_der)
    assert isinstance(key, rsa.RSAPublicKey)
    return key.encrypt(password + b"\0", _OAEP)


@dataclass
class Ticket:
    """The server's ticket policy: a password (None = ticketing disabled) and an expiry."""

    password: bytes | None
    expires: float | None = None  # unix time; None = never

    def __post_init__(self) -> None:
        if self.password is not None and len(self.password) > MAX_PASSWORD_LENGTH:
            raise ValueError(f"password longer than {MAX_PASSWORD_LENGTH} bytes")

    @property
    def enabled(self) -> bool:
        return self.password is not None

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and (now if now is not None else time.time()) >= self.expires

    def accepts(self, offered: bytes | None, now: float | None = None) -> bool:
        if self.password is None:
            return True
        if offered is None or self.expired(now):
            return False
        return hmac.compare_digest(offered, self.password)
