"""Ticket auth: the per-link RSA key, the encrypted ticket, and the server's password policy."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from spice_twisted.wire.ticket import LinkKey, Ticket, encrypt_ticket


@pytest.fixture(scope="module")
def key() -> LinkKey:
    return LinkKey()


def test_public_key_is_162_bytes_of_der(key: LinkKey) -> None:
    assert isinstance(key.public_der, bytes)
    assert len(key.public_der) == 162
    pub = serialization.load_der_public_key(key.public_der)
    assert isinstance(pub, rsa.RSAPublicKey)
    assert pub.key_size == 1024
    assert pub.public_numbers().e == 65537


def test_every_link_gets_its_own_key(key: LinkKey) -> None:
    assert LinkKey().public_der != key.public_der


@pytest.mark.parametrize("password", [b"", b"secret", b"x" * 60, bytes(range(1, 60))])
def test_encrypt_decrypt_round_trip(key: LinkKey, password: bytes) -> None:
    ticket = encrypt_ticket(key.public_der, password)
    assert len(ticket) == 128
    assert key.decrypt_ticket(ticket) == password


def test_ticket_encryption_is_randomised(key: LinkKey) -> None:
    assert encrypt_ticket(key.public_der, b"pw") != encrypt_ticket(key.public_der, b"pw")


def test_ticket_for_another_key_does_not_decrypt(key: LinkKey) -> None:
    other = LinkKey()
    assert key.decrypt_ticket(encrypt_ticket(other.public_der, b"secret")) is None


@pytest.mark.parametrize("length", [0, 1, 127, 129, 256])
def test_wrong_length_ticket_is_none(key: LinkKey, length: int) -> None:
    assert key.decrypt_ticket(os.urandom(length)) is None


def test_truncated_or_padded_real_ticket_is_none(key: LinkKey) -> None:
    ticket = encrypt_ticket(key.public_der, b"secret")
    assert key.decrypt_ticket(ticket[:-1]) is None
    assert key.decrypt_ticket(ticket + b"\0") is None


@pytest.mark.parametrize("garbage", [bytes(128), b"\xff" * 128, bytes(range(128)), os.urandom(128)])
def test_garbage_ticket_is_none(key: LinkKey, garbage: bytes) -> None:
    assert key.decrypt_ticket(garbage) is None


def test_flipped_bit_is_none(key: LinkKey) -> None:
    ticket = bytearray(encrypt_ticket(key.public_der, b"secret"))
    ticket[64] ^= 1
    assert key.decrypt_ticket(bytes(ticket)) is None


def test_disabled_ticket_accepts_anything() -> None:
    t = Ticket(None, expires=0.0)
    assert not t.enabled
    assert t.accepts(None)
    assert t.accepts(b"")
    assert t.accepts(b"whatever", now=1e12)


def test_password_right_and_wrong() -> None:
    t = Ticket(b"secret")
    assert t.enabled
    assert t.accepts(b"secret")
    assert not t.accepts(b"Secret")
    assert not t.accepts(b"secret\0")
    assert not t.accepts(b"secre")
    assert not t.accepts(b"")
    assert not t.accepts(None)


def test_empty_password_is_enabled_and_only_matches_empty() -> None:
    t = Ticket(b"")
    assert t.enabled
    assert t.accepts(b"")
    assert not t.accepts(b"a")


def test_expiry() -> None:
    t = Ticket(b"pw", expires=1000.0)
    assert not t.expired(now=999.0)
    assert t.accepts(b"pw", now=999.0)
    assert t.expired(now=1000.0)
    assert not t.accepts(b"pw", now=1000.0)
    assert not t.accepts(b"pw", now=5000.0)
    assert not t.accepts(b"wrong", now=999.0)


def test_no_expiry_never_expires() -> None:
    t = Ticket(b"pw")
    assert not t.expired(now=1e15)
    assert t.accepts(b"pw", now=1e15)


def test_expiry_uses_the_clock_by_default() -> None:
    assert not Ticket(b"pw", expires=4e9).expired()  # year 2096
    assert Ticket(b"pw", expires=1.0).expired()


def test_over_long_password_rejected() -> None:
    Ticket(b"p" * 60)  # the limit itself is fine
    with pytest.raises(ValueError):
        Ticket(b"p" * 61)


def test_full_flow(key: LinkKey) -> None:
    policy = Ticket(b"hunter2")
    assert policy.accepts(key.decrypt_ticket(encrypt_ticket(key.public_der, b"hunter2")))
    assert not policy.accepts(key.decrypt_ticket(encrypt_ticket(key.public_der, b"hunter3")))
    assert not policy.accepts(key.decrypt_ticket(os.urandom(128)))


def html5_short_ticket(public_der: bytes, password: bytes) -> tuple[bytes, bytes]:
    """A ticket as spice-html5 sends it when its RSA result starts with a zero byte: the
    other 127 bytes, left-aligned, a zero at the end. Returns (full, short)."""
    for _ in range(10_000):  # 1 in 128..256 encryptions qualifies
        full = encrypt_ticket(public_der, password)
        if full[0] == 0:
            return full, full[1:] + b"\0"
    raise AssertionError("no RSA result below 2**1016 in 10000 tries")


@pytest.mark.parametrize("password", [b"", b"html5-pass"])
def test_ticket_one_byte_short_from_spice_html5_is_accepted(key: LinkKey, password: bytes) -> None:
    full, short = html5_short_ticket(key.public_der, password)
    assert len(short) == 128 and short != full
    assert key.decrypt_ticket(full) == password
    assert key.decrypt_ticket(short) == password


def test_short_ticket_needs_the_zero_fill_and_the_right_key(key: LinkKey) -> None:
    _, short = html5_short_ticket(key.public_der, b"pw")
    assert key.decrypt_ticket(short[:-1] + b"\x01") is None  # not zero-filled: not a lost leading zero
    assert LinkKey().decrypt_ticket(short) is None
    # A normal ticket that ends in a zero byte and is wrong stays wrong after the second try.
    other = encrypt_ticket(LinkKey().public_der, b"pw")
    assert key.decrypt_ticket(other[:-1] + b"\0") is None
