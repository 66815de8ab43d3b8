"""Ticket (password) auth: the per-link RSA key, and the 128-byte RSA-OAEP(SHA-1) ticket.

The client encrypts `password + NUL` with the 1024-bit public key from the link
reply; `cryptography` does the RSA work (audited, constant-time), not our code.

spice-html5 turns its RSA result into bytes through the big integer's hex digits, so a
result below 2**1016 (its first byte zero: 1 encryption in 128 to 256, by the modulus)
arrives one byte short: left-aligned in the 128-byte field, zero-filled at the
end. `decrypt_ticket` tries that ticket again shifted back into place.
"""

from __future__ import annotations

import hashlib
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
        """The password the client sent, or None if the ticket does not decrypt.

        A ticket that does not decrypt and ends in a zero byte may be spice-html5's result
        that lost its leading zero byte: it gets one more try, left-padded. The key serves
        this one link only, so the second try tells a prober nothing it can use again."""
        if len(encrypted) != TICKET_ENCRYPTED_BYTES:
            return None
        plain = self._decrypt(encrypted)
        if plain is None and encrypted[-1] == 0:
            plain = self._decrypt(b"\0" + encrypted[:-1])
        return None if plain is None else plain.split(b"\0", 1)[0]

    def _decrypt(self, encrypted: bytes) -> bytes | None:
        try:
            return self._key.decrypt(encrypted, _OAEP)
        except ValueError:
            return None


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
        if self.password is not None:
            check_password(self.password)

    @property
    def enabled(self) -> bool:
        return self.password is not None

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and (now if now is not None else time.time()) >= self.expires

    def accepts(self, offered: bytes | None, now: float | None = None) -> bool:
        if self.password is None:
            return True
        if offered is None or self.expired(now) or len(offered) > MAX_PASSWORD_LENGTH:
            return False
        return same_secret(offered, self.password)


def check_password(password: bytes) -> None:
    """A ticket clients can send: at most 60 bytes (upstream's limit), no NUL (the client
    sends a C string, so nothing after a NUL could ever match), no control characters."""
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"password longer than {MAX_PASSWORD_LENGTH} bytes")
    if b"\0" in password:
        raise ValueError("the password contains a NUL byte, which no client can send")
    if any(b < 0x20 or b == 0x7F for b in password):
        # A newline in a ticket would start a new line wherever it is written out
        # (a .vv file's password=), and no one types a control character as a password.
        raise ValueError("the password contains a control character (newline, tab, ...): use printable characters")


def same_secret(a: bytes, b: bytes) -> bool:
    """Equal, in time that depends on neither value nor length (compare_digest alone
    returns early on a length mismatch, so both sides are hashed to one size first)."""
    return hmac.compare_digest(hashlib.sha256(a).digest(), hashlib.sha256(b).digest())
