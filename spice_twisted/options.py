"""Command-line options of `twistd spice`, validated up front so mistakes read as messages.

Long options must be written in full: Twisted (through getopt) would take any unique
prefix, so `--password` silently became `--password-file`. Names from QEMU's -spice
(`--addr`, `--x509-*`) and from x11spice (`--viewonly`, `--generate-password`) are
accepted beside ours, and a flag QEMU writes as NAME=on|off takes those forms too. Errors print one line that starts with `twistd spice:`.
"""

from __future__ import annotations

import difflib
import getpass
import ipaddress
import os
import secrets
import socket
import stat
import sys
import time
from typing import Any

from twisted.python import usage

from .channel_security import ChannelSecurity, channel_name
from .limits import DEFAULT_MESSAGE_LIMITS, Limits, parse_message_limit, parse_rate, parse_size
from .render.surface import DEFAULT_MAX_SURFACE, parse_max_surface
from .sources import make_source
from .sources.vm import VmSource
from .wire.enums import MAX_PASSWORD_LENGTH
from .wire.ticket import Ticket, check_password

PROG = "twistd spice"
DEFAULT_GENERATED_LENGTH = 16
# Letters and digits that cannot be mistaken for each other when read off a screen.
PASSWORD_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
# QEMU's -spice x509-dir file names.
X509_DIR_FILES = {"x509-cacert-file": "ca-cert.pem", "x509-cert-file": "server-cert.pem", "x509-key-file": "server-key.pem"}
# alias -> our option: the same option under QEMU's or x11spice's name.
ALIASES = {"addr": "listen", "x509-cert-file": "cert", "x509-key-file": "key", "x509-cacert-file": "tls-ca", "viewonly": "view-only"}
PASSWORD_REFUSED = (
    "--password is not accepted: every user of this machine can read a command line (ps) for as long "
    "as the server runs. Use --password-file FILE, --password-file - for standard input "
    "(printf '%s\\n' \"$PW\" | twistd -n spice --password-file -), or --generate-password"
)
REFUSED = {"password"}  # never suggested for a mistyped name
# Our flags that QEMU's -spice has as NAME=on|off: --NAME=on and --NAME=off are taken too.
QEMU_SWITCHES = {"disable-ticketing"}
SWITCH_VALUES = {"on": True, "off": False}


def _on_off(value: str) -> bool:
    if value not in SWITCH_VALUES:
        raise ValueError(f"expected on or off, not {value!r}")
    return SWITCH_VALUES[value]


def _port(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"not a port number: {value!r}") from None
    if not 0 <= n <= 65535:
        raise ValueError(f"port {n} out of range 0-65535")
    return n


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"not a number: {value!r}") from None


def _positive_float(value: str) -> float:
    n = _number(value)
    if n <= 0:
        raise ValueError("must be positive")
    return n


def _non_negative_float(value: str) -> float:
    n = _number(value)
    if n < 0:
        raise ValueError("must not be negative")
    return n


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"not a whole number: {value!r}") from None
    if n <= 0:
        raise ValueError("must be positive")
    return n


def _non_negative_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"not a whole number: {value!r}") from None
    if n < 0:
        raise ValueError("must not be negative")
    return n


# QEMU's -spice image-compression values: each is taken as spelled once its codec is here.
QEMU_IMAGE_COMPRESSION = ("auto_glz", "auto_lz", "quic", "glz", "lz", "lz4", "off")


def _image_compression(value: str) -> str:
    from .codecs.choice import SETTINGS

    if value not in SETTINGS:
        qemu = f" (QEMU's {value!r} is not available here yet)" if value in QEMU_IMAGE_COMPRESSION else ""
        raise ValueError(f"{value!r}: use one of {', '.join(SETTINGS)}{qemu}")
    return value


def _zlib_glz_wan_compression(value: str) -> str:
    from .codecs.choice import ZLIB_GLZ_WAN_SETTINGS

    if value not in ZLIB_GLZ_WAN_SETTINGS:
        raise ValueError(f"{value!r}: use one of {', '.join(ZLIB_GLZ_WAN_SETTINGS)}")
    return value


def _jpeg_quality(value: str) -> int:
    from .codecs.jpeg import check_quality

    try:
        return check_quality(int(value))
    except ValueError:
        raise ValueError(f"{value!r}: use a whole number 1-100") from None


def _jpeg_wan_compression(value: str) -> str:
    from .codecs.choice import JPEG_WAN_SETTINGS

    if value not in JPEG_WAN_SETTINGS:
        raise ValueError(f"{value!r}: use one of {', '.join(JPEG_WAN_SETTINGS)}")
    return value


