"""Checks of `twistd spice`'s options that look at more than one value or at the machine:
option combinations, the ticket policy, files that hold secrets, ports already taken.

`OptionChecks` is a mixin of `options.Options` (whose `postOptions` runs these in order);
each raises `usage.UsageError` with a message that names the option as the user wrote it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat

from twisted.python import usage

from .channel_security import ChannelSecurity

PROG = "twistd spice"  # every error and notice starts with this
# QEMU's -spice x509-dir file names.
X509_DIR_FILES = {"x509-cacert-file": "ca-cert.pem", "x509-cert-file": "server-cert.pem", "x509-key-file": "server-key.pem"}
# alias -> our option: the same option under QEMU's or x11spice's name.
ALIASES = {"addr": "listen", "x509-cert-file": "cert", "x509-key-file": "key", "x509-cacert-file": "tls-ca", "viewonly": "view-only"}


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class OptionChecks:
    """The checks, as methods of the parsed options (`self[name]` is an option's value)."""

    given: set[str]  # the options on the command line, by long name (options.Options fills it)

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
