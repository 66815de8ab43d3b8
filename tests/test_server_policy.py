"""Server policy in-process: the ticket rules the admin API relies on."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from spice_twisted.server import SpiceServer
from spice_twisted.sources.image import ImageSource
from spice_twisted.wire.ticket import Ticket


def _server(random_image, required: bool) -> SpiceServer:
    srv = SpiceServer(ImageSource(str(random_image[0])), Ticket(b"pw"), Clock())
    srv.ticket_required = required
    return srv


def test_ticket_cannot_be_cleared_when_a_public_plain_port_needs_it(random_image):
    srv = _server(random_image, required=True)
    with pytest.raises(ValueError, match="cannot be cleared"):
        srv.set_ticket(None, None)
    assert srv.ticket.accepts(b"pw") and not srv.ticket.accepts(b"other")
    srv.set_ticket(b"new", 0)  # setting and expiring stay allowed
    assert srv.ticket.expired() and not srv.ticket.accepts(b"new")


def test_ticket_can_be_cleared_on_loopback(random_image):
    srv = _server(random_image, required=False)
    srv.set_ticket(None, None)
    assert not srv.ticket.enabled and srv.ticket.accepts(None)
