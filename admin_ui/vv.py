"""remote-viewer connection files (.vv, virt-viewer's INI format) for this server."""

from __future__ import annotations


def connection_file(host: str, port: int, tls_port: int, ca_pem: str | None, password: str | None, title: str) -> str:
    lines = ["[virt-viewer]", "type=spice", f"host={host}", f"title={title}", "delete-this-file=1"]
    if port:
        lines.append(f"port={port}")
    if tls_port:
        lines.append(f"tls-port={tls_port}")
        if not port:
            lines.append("secure-channels=all")
        if ca_pem:
            lines.append("ca=" + ca_pem.strip().replace("\n", "\\n"))
    if password:
        lines.append(f"password={password}")
    return "\n".join(lines) + "\n"
