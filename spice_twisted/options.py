"""Command-line options of `twistd spice`, validated up front so mistakes read as messages.

Long options must be written in full: Twisted (through getopt) would take any unique
prefix, so `--password` silently became `--password-file`. Names from QEMU's -spice
(`--addr`, `--x509-*`) and from x11spice (`--viewonly`, `--generate-password`) are
accepted beside ours, and a flag QEMU writes as NAME=on|off takes those forms too. Errors print one line that starts with `twistd spice:`.

This module parses; `postOptions` then runs, in order, the checks of option_checks.py and
the builders of build.py (the ticket, limits, TLS context, source), mixed into `Options`.
"""

from __future__ import annotations

import difflib
import os
import sys

from twisted.python import usage

from .agent_options import AGENT_FLAGS, AGENT_PARAMETERS, AGENT_SWITCHES, agent_policy
from .build import OptionBuild
from .channel_security import channel_name
from .limits import Limits, parse_message_limit, parse_rate, parse_size
from .option_checks import PROG, OptionChecks, is_loopback
from .render.surface import DEFAULT_MAX_SURFACE, parse_max_surface
from .sources import make_source
from .wire.enums import MAX_PASSWORD_LENGTH

DEFAULT_GENERATED_LENGTH = 16
PASSWORD_REFUSED = (
    "--password is not accepted: every user of this machine can read a command line (ps) for as long "
    "as the server runs. Use --password-file FILE, --password-file - for standard input "
    "(printf '%s\\n' \"$PW\" | twistd -n spice --password-file -), or --generate-password"
)
REFUSED = {"password"}  # never suggested for a mistyped name
# Our flags that QEMU's -spice has as NAME=on|off: --NAME=on and --NAME=off are taken too.
QEMU_SWITCHES = {"disable-ticketing", *AGENT_SWITCHES}
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
    the encoder part is not ours to choose (MJPEG: simplejpeg; VP8, VP9: libvpx, H.264:
    libx264, all through PyAV)."""
    from .codecs.video import STATEFUL_ENCODERS, VIDEO_CODECS

    codecs = tuple(part.split(":", 1)[-1].strip() for part in value.split(";") if part.strip())
    bad = [c for c in codecs if c not in VIDEO_CODECS]
    if not codecs or bad:
        raise ValueError(f"{value!r}: list codecs from {', '.join(VIDEO_CODECS)}, separated by ';'")
    stateful = [c for c in codecs if c in STATEFUL_ENCODERS]
    if stateful:  # at startup, not at the first stream: PyAV builds differ in their encoders
        import av

        missing = [c for c in stateful if STATEFUL_ENCODERS[c].av_codec not in av.codecs_available]
        if missing:
            raise ValueError(f"{', '.join(missing)}: this PyAV has no {', '.join(STATEFUL_ENCODERS[c].av_codec for c in missing)} encoder")
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


class _NamedCoerce(usage.CoerceParameter):
    """Twisted's parameter coercion, with the option's name in its error."""

    def dispatch(self, parameterName: str, value: str) -> None:
        try:
            self.options.opts[parameterName] = self.coerce(value)
        except ValueError as e:
            raise usage.UsageError(f"--{parameterName}: {e}") from None


class Options(usage.Options, OptionChecks, OptionBuild):
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
            "Stream codecs (mjpeg, vp8, vp9, h264) in order of preference, QEMU's form"
            " (gstreamer:h264;gstreamer:vp8;spice:mjpeg) or bare names: each client gets the first it decodes,"
            " ranked by its own preference when it sends one (spice-gtk decodes VP8, VP9 and H.264 through GStreamer).",
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
        [
            "audio-source",
            None,
            None,
            "FILE.wav (a 16-bit PCM WAV file, looped), pulse[:MONITOR] / pipewire[:TARGET] (the desktop's sound, through "
            "parec / pw-record), or none (default: the source's own sounds; for x11, the desktop's when a sound server is there).",
        ],
        [
            "record-to",
            None,
            None,
            "What the primary client records (its microphone): FILE.wav, or pulse[:SINK] / pipewire[:TARGET] (played there).",
        ],
        ["playback-compression", None, True, "on: Opus for clients that offer it; off: raw PCM to everyone (QEMU's name).", _on_off],
        *AGENT_PARAMETERS,
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
        *AGENT_FLAGS,
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

    # --- checks (option_checks.py) and what the options become (build.py), in order -----
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
        self["agent-policy"] = agent_policy(self)
        if self["exit-on-x-loss"]:
            if not hasattr(self["source-object"], "exit_on_loss"):
                raise usage.UsageError("--exit-on-x-loss needs --source x11")
            self["source-object"].exit_on_loss = True
        self._source_secrets()
        self._check_ports_free()
        if self["generate-password"]:
            self._print_generated_password()
