"""The built-in agent's command-line options, one block (options.py lists them and calls
`agent_policy()` from postOptions): --clipboard, --file-xfer-dir, --file-xfer-max-size and
QEMU's --disable-copy-paste / --disable-agent-file-xfer."""

from __future__ import annotations

import os
from typing import Any

from twisted.python import usage

from .agent_policy import AgentPolicy, ClipboardMode
from .file_xfer import DEFAULT_MAX_SIZE
from .limits import parse_size


def _clipboard(value: str) -> ClipboardMode:
    try:
        return ClipboardMode(value)
    except ValueError:
        raise ValueError(f"expected none, copy-out or both, not {value!r}") from None


AGENT_PARAMETERS: list[list[Any]] = [
    [
        "clipboard",
        None,
        ClipboardMode.BOTH,
        "Clipboard for clients that drive: both (copy in and out), copy-out (from the desktop only) or none; "
        "view-only clients get at most copy-out.",
        _clipboard,
    ],
    ["file-xfer-dir", None, None, "Save files clients drop on their viewer here (default: file transfer is off)."],
    ["file-xfer-max-size", None, DEFAULT_MAX_SIZE, "Largest file a client may send (bytes, or with K or M).", parse_size],
]
AGENT_FLAGS: list[list[Any]] = [
    ["disable-copy-paste", None, "Same as --clipboard none (QEMU's name; =on/=off as QEMU writes it)."],
    ["disable-agent-file-xfer", None, "No file transfer, even with --file-xfer-dir (QEMU's name; =on/=off as QEMU writes it)."],
]
AGENT_SWITCHES = {"disable-copy-paste", "disable-agent-file-xfer"}  # QEMU's NAME=on|off forms taken too


def agent_policy(opts: Any) -> AgentPolicy:
    """Check the agent options and build the policy (raises usage.UsageError)."""
    mode = ClipboardMode.NONE if opts["disable-copy-paste"] else ClipboardMode(opts["clipboard"])
    directory = None if opts["disable-agent-file-xfer"] else opts["file-xfer-dir"]
    if directory is not None:
        directory = os.path.abspath(directory)
        if not os.path.isdir(directory):
            raise usage.UsageError(f"--file-xfer-dir: not a directory: {directory}")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise usage.UsageError(f"--file-xfer-dir: cannot write to {directory}")
    return AgentPolicy(clipboard=mode, file_xfer_dir=directory, file_xfer_max_size=int(opts["file-xfer-max-size"]))
