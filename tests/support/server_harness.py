"""The real server, built exactly as `twistd spice` builds it, plus a control line on stdin.

Tests use it to read the stats object, dump the server's framebuffer, pause the
source (so frames can be compared) and flip policies at run time, until the
admin API offers the same. Replies are JSON lines on stdout.
Usage: python server_harness.py [--paused] -- <twistd spice options>
"""

from __future__ import annotations

import json
import sys

from twisted.internet import reactor, stdio
from twisted.protocols.basic import LineReceiver
from twisted.python import log

from spice_twisted.options import Options
from spice_twisted.service import make_service
from spice_twisted.stats import server_stats


class Control(LineReceiver):
    delimiter = b"\n"

    def __init__(self, top) -> None:
        self.top = top
        self.server = top.spice_server

    def reply(self, **obj) -> None:
        self.transport.write(json.dumps(obj).encode() + b"\n")

    def lineReceived(self, line: bytes) -> None:
        cmd, *args = line.decode().split()
        srv = self.server
        if cmd == "stats":
            self.reply(reply="stats", stats=server_stats(srv))
        elif cmd == "dump":
            srv.render.primary.pixels.tofile(args[0])
            self.reply(reply="dump", width=srv.render.width, height=srv.render.height)
        elif cmd == "pause":
            srv.source.paused = True
            self.reply(reply="pause")
        elif cmd == "resume":
            srv.source.paused = False
            self.reply(reply="resume")
        elif cmd == "allow_multiple_clients":
            srv.set_allow_multiple_clients(args[0] == "1")
            self.reply(reply="allow_multiple_clients", value=srv.allow_multiple_clients)
        elif cmd == "view_only":
            srv.set_view_only(int(args[0]), args[1] == "1")
            self.reply(reply="view_only")
        elif cmd == "quit":
            self.reply(reply="quit")
            reactor.stop()
        else:
            self.reply(reply=cmd, error="unknown command")

    def connectionLost(self, reason=None) -> None:
        if reactor.running:
            reactor.stop()


def main() -> None:
    argv = sys.argv[1:]
    paused = "--paused" in argv
    argv = [a for a in argv if a != "--paused"]
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    options = Options()
    options.parseOptions(argv)
    log.startLogging(sys.stderr, setStdout=False)
    top = make_service(options, reactor)
    top.spice_server.source.paused = paused
    top.startService()
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    sys.stdout.write(json.dumps({"event": "ready"}) + "\n")
    sys.stdout.flush()
    stdio.StandardIO(Control(top))
    reactor.run()


if __name__ == "__main__":
    main()
