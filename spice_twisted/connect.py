"""How to connect: the spice:// URLs, viewer command lines and admin URLs of a running server.

Built once from the options at start. The server logs it as one block and the demo
desktop shows its viewer commands (made by the same `viewer_command`), so what users
read is what the server really listens on, with the CA a TLS viewer needs.
A listener on a wildcard address (0.0.0.0, ::) is named by this machine's own
addresses, since a client cannot connect to "0.0.0.0".
"""

from __future__ import annotations

import fcntl
import ipaddress
import shlex
import socket
import struct
from dataclasses import dataclass, field

WILDCARDS = ("", "0.0.0.0", "::")
SIOCGIFADDR = 0x8915  # Linux: an interface's IPv4 address
MAX_HOSTS = 4


def _ipv4_interfaces() -> list[str]:
    found = []
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name in names:
            try:
                raw = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue  # no IPv4 address on this interface
            found.append(socket.inet_ntoa(raw[20:24]))
    return found


def _ipv6_interfaces() -> list[str]:
    found = []
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as f:
            for line in f:
                hexaddr = line.split()[0]
                found.append(str(ipaddress.IPv6Address(bytes.fromhex(hexaddr))))
    except (OSError, ValueError, IndexError):
        return []
    return found


def _usable(address: str) -> bool:
    """Not loopback, not link-local (a link-local URL would need a zone id)."""
    ip = ipaddress.ip_address(address)
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast)


def machine_addresses(ipv6: bool) -> list[str]:
    """This machine's addresses other machines may reach, IPv4 first."""
    addresses = _ipv4_interfaces() + (_ipv6_interfaces() if ipv6 else [])
    if not addresses:  # no interface list (not Linux): what the host name resolves to
        try:
            family = socket.AF_UNSPEC if ipv6 else socket.AF_INET
            addresses = [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, family, socket.SOCK_STREAM)]
        except OSError:
            addresses = []
    seen: list[str] = []
    for a in addresses:
        if _usable(a) and a not in seen:
            seen.append(a)
    return seen


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_host(address: str) -> str:
    """An address as it goes into a URL: IPv6 in brackets."""
    return f"[{address}]" if ":" in address else address


def reachable_hosts(listen: str) -> list[str]:
    """Hosts (URL form) a client can connect to for a listener on `listen`."""
    if listen not in WILDCARDS:
        return [url_host(listen)]
    found = machine_addresses(ipv6=listen == "::")
    if not found:  # a wildcard listener takes loopback connections too
        return ["[::1]" if listen == "::" else "127.0.0.1"]
    return [url_host(a) for a in found[:MAX_HOSTS]]


def spice_url(host: str, port: int = 0, tls_port: int = 0) -> str:
    """remote-viewer's URL form: spice://HOST:PORT, spice://HOST?tls-port=N, or both."""
    if port and tls_port:
        return f"spice://{host}:{port}?tls-port={tls_port}"
    if port:
        return f"spice://{host}:{port}"
    return f"spice://{host}?tls-port={tls_port}"


