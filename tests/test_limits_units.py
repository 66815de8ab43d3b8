"""The limit machinery on its own, with a fake clock: budgets, deadlines, rate limits,
backoff, the quiet log window, option parsing."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from spice_twisted.channel_security import ChannelSecurity, channel_name
from spice_twisted.limits import InputBudget, InputWatch, Limits, parse_message_limit, parse_rate, parse_size
from spice_twisted.ratelimit import ConnectionCounter, LogWindow, RateLimiter, TicketBackoff, address_key
from spice_twisted.wire.enums import ChannelType, LinkError, MsgcInputs, MsgcMain
from spice_twisted.wire.ticket import Ticket, same_secret


class Holder:
    def __init__(self, budget: InputBudget) -> None:
        self.budget, self.evicted = budget, None

    def evict(self, reason: str) -> None:
        self.evicted = reason


def test_budget_evicts_the_biggest_holders_first():
    b = InputBudget(100)
    small, big, bigger = Holder(b), Holder(b), Holder(b)
    b.hold(small, 10)
    b.hold(big, 50)
    b.hold(bigger, 45)  # 105 > 100: the biggest goes
    assert big.evicted and not small.evicted and not bigger.evicted
    assert b.total == 55 and b.evictions == 1
    b.hold(bigger, 0)
    assert b.total == 10


def test_watch_deadline_restarts_per_message_and_per_connection_cap():
    clock, closed = Clock(), []
    w = InputWatch(clock, 5.0, 1000, InputBudget(10_000), closed.append)
    w.update(10, progressed=False)  # a message begins
    clock.advance(4)
    w.update(20, progressed=False)  # more of the same message: the deadline stays
    clock.advance(1.5)
    assert closed == ["a message left unfinished for 5s"]
    closed.clear()
    w2 = InputWatch(clock, 5.0, 1000, None, closed.append)
    w2.update(10, False)
    clock.advance(4)
    w2.update(3, True)  # one finished, the next begun: a new deadline
    clock.advance(4)
    assert not closed
    w2.update(0, True)
    clock.advance(100)
    assert not closed
    w2.update(1001, False)
    assert closed and "limit 1000 a connection" in closed[0]


def test_rate_limiter_bursts_then_refills_per_address():
    r = RateLimiter(rate=2.0, burst=3)
    assert [r.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert r.allow("b", 0.0)  # another address has its own bucket
    assert not r.allow("a", 0.2)
    assert r.allow("a", 0.6)  # 2 a second
    r.sweep(100.0)
    assert not r.buckets


def test_backoff_spaces_checks_after_three_and_refuses_past_max_wait():
    b = TicketBackoff(cap=15.0)
    waits = [b.reserve("a", 0.0) for _ in range(9)]
    assert waits == [0.0, 0.0, 0.0, 0.5, 1.5, 3.5, 7.5, None, None]
    assert b.reserve("other", 0.0) == 0.0
    for _ in range(7):
        b.failed("a", 8.0)
    assert b.reserve("a", 8.0) == 7.5  # the next slot
    b.succeeded("a")
    assert b.reserve("a", 9.0) == 0.0  # a right ticket clears the address
    assert TicketBackoff(cap=0).reserve("a", 0.0) == 0.0


def test_log_window_one_line_then_a_summary():
    w = LogWindow(60)
    assert w.first("a", "ticket", 0.0)
    assert not any(w.first("a", "ticket", t) for t in (1.0, 2.0, 3.0))
    assert w.first("a", "other", 4.0) and w.first("b", "ticket", 4.0)
    assert w.due(30.0) == []
    assert sorted(w.due(61.0)) == [("a", "ticket", 3)]
    assert w.first("a", "ticket", 62.0)


def test_connection_counter():
    c = ConnectionCounter(2)
    assert c.acquire("a") and c.acquire("a") and not c.acquire("a") and c.acquire("b")
    c.release("a")
    assert c.acquire("a")
    assert ConnectionCounter(0).acquire("x")


@pytest.mark.parametrize(
    "host,key",
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8::1", "2001:db8::/64"),
        ("2001:db8::ffff:1", "2001:db8::/64"),
        ("x", "x"),
    ],
)
def test_address_key(host, key):
    assert address_key(host) == key


def test_message_limits_per_channel_and_type():
    lim = Limits()
    body, per_type = lim.channel_limits(ChannelType.MAIN, 6)
    assert body == 32 * 1024 and per_type[MsgcMain.AGENT_DATA] == 4096
    body, per_type = lim.channel_limits(ChannelType.INPUTS, 6)
    assert body == 4096 and per_type[MsgcInputs.KEY_SCANCODE] == 256
    lim = Limits(message={"default": 1 << 20, "inputs:KEY_DOWN": 8}, max_connection_buffer=1000)
    body, per_type = lim.channel_limits(ChannelType.INPUTS, 18)
    assert body == 982 and per_type == {MsgcInputs.KEY_DOWN: 8}  # capped by the connection buffer


@pytest.mark.parametrize(
    "spec,out",
    [
        ("main=64K", ("main", 65536)),
        ("main:agent_data=8k", ("main:AGENT_DATA", 8192)),
        ("default:ACK=0x", None),
        ("display=2M", ("display", 2 << 20)),
    ],
)
def test_parse_message_limit(spec, out):
    if out is None:
        with pytest.raises(ValueError):
            parse_message_limit(spec)
    else:
        assert parse_message_limit(spec) == out


@pytest.mark.parametrize("spec", ["nochannel=1", "main", "main:NOPE=1", "inputs:AGENT_DATA=1", "main=0", "main=65M"])
def test_parse_message_limit_errors(spec):
    with pytest.raises(ValueError):
        parse_message_limit(spec)


def test_parse_size_and_rate():
    assert parse_size("4096") == 4096 and parse_size("64K") == 65536 and parse_size("1 MiB") == 1 << 20
    assert parse_rate("10/40") == (10.0, 40.0) and parse_rate("5") == (5.0, 20.0) and parse_rate("0") == (0.0, 1.0)
    for bad in ("x", "-1", "1/0"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_channel_security_names_and_default():
    sec = ChannelSecurity(frozenset({"default"}), frozenset({"inputs"}))
    assert sec.check(ChannelType.MAIN, secure=False) == LinkError.NEED_SECURED
    assert sec.check(ChannelType.MAIN, secure=True) is None
    assert sec.check(ChannelType.INPUTS, secure=True) == LinkError.NEED_UNSECURED
    assert sec.check(ChannelType.INPUTS, secure=False) is None
    assert sec.check(99, secure=False) == LinkError.NEED_SECURED  # unknown channels follow default
    assert ChannelSecurity().check(ChannelType.MAIN, secure=False) is None
    with pytest.raises(ValueError):
        ChannelSecurity(frozenset({"main"}), frozenset({"main"}))
    with pytest.raises(ValueError):
        channel_name("tunnel")
    assert channel_name("Display") == "display"


def test_tickets_constant_time_limits():
    assert same_secret(b"a", b"a") and not same_secret(b"a", b"ab")
    with pytest.raises(ValueError):
        Ticket(b"ab\0cd")
    with pytest.raises(ValueError):
        Ticket(b"x" * 61)
    t = Ticket(b"pw")
    assert not t.accepts(b"pw" + b"x" * 100)
