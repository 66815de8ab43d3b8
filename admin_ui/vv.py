"""remote-viewer connection files (.vv, virt-viewer's INI format) for this server.

virt-viewer reads them with GLib's GKeyFile, so every value is written in its escapes:
a newline in a value (a CA certificate, a file name in the title) becomes `\\n` and can
never start a line of its own, such as a second `host=`.
"""

from __future__ import annotations

import unicodedata

# GKeyFile's escapes; a leading space is `\\s` (GKeyFile strips unescaped ones).
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def keyfile_value(text: str) -> str:
    """`text` as one GKeyFile value on one line. Characters GKeyFile has no escape for
    that some readers take as line ends (other control characters, U+2028, ...) become
    U+FFFD: no value of ours holds them on purpose (tickets refuse control characters)."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            out.append("\ufffd")
        else:
            out.append(ch)
    value = "".join(out)
    return "\\s" + value[1:] if value.startswith(" ") else value


def connection_file(host: str, port: int, tls_port: int, ca_pem: str | None, password: str | None, title: str) -> str:
    fields: list[tuple[str, str]] = [("type", "spice"), ("host", host), ("title", title), ("delete-this-file", "1")]
    if port:
        fields.append(("port", str(port)))
    if tls_port:
        fields.append(("tls-port", str(tls_port)))
        if not port:
            fields.append(("secure-channels", "all"))
        if ca_pem:
            fields.append(("ca", ca_pem.strip()))
    if password:
        fields.append(("password", password))
    return "[virt-viewer]\n" + "".join(f"{key}={keyfile_value(value)}\n" for key, value in fields)
