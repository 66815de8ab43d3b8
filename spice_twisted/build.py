"""What `twistd spice`'s options become: the ticket and view-only ticket, the limits, the
TLS context, the source's secrets, the audio source; and the generated password, shown once.

`OptionBuild` is a mixin of `options.Options` (whose `postOptions` runs these in order);
`service.make_service` then builds the server and its listeners from the results.
"""

from __future__ import annotations

import getpass
import os
import secrets
import sys
import time
from typing import Any

from twisted.python import usage

from .limits import DEFAULT_MESSAGE_LIMITS, Limits, parse_rate
from .option_checks import PROG
from .sources.vm import VmSource
from .wire.enums import MAX_PASSWORD_LENGTH
from .wire.ticket import Ticket, check_password

# Letters and digits that cannot be mistaken for each other when read off a screen.
PASSWORD_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def generate_password(length: int) -> bytes:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length)).encode("ascii")


class OptionBuild:
    """The builders, as methods of the parsed options (`self[name]` is an option's value)."""

    def _audio(self) -> None:
        self["audio-source-object"] = None
        if self["audio-source"]:
            from .sources.audio_spec import audio_source

            try:
                self["audio-source-object"] = audio_source(self["audio-source"])
            except ValueError as exc:
                raise usage.UsageError(f"--audio-source: {exc}") from None
        if self["record-to"] and self["record-to"].partition(":")[0] in ("pulse", "pipewire"):
            from .sources.audio_monitor import check_player

            try:
                check_player(self["record-to"])
            except ValueError as exc:
                raise usage.UsageError(f"--record-to: {exc}") from None
        elif self["record-to"]:
            try:
                with open(self["record-to"], "ab"):
                    pass
            except OSError as exc:
                raise usage.UsageError(f"--record-to: {exc.strerror}: {self['record-to']}") from None

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
