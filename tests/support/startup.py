"""`twistd -n spice` run the way a user runs it: real twistd, its own stdin, stdout and
stderr kept apart (the terminal vs the log), and the connect block read back from the log."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from support.processes import _env, free_port, terminate

_TWISTD = Path(sys.executable).with_name("twistd")
TWISTD = [str(_TWISTD)] if _TWISTD.exists() else [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def connect_block(log: str) -> str:
    """The start-up block: its headline and the tab-indented lines after it."""
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if "how to connect:" in line:
            rest = [x for x in lines[i + 1 :]]
            block = [line]
            for x in rest:
                if not x.startswith("\t"):
                    break
                block.append(x)
            return "\n".join(block)
    raise AssertionError(f"no connect block in the log:\n{log[-3000:]}")


def field(block: str, label: str) -> list[str]:
    """Every value after `label` in the block (a label's own line, continuation lines not)."""
    return re.findall(rf"^\t    {re.escape(label)} +(\S.*)$", block, re.M)


class TwistdRun:
    """`twistd -n --pidfile= [--logfile F] spice --port P --admin-port 0 ... ARGS`."""

    def __init__(self, *args: str, tmp: Path, stdin: bytes | None = None, logfile: Path | None = None, wait: bool = True) -> None:
        self.port = free_port()
        self.logfile = logfile
        argv = [*TWISTD, "-n", "--pidfile="]
        if logfile is not None:
            argv += ["--logfile", str(logfile)]
        argv += ["spice", "--port", str(self.port)]
        argv += [] if "--admin-port" in args else ["--admin-port", "0"]
        argv += [] if "--ping-interval" in args else ["--ping-interval", "600"]
        argv += list(args)
        self.argv = argv
        self.out_path, self.err_path = tmp / f"twistd-{self.port}.out", tmp / f"twistd-{self.port}.err"
        self._out, self._err = open(self.out_path, "wb"), open(self.err_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=self._out, stderr=self._err, env=_env(), cwd=str(tmp))
        assert self.proc.stdin is not None
        if stdin is not None:
            self.proc.stdin.write(stdin)
        self.proc.stdin.close()
        if wait:
            self.wait_ready()

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def log(self) -> str:
        """What twistd logged: the --logfile, else standard output."""
        return self.logfile.read_text(errors="replace") if self.logfile is not None and self.logfile.exists() else self.stdout()

    def wait_ready(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"twistd exited with {self.proc.returncode}:\n{self.stdout()}\n{self.stderr()}\n{self.log()}")
            text = self.log()
            if "how to connect:" in text:
                time.sleep(0.1)  # the rest of the block, if a write was split
                return connect_block(self.log())
            time.sleep(0.05)
        raise RuntimeError(f"twistd not ready in {timeout}s:\n{self.log()}\n{self.stderr()}")

    def stop(self) -> None:
        terminate(self.proc)
        self._out.close()
        self._err.close()