def _streaming_video(value: str) -> str:
    from .render.streams import MODES

    if value not in MODES:
        raise ValueError(f"{value!r}: use one of {', '.join(MODES)}")
    return value


def _video_codecs(value: str) -> tuple[str, ...]:
    """QEMU's form, `encoder:codec;...` (`spice:mjpeg;gstreamer:vp8`), or bare codec names;
    the encoder part is not ours to choose (MJPEG: simplejpeg, VP8: libvpx through PyAV)."""
    from .codecs.video import VIDEO_CODECS

    codecs = tuple(part.split(":", 1)[-1].strip() for part in value.split(";") if part.strip())
    bad = [c for c in codecs if c not in VIDEO_CODECS]
    if not codecs or bad:
        raise ValueError(f"{value!r}: list codecs from {', '.join(VIDEO_CODECS)}, separated by ';'")
    return codecs


def _password_length(value: str) -> int:
    """--generate-password's optional LEN ('' when given bare)."""
    if value == "":
        return DEFAULT_GENERATED_LENGTH
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"not a length: {value!r} (write --generate-password=LEN)") from None
    if not 1 <= n <= MAX_PASSWORD_LENGTH:
        raise ValueError(f"length {n} out of range 1-{MAX_PASSWORD_LENGTH}")
    return n


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def generate_password(length: int) -> bytes:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length)).encode("ascii")


