"""What every benchmark's report shares: markdown tables and the machine and command it ran on."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def command_line(python: str | None = None) -> str:
    """The command that ran this script, relative to the current folder where it can be."""
    try:
        script = str(Path(sys.argv[0]).resolve().relative_to(Path.cwd()))
    except ValueError:
        script = sys.argv[0]
    return shlex.join([python or sys.executable, script, *sys.argv[1:]])


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load, as /proc/loadavg says ("?" elsewhere)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def write_between(path: Path, name: str, text: str) -> None:
    """Put `text` (its own begin/end markers included) where the document's `name`
    section was, or at its end."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    doc = path.read_text() if path.exists() else ""
    if begin in doc and end in doc:
        head, rest = doc.split(begin, 1)
        doc = head + text + rest.split(end, 1)[1]
    else:
        doc = doc.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(doc)


def publish(path: Path, name: str, lines: list[str], write: bool = True) -> str:
    """The section `name` (`lines` between its markers), put into the document at `path` by
    `write_between` unless `write` is false (a --no-write run); returns its text."""
    text = "\n".join([f"<!-- {name}:begin -->", *lines, f"<!-- {name}:end -->"])
    if write:
        write_between(path, name, text)
        print(f"wrote {os.path.relpath(path, ROOT)}")
    return text


def publish_table(path: Path, name: str, intro: list[str], header: list[str], rows: list[list[str]], write: bool = True) -> str:
    """`publish` a section of `intro` lines, then the table."""
    return publish(path, name, [*intro, "", md_table(header, rows)], write)