def certificate_names(path: str) -> list[str]:
    """The host names and addresses a certificate is for (subjectAltName, else its CN)."""
    try:
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        with open(path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
    except Exception:  # noqa: BLE001  (a hint only: the TLS setup reports real errors)
        return []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
        names += [str(n) for n in san.get_values_for_type(x509.IPAddress)]
        if names:
            return names
    except x509.ExtensionNotFound:
        pass
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def viewer_command(url: str, ca_file: str | None = None) -> str:
    """remote-viewer's command line for `url`, exactly as to type it: a TLS URL names the
    CA the viewer checks the server's certificate with (the server's --tls-ca), if known."""
    ca = f"--spice-ca-file={shlex.quote(ca_file)} " if ca_file and "tls-port=" in url else ""
    return f"remote-viewer {ca}{shlex.quote(url)}"


TLS_CA_NOTE = "TLS: give the viewer the CA that signed the certificate, --spice-ca-file=CA.pem"


@dataclass
class ConnectInfo:
    listen: str
    port: int
    tls_port: int
    ca_file: str | None = None
    cert_file: str | None = None
    ticket: str = "none"  # "none", "file", "stdin", "generated"
    ticket_file: str | None = None
    view_only: bool = False
    admin_port: int = 0
    admin_https: bool = False
    admin_token_file: str | None = None
    hosts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.hosts:
            self.hosts = reachable_hosts(self.listen)

    # --- what the block and the demo show ------------------------------------------------
    def tls_hosts(self) -> list[str]:
        """Hosts for TLS URLs: a loopback listener is named as its certificate names it."""
        names = certificate_names(self.cert_file) if self.cert_file else []
        out = []
        for h in self.hosts:
            bare = h.strip("[]")
            if names and bare not in names and "localhost" in names and _is_loopback_ip(bare):
                h = "localhost"
            out.append(h)
        return out

    def urls(self) -> list[str]:
        """One spice:// URL per listener and host: the plain port's, then the TLS port's."""
        plain = [spice_url(h, port=self.port) for h in self.hosts] if self.port else []
        tls = [spice_url(h, tls_port=self.tls_port) for h in self.tls_hosts()] if self.tls_port else []
        return plain + tls

    def viewer_commands(self) -> list[tuple[str, str]]:
        """(label, remote-viewer command line exactly as to type it): one per listener, first host."""
        out = []
        if self.port:
            out.append(("viewer", viewer_command(spice_url(self.hosts[0], port=self.port))))
        if self.tls_port:
            out.append(("TLS viewer", viewer_command(spice_url(self.tls_hosts()[0], tls_port=self.tls_port), self.ca_file)))
        return out

    def admin_url(self) -> str | None:
        if not self.admin_port:
            return None
        return f"{'https' if self.admin_https else 'http'}://{self.hosts[0]}:{self.admin_port}/"

    def password_line(self) -> str:
        if self.ticket == "file":
            return f"required: the one in {self.ticket_file}"
        if self.ticket == "stdin":
            return "required: the one read from standard input at start"
        if self.ticket == "generated":
            return "required: the generated one, printed once on the terminal at start (never logged)"
        if all(_is_loopback_ip(h.strip("[]")) or h == "localhost" for h in self.hosts):
            return "none: anyone on this machine can connect"
        return "none: anyone who can reach a port can connect"

    def block(self, headline: str) -> str:
        """The start-up block: every line is one fact, URLs and commands alone after a label."""
        rows = [headline]
        for url in self.urls():
            rows.append(f"    {'TLS URL' if 'tls-port=' in url else 'SPICE URL':<13}{url}")
        for label, cmd in self.viewer_commands():
            rows.append(f"    {label:<13}{cmd}")
        rows.append(f"    {'':<13}(remote-viewer is in the Debian package virt-viewer)")
        if self.tls_port and not self.ca_file:
            rows.append(f"    {'':<13}({TLS_CA_NOTE})")
        names = certificate_names(self.cert_file) if self.tls_port and self.cert_file else []
        if names and not any(h.strip("[]") in names for h in self.tls_hosts()):
            rows.append(f"    {'':<13}(the certificate is for {', '.join(names)}: a viewer checks the URL's host against it)")
        rows.append(f"    {'password':<13}{self.password_line()}")
        if self.view_only:
            rows.append(f"    {'input':<13}new clients start view-only: an admin can let them drive")
        admin = self.admin_url()
        if admin:
            rows.append(f"    {'admin site':<13}{admin}")
            rows.append(f"    admin token in {self.admin_token_file}")
            rows.append(f"    {'.vv file':<13}{admin}api/connection.vv")
            token = shlex.quote(self.admin_token_file or "")
            cacert = f"--cacert {shlex.quote(self.ca_file)} " if self.admin_https and self.ca_file else ""
            curl = f'curl {cacert}-OJ -H "Authorization: Bearer $(cat {token})" {admin}api/connection.vv'
            rows.append(f"    {'':<13}(log in at the admin site, or with the token: {curl})")
        else:
            rows.append(f"    {'admin site':<13}off (--admin-port 0)")
        return "\n".join(rows)