class _NamedCoerce(usage.CoerceParameter):
    """Twisted's parameter coercion, with the option's name in its error."""

    def dispatch(self, parameterName: str, value: str) -> None:
        try:
            self.options.opts[parameterName] = self.coerce(value)
        except ValueError as e:
            raise usage.UsageError(f"--{parameterName}: {e}") from None


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = "Serve one display to many SPICE clients (remote-viewer, spicy, spice-html5)."

    optParameters = [
        ["listen", None, "127.0.0.1", "Address to listen on."],
        ["addr", None, None, "Same as --listen (QEMU's name)."],
        ["port", "p", 5900, "Plain TCP port (0 = none).", _port],
        ["tls-port", "s", 0, "TLS port (0 = none); needs --cert and --key.", _port],
        ["cert", None, None, "TLS certificate (PEM), may include the chain."],
        ["key", None, None, "TLS private key (PEM)."],
        ["x509-dir", None, None, "Directory with ca-cert.pem, server-cert.pem and server-key.pem (as QEMU's)."],
        ["x509-cert-file", None, None, "Same as --cert (QEMU's name)."],
        ["x509-key-file", None, None, "Same as --key (QEMU's name)."],
        ["x509-cacert-file", None, None, "Same as --tls-ca (QEMU's name)."],
        ["password-file", None, None, "File holding the ticket (password); - reads it from standard input."],
        ["password", None, None, "Not accepted (anyone can read it with ps): use --password-file or --generate-password."],
        ["generate-password", None, None, "Make a random ticket and print it once; =LEN sets its length (default 16).", _password_length],
        ["ticket-expires", None, None, "The ticket expires this many seconds after start.", _positive_float],
        [
            "source",
            None,
            "demo",
            "What to show: demo, image:PATH, x11[:DISPLAY] (a running X display; x11 alone: $DISPLAY), "
            "or spice://HOST:PORT (a VM's SPICE server; ?tls-port=N for TLS).",
        ],
        [
            "max-surface",
            None,
            DEFAULT_MAX_SURFACE,
            "Largest screen served, WxH or pixels: a source over it is refused at start; a VM or X display "
            "that grows past it keeps its old size and clients are told why (default 8192x4320).",
            parse_max_surface,
        ],
        ["source-password-file", None, None, "With --source spice://: file holding the VM's SPICE ticket; - reads standard input."],
        ["source-ca-file", None, None, "With --source spice://...?tls-port=N: CA certificate (PEM) the VM's certificate is checked with."],
        ["tls-ca", None, None, "CA certificate (PEM) for clients, put into .vv connection files."],
        ["admin-port", None, 8080, "Admin site and REST API port on the --listen address (0 = off).", _port],
        ["admin-token-file", None, None, "File holding the admin token (default: generate one into a 0600 file)."],
        ["html5-dir", None, None, "spice-html5's files for the admin site's /watch page (default: /usr/share/spice-html5)."],
        ["metrics-token-file", None, None, "File holding a token that reads the admin site's /metrics and nothing else."],
        ["admin-access-log", None, None, "Write an access log of the admin site to this file (default: none)."],
        [
            "admin-request-timeout",
            None,
            10.0,
            "Close an admin connection whose request has not arrived whole this many seconds after it could start.",
            _positive_float,
        ],
        ["admin-max-connections", None, 64, "Admin site connections at once, from all addresses together.", _positive_int],
        [
            "admin-max-connections-per-address",
            None,
            16,
            "Admin site connections at once from one address (IPv6: one /64); 0 = no limit.",
            _non_negative_int,
        ],
        ["stall-timeout", None, 30.0, "Disconnect a client that stops reading for this many seconds.", _positive_float],
        ["stats-interval", None, 0.0, "Log a stats summary every this many seconds (0 = never).", _non_negative_float],
        ["ping-interval", None, 10.0, "Ping every channel this often (seconds) to measure round-trip time.", _positive_float],
        ["max-fps", None, 30.0, "Turn damage into drawables at most this many times a second.", _positive_float],
        [
            "image-compression",
            None,
            "auto_glz",
            "auto_glz (QUIC for photos, GLZ/LZ otherwise, LZ4 on a LAN where decoded), auto_lz, quic, glz, lz, lz4 or off"
            " (raw bitmaps); auto is auto_glz.",
            _image_compression,
        ],
        ["jpeg-quality", None, 85, "JPEG quality 1-100 for lossy images (upstream's 85).", _jpeg_quality],
        [
            "jpeg-wan-compression",
            None,
            "auto",
            "Lossy (JPEG) images: auto (for clients whose link is judged WAN), never, or always.",
            _jpeg_wan_compression,
        ],
        [
            "streaming-video",
            None,
            "filter",
            "Video streams: filter (areas redrawn 8+ times a second with photo-like content go as MJPEG streams),"
            " all (any such area, whatever its content) or off (images only).",
            _streaming_video,
        ],
        [
            "video-codecs",
            None,
            ("mjpeg",),
            "Stream codecs in order of preference, QEMU's form (spice:mjpeg;gstreamer:vp8) or bare names:"
            " each client gets the first it decodes (VP8 needs spice-gtk with GStreamer's vp8dec).",
            _video_codecs,
        ],
        [
            "zlib-glz-wan-compression",
            None,
            "auto",
            "GLZ images deflated again (ZLIB-GLZ): auto (for clients whose link is judged WAN), never, or always.",
            _zlib_glz_wan_compression,
        ],
        [
            "view-only-password-file",
            None,
            None,
            "File holding a second ticket: clients that give it may only watch, however they reconnect.",
        ],
        [
            "audit-log",
            None,
            None,
            "Append an audit log (JSON lines: connects, links, failed tickets, disconnects, admin actions) to this file.",
        ],
        ["tls-ciphers", None, None, "OpenSSL cipher list for TLS 1.2 (TLS 1.3 always uses OpenSSL's own suites)."],
        ["tls-client-ca", None, None, "Ask every SPICE client on the TLS port for a certificate signed by a CA in this PEM file."],
        [
            "max-connection-buffer",
            None,
            Limits.max_connection_buffer,
            "Bytes of unfinished input held for one connection (K, M allowed).",
            parse_size,
        ],
        [
            "max-buffered-total",
            None,
            Limits.max_buffered_total,
            "Bytes of unfinished messages held across all connections (K, M allowed).",
            parse_size,
        ],
        [
            "message-timeout",
            None,
            Limits.message_timeout,
            "Close a connection that leaves a message unfinished this long (seconds; 0 = never).",
            _non_negative_float,
        ],
        [
            "link-timeout",
            None,
            Limits.link_timeout,
            "Close a connection whose link is not complete after this many seconds.",
            _positive_float,
        ],
        ["max-clients", None, Limits.max_clients, "Refuse new clients while this many are connected.", _positive_int],
        [
            "max-clients-per-address",
            None,
            Limits.max_clients_per_address,
            "Clients at once from one address (IPv6: one /64); 0 = no limit. Behind a proxy, raise it.",
            _non_negative_int,
        ],
        [
            "ping-timeout",
            None,
            Limits.ping_timeout,
            "Drop a client whose main channel answers no PING for this many seconds (0 = never).",
            _non_negative_float,
        ],
        ["max-channels-per-client", None, Limits.max_channels_per_client, "Channel connections one client may have.", _positive_int],
        [
            "max-connections-per-address",
            None,
            Limits.max_connections_per_address,
            "Connections at once from one address (IPv6: one /64); 0 = no limit.",
            _non_negative_int,
        ],
        [
            "link-rate",
            None,
            f"{Limits.link_rate:g}/{Limits.link_burst:g}",
            "Link requests a second from one address, and the burst: RATE/BURST (0 = no limit).",
            parse_rate,
        ],
        [
            "ticket-backoff",
            None,
            Limits.ticket_backoff,
            "After 3 wrong tickets from an address, pause its checks, doubling up to this many seconds (0 = off).",
            _non_negative_float,
        ],
        ["log-window", None, Limits.log_window, "Log one line per address and kind of refusal per this many seconds.", _non_negative_float],
        ["audio-source", None, None, "Play this 16-bit PCM WAV file in a loop to every client (default: the source's own sounds)."],
        ["record-to", None, None, "Write what the primary client records (its microphone) to this WAV file."],
        ["playback-compression", None, True, "on: Opus for clients that offer it; off: raw PCM to everyone (QEMU's name).", _on_off],
    ]
    optFlags = [
        [
            "disable-ticketing",
            None,
            "Accept clients without a password (also on public addresses and for x11 and VM sources); =on/=off as QEMU writes it.",
        ],
        ["no-mini-header", None, "Do not offer mini headers (clients then use full 18-byte headers)."],
        ["no-multiple-clients", None, "One client at a time: a new client replaces the connected one."],
        ["view-only", None, "Every new client starts view-only (an admin can let it drive)."],
        ["viewonly", None, "Same as --view-only (x11spice's name)."],
        ["exit-on-x-loss", None, "With --source x11: exit when the X display goes away (default: retry and serve it again)."],
        ["admin-tls", None, "Serve the admin site over HTTPS on a loopback address too (needs --cert and --key)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        for name, handler in list(self._dispatch.items()):
            if isinstance(handler, usage.CoerceParameter):
                self._dispatch[name] = _NamedCoerce(self, handler.coerce)
        self.given: set[str] = set()  # the options on the command line, by long name
        self["tls-channels"] = []
        self["plaintext-channels"] = []
        self["max-messages"] = {}
        self["warnings"] = []  # logged once logging has started

    # --- repeatable options --------------------------------------------------------------
    def opt_tls_channel(self, name: str) -> None:
        """Channel NAME only over TLS (plain links get NEED_SECURED); 'default' for all. Repeatable."""
        self["tls-channels"].append(self._channel_option("tls-channel", name))

    def opt_plaintext_channel(self, name: str) -> None:
        """Channel NAME only without TLS (TLS links get NEED_UNSECURED); 'default' for all. Repeatable."""
        self["plaintext-channels"].append(self._channel_option("plaintext-channel", name))

    def opt_max_message(self, spec: str) -> None:
        """Largest client message: CHANNEL=SIZE or CHANNEL:MESSAGE=SIZE (CHANNEL may be 'default'). Repeatable."""
        try:
            key, n = parse_message_limit(spec)
        except ValueError as exc:
            raise usage.UsageError(f"--max-message: {exc}") from None
        self["max-messages"][key] = n

    @staticmethod
    def _channel_option(option: str, name: str) -> str:
        try:
            return channel_name(name)
        except ValueError as exc:
            raise usage.UsageError(f"--{option}: {exc}") from None

    # --- parsing ------------------------------------------------------------------------
    def parseOptions(self, options: list[str] | None = None) -> None:
        args = list(sys.argv[1:] if options is None else options)
        try:
            if not (len(args) > 1 and args[-2] == "--_shell-completion"):
                args = self._exact(args)
            super().parseOptions(args)
        except usage.UsageError as exc:
            if self.parent is None:  # used as a library (tests, the harness): the caller decides
                raise
            # Under twistd: one line that names us, not twistd's full path and its usage text.
            sys.stderr.write(f"{PROG}: {exc}\n{PROG}: '{PROG} --help' lists every option\n")
            raise SystemExit(1) from None

    def _exact(self, args: list[str]) -> list[str]:
        """Walk the arguments as getopt will; every long option must be an exact name.

        Also records which options were given, and turns a bare --generate-password
        into --generate-password= (an optional value, which getopt cannot express).
        """
        takes_value = {o.rstrip("="): o.endswith("=") for o in self.longOpt}
        out = list(args)
        i = 0
        while i < len(out):
            arg = out[i]
            if arg == "--" or not arg.startswith("-") or arg == "-":
                break
            if arg.startswith("--"):
                name, eq, value = arg[2:].partition("=")
                if name not in takes_value:
                    raise usage.UsageError(self._unknown(name))
                if eq and name in QEMU_SWITCHES:
                    if value not in SWITCH_VALUES:
                        raise usage.UsageError(f"--{name}={value}: use --{name}, or QEMU's --{name}=on or --{name}=off")
                    if not SWITCH_VALUES[value]:
                        del out[i]  # =off: as if not given
                        continue
                    out[i] = f"--{name}"
                self.given.add(name)
                if name == "generate-password" and not eq:
                    out[i] = "--generate-password="
                elif takes_value[name] and not eq:
                    i += 1  # its value is the next argument
            else:
                for j, letter in enumerate(arg[1:], 1):
                    k = self.shortOpt.find(letter)
                    if k < 0:
                        raise usage.UsageError(self._unknown(letter, short=True))
                    self.given.add(self.synonyms.get(letter, letter))
                    if self.shortOpt[k + 1 : k + 2] == ":":
                        if j == len(arg) - 1:
                            i += 1
                        break
            i += 1
        return out

    def _unknown(self, name: str, short: bool = False) -> str:
        shown = f"-{name}" if short else f"--{name}"
        parent = self.parent
        if parent is not None and ((name in parent.shortOpt) if short else any(o.rstrip("=") == name for o in parent.longOpt)):
            return f"{shown} is an option of twistd itself: put it before 'spice' (twistd {shown} ... spice ...)"
        if short:
            return f"unknown option {shown}"
        names = [o.rstrip("=") for o in self.longOpt if o.rstrip("=") not in REFUSED]
        meant = [n for n in names if n.startswith(name)]
        if not meant:  # a prefix says more than a look-alike
            meant = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join('--' + n for n in meant[:3])}?" if meant else ""
        return f"unknown option {shown}{hint} (long options must be written in full)"

    # --- checks -------------------------------------------------------------------------
    def postOptions(self) -> None:
        if self["password"] is not None:
            raise usage.UsageError(PASSWORD_REFUSED)
        self._merge_aliases()
        self._x509_dir()
        if not self["port"] and not self["tls-port"]:
            raise usage.UsageError("nothing to listen on: give --port or --tls-port")
        if self["tls-port"]:
            for name in ("cert", "key"):
                if not self[name]:
                    raise usage.UsageError(f"--tls-port needs --{name} (or --x509-{name}-file, or --x509-dir)")
        for name in ("cert", "key", "tls-ca"):
            if self[name] and not os.path.isfile(self[name]):
                raise usage.UsageError(f"--{self._named(name)}: no such file: {self[name]}")
        ticket_sources = [n for n in ("password-file", "generate-password", "disable-ticketing") if self[n]]
        if len(ticket_sources) > 1:
            raise usage.UsageError(f"--{ticket_sources[0]} and --{ticket_sources[1]} exclude each other")
        self["ticket"] = self._ticket()
        self["ticket-required"] = self._ticket_policy()
        self["view-ticket"] = self._view_ticket()
        if self["admin-port"]:
            if self["admin-port"] in (self["port"], self["tls-port"]):
                raise usage.UsageError("--admin-port must differ from --port and --tls-port")
            if not is_loopback(self["listen"]) and not (self["cert"] and self["key"]):
                raise usage.UsageError(
                    "the admin site on a non-loopback address needs --cert and --key (it is then served over HTTPS); or pass --admin-port 0"
                )
            if self["admin-tls"] and not (self["cert"] and self["key"]):
                raise usage.UsageError("--admin-tls needs --cert and --key (or --x509-dir)")
            if self["admin-token-file"]:
                from admin_ui.tokens import read_token_file

                self._private_file("admin-token-file", self["admin-token-file"], refuse=True)
                try:
                    self["admin-token"] = read_token_file(self["admin-token-file"])
                except (OSError, ValueError) as exc:
                    raise usage.UsageError(f"--admin-token-file: {exc}") from None
            if self["metrics-token-file"]:
                from admin_ui.tokens import read_token_file

                self._private_file("metrics-token-file", self["metrics-token-file"], refuse=True)
                try:
                    self["metrics-token"] = read_token_file(self["metrics-token-file"])
                except (OSError, ValueError) as exc:
                    raise usage.UsageError(f"--metrics-token-file: {exc}") from None
                if self["metrics-token"] == self.get("admin-token"):
                    raise usage.UsageError("--metrics-token-file holds the admin token: give Prometheus a token of its own")
        elif self["metrics-token-file"]:
            raise usage.UsageError("--metrics-token-file needs the admin site (--admin-port), which serves /metrics")
        elif self["admin-tls"]:
            raise usage.UsageError("--admin-tls needs the admin site (--admin-port)")
        self._channel_security()
        self["limits"] = self._limits()
        if self["audit-log"]:
            try:
                fd = os.open(self["audit-log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                os.close(fd)
            except OSError as exc:
                raise usage.UsageError(f"--audit-log: {exc.strerror}: {self['audit-log']}") from None
        if self["tls-client-ca"] and not os.path.isfile(self["tls-client-ca"]):
            raise usage.UsageError(f"--tls-client-ca: no such file: {self['tls-client-ca']}")
        if self["admin-access-log"]:
            try:
                with open(self["admin-access-log"], "a"):
                    pass
            except OSError as exc:
                raise usage.UsageError(f"--admin-access-log: {exc.strerror}: {self['admin-access-log']}") from None
        self["tls-context"] = self._tls_context()
        try:
            self["source-object"] = make_source(self["source"], self["max-surface"])
        except ValueError as exc:
            raise usage.UsageError(str(exc)) from None
        self._audio()
        if self["exit-on-x-loss"]:
            if not hasattr(self["source-object"], "exit_on_loss"):
                raise usage.UsageError("--exit-on-x-loss needs --source x11")
            self["source-object"].exit_on_loss = True
        self._source_secrets()
        self._check_ports_free()
        if self["generate-password"]:
            self._print_generated_password()

    def _audio(self) -> None:
        self["audio-source-object"] = None
        if self["audio-source"]:
            from .sources.audio import WavLoop

            try:
                self["audio-source-object"] = WavLoop(self["audio-source"])
            except ValueError as exc:
                raise usage.UsageError(f"--audio-source: {exc}") from None
        if self["record-to"]:
            try:
                with open(self["record-to"], "ab"):
                    pass
            except OSError as exc:
                raise usage.UsageError(f"--record-to: {exc.strerror}: {self['record-to']}") from None

    def _ticket_policy(self) -> bool:
        """Whether this server needs a ticket (and so the admin API may not clear it).

        Anyone who can reach a public address may connect, and TLS encrypts without saying
        who connects: a public listener needs a ticket, or client certificates
        (--tls-client-ca) when only the TLS port is open. A source that takes input into a
        real desktop (x11, a VM) needs a ticket even on loopback: every user of this machine
        could otherwise type into it. --disable-ticketing says no ticket, knowingly.
        """
        if self["disable-ticketing"]:
            return False
        source = self["source"]
        desktop = source == "x11" or source.startswith(("x11:", "spice://"))
        public = not is_loopback(self["listen"])
        unauthenticated = bool(self["port"]) or not self["tls-client-ca"]
        if self["ticket"].enabled:
            return desktop or (public and unauthenticated)
        choices = "a ticket (--password-file, --generate-password)"
        if desktop:
            raise usage.UsageError(
                f"--source {source} takes keyboard and mouse input into a real desktop, which without a "
                f"password every user of this machine could type into: give it {choices}, "
                "or pass --disable-ticketing to allow it anyway"
            )
        if public and self["port"]:
            tls_note = f" (the TLS port does not protect plain port {self['port']}: use --port 0 for TLS only)" if self["tls-port"] else ""
            raise usage.UsageError(
                f"refusing to listen on non-loopback address {self['listen']} with no ticket: plain port {self['port']} "
                f"would let anyone who reaches it connect; give {choices}{tls_note}, or pass --disable-ticketing to allow it anyway"
            )
        if public and unauthenticated:
            raise usage.UsageError(
                f"refusing to listen on non-loopback address {self['listen']} with no ticket: TLS encrypts but does not say "
                f"who connects; give {choices} or client certificates (--tls-client-ca), "
                "or pass --disable-ticketing to allow it anyway"
            )
        return False

    def _merge_aliases(self) -> None:
        """QEMU's and x11spice's names set our option; both given must agree."""
        for alias, ours in ALIASES.items():
            if alias not in self.given:
                continue
            if ours in self.given and self[ours] != self[alias]:
                raise usage.UsageError(f"--{alias} and --{ours} are the same option: give it once")
            self[ours] = self[alias]

    def _named(self, ours: str) -> str:
        """The name the user gave an option under (for messages)."""
        for alias, target in ALIASES.items():
            if target == ours and alias in self.given and ours not in self.given:
                return alias
        return ours

    def _x509_dir(self) -> None:
        """--x509-dir DIR: QEMU's file names in DIR, for the files not named on their own."""
        directory = self["x509-dir"]
        if not directory:
            return
        if not os.path.isdir(directory):
            raise usage.UsageError(f"--x509-dir: no such directory: {directory}")
        for qemu_name, filename in X509_DIR_FILES.items():
            ours = ALIASES[qemu_name]
            if self[ours]:
                continue  # a file given on its own wins, as in QEMU
            path = os.path.join(directory, filename)
            if os.path.isfile(path):
                self[ours] = path
            elif ours != "tls-ca":  # without ca-cert.pem clients need the CA from elsewhere
                raise usage.UsageError(f"--x509-dir: no {filename} in {directory} (it needs server-cert.pem and server-key.pem)")

    def _tls_context(self) -> Any:
        if not (self["cert"] and self["key"]):
            for name in ("tls-ciphers", "tls-client-ca"):
                if self[name]:
                    raise usage.UsageError(f"--{name} needs --tls-port with --cert and --key")
            return None
        from .tls import server_context

        if self["tls-ciphers"]:
            try:
                server_context(self["cert"], self["key"], ciphers=self["tls-ciphers"])
            except ValueError as exc:
                if "cipher" in str(exc):
                    raise usage.UsageError(f"--tls-ciphers {self['tls-ciphers']}: {exc}") from None
            except Exception:  # noqa: BLE001, S110  (a bad certificate: reported below)
                pass
        try:
            ctx = server_context(self["cert"], self["key"], ciphers=self["tls-ciphers"], client_ca=self["tls-client-ca"])
            # The admin site never asks for client certificates (browsers rarely have them).
            self["admin-tls-context"] = (
                server_context(self["cert"], self["key"], ciphers=self["tls-ciphers"]) if self["tls-client-ca"] else ctx
            )
            return ctx
        except Exception as exc:  # noqa: BLE001  (OpenSSL's errors have no common base worth naming)
            ca = f" and --tls-client-ca {self['tls-client-ca']}" if self["tls-client-ca"] else ""
            raise usage.UsageError(
                f"cannot use --{self._named('cert')} {self['cert']} with --{self._named('key')} {self['key']}{ca}: {exc}"
            ) from None

    def _channel_security(self) -> None:
        tls, plain = set(self["tls-channels"]), set(self["plaintext-channels"])
        if tls and not self["tls-port"]:
            raise usage.UsageError("--tls-channel needs a --tls-port to send those channels to")
        if plain and not self["port"]:
            raise usage.UsageError("--plaintext-channel needs a plain --port to send those channels to")
        try:
            self["channel-security"] = ChannelSecurity(frozenset(tls), frozenset(plain))
        except ValueError as exc:
            raise usage.UsageError(str(exc)) from None

    def _limits(self) -> Limits:
        rate = self["link-rate"]
        if isinstance(rate, str):  # the default, as written in the help
            rate = parse_rate(rate)
        messages = dict(DEFAULT_MESSAGE_LIMITS)
        messages.update(self["max-messages"])
        return Limits(
            message=messages,
            max_connection_buffer=self["max-connection-buffer"],
            max_buffered_total=self["max-buffered-total"],
            message_timeout=self["message-timeout"],
            link_timeout=self["link-timeout"],
            max_clients=self["max-clients"],
            max_clients_per_address=self["max-clients-per-address"],
            ping_timeout=self["ping-timeout"],
            max_channels_per_client=self["max-channels-per-client"],
            max_connections_per_address=self["max-connections-per-address"],
            link_rate=rate[0],
            link_burst=rate[1],
            ticket_backoff=self["ticket-backoff"],
            log_window=self["log-window"],
        )

    def _private_file(self, option: str, path: str, refuse: bool) -> None:
        """A secret readable by every user is refused (or, for `refuse=False`, noted)."""
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return  # reading it reports the error
        if not stat.S_ISREG(mode):
            return
        if mode & (stat.S_IROTH | stat.S_IWOTH):
            what = f"--{option}: {path} can be read by every user of this machine (mode {stat.S_IMODE(mode):04o}): chmod 600 {path}"
            if refuse:
                raise usage.UsageError(what)
            self["warnings"].append(what)
        elif mode & stat.S_IRGRP:
            self["warnings"].append(f"--{option}: {path} can be read by its group (mode {stat.S_IMODE(mode):04o})")

    def _view_ticket(self) -> Ticket | None:
        path = self["view-only-password-file"]
        if not path:
            return None
        if not self["ticket"].enabled:
            raise usage.UsageError("--view-only-password-file needs a full ticket beside it (--password-file or --generate-password)")
        self._private_file("view-only-password-file", path, refuse=False)
        try:
            with open(path, "rb") as f:
                password = f.read().rstrip(b"\r\n")
        except OSError as exc:
            raise usage.UsageError(f"--view-only-password-file: {exc.strerror}: {path}") from None
        if not password:
            raise usage.UsageError(f"--view-only-password-file: {path} is empty")
        try:
            check_password(password)
        except ValueError as exc:
            raise usage.UsageError(f"--view-only-password-file: {exc}") from None
        if password == self["ticket"].password:
            raise usage.UsageError("--view-only-password-file: it holds the full password: give view-only clients a password of their own")
        return Ticket(password, self["ticket"].expires)

    def _source_secrets(self) -> None:
        """--source-password-file and --source-ca-file: what a spice:// source connects with."""
        given = [n for n in ("source-password-file", "source-ca-file") if self[n]]
        source = self["source-object"]
        if not given:
            return
        if not isinstance(source, VmSource):
            raise usage.UsageError(f"--{given[0]} needs --source spice://HOST:PORT")
        if self["source-ca-file"]:
            if not os.path.isfile(self["source-ca-file"]):
                raise usage.UsageError(f"--source-ca-file: no such file: {self['source-ca-file']}")
            source.ca_file = os.path.abspath(self["source-ca-file"])
        path = self["source-password-file"]
        if not path:
            return
        if path == "-" and self["password-file"] == "-":
            raise usage.UsageError("--password-file - and --source-password-file - both read standard input: give one a file")
        password = self._read_password("source-password-file", path)
        try:
            check_password(password)
            password.decode("utf-8")
        except (ValueError, UnicodeDecodeError) as exc:
            raise usage.UsageError(f"--source-password-file: {exc}") from None
        source.password = password

    def _check_ports_free(self) -> None:
        """A port already in use reads as a message here, not as a traceback at start."""
        for name in ("port", "tls-port", "admin-port"):
            port = self[name]
            if not port:
                continue
            try:
                infos = socket.getaddrinfo(self["listen"], port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise usage.UsageError(f"--{self._named('listen')} {self['listen']}: {exc.strerror}") from None
            family, kind, proto, _, addr = infos[0]
            with socket.socket(family, kind, proto) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(addr)
                except OSError as exc:
                    raise usage.UsageError(f"--{name} {port}: cannot listen on {self['listen']}: {exc.strerror}") from None

    def _read_password(self, option: str, path: str) -> bytes:
        """A password from a private file, or the first line of standard input for `-`."""
        if path == "-":
            password, where = self._read_stdin_password(), "standard input"
        else:
            self._private_file(option, path, refuse=False)
            try:
                with open(path, "rb") as f:
                    password = f.read().rstrip(b"\r\n")
            except OSError as exc:
                raise usage.UsageError(f"--{option}: {exc.strerror}: {path}") from None
            where = path
        if not password:
            raise usage.UsageError(f"--{option}: {where} is empty")
        return password

    def _ticket(self) -> Ticket:
        expires = time.time() + self["ticket-expires"] if self["ticket-expires"] else None
        if self["generate-password"]:
            self["ticket-source"] = "generated"
            return Ticket(generate_password(self["generate-password"]), expires)
        path = self["password-file"]
        if not path:
            if self["ticket-expires"]:
                raise usage.UsageError("--ticket-expires needs --password-file or --generate-password")
            self["ticket-source"] = "none"
            return Ticket(None)
        self["ticket-source"] = "stdin" if path == "-" else "file"
        password = self._read_password("password-file", path)
        try:
            check_password(password)
        except ValueError as exc:
            raise usage.UsageError(f"--password-file: {exc}") from None
        return Ticket(password, expires)

    @staticmethod
    def _read_stdin_password() -> bytes:
        """One line of standard input (as x11spice); at a terminal, asked for without echo."""
        if sys.stdin is None:
            return b""
        if sys.stdin.isatty():
            try:
                return getpass.getpass("SPICE password: ").encode()
            except EOFError:
                return b""
        return sys.stdin.buffer.readline(MAX_PASSWORD_LENGTH + 3).rstrip(b"\r\n")

    def _print_generated_password(self) -> None:
        # Straight to the terminal, before twistd starts logging (and so before it takes over
        # standard output and error): the password never reaches a log file or observer.
        stream = sys.__stderr__ or sys.stderr
        stream.write(f"{PROG}: generated a password; it is shown here once and never logged\n")
        stream.write(f"PASSWORD={self['ticket'].password.decode('ascii')}\n")
        stream.flush()
