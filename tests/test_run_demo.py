"""scripts/run-demo.sh installs only when needed: the first time, and again once anything an
install is made from changed (a package source, a C source, the build files).

It runs on a copy of the repository whose .venv holds the real twistd and a pip that only
writes down how it was called: the shared .venv of the test machine is never installed into.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from support.processes import ROOT

VENV_BIN = Path(sys.executable).parent  # the venv running the tests
COPIED = ("scripts", "spice_twisted", "admin_ui", "twisted", "setup.py", "setup.cfg", "pyproject.toml", "README.md")


def _repo_copy(tmp: Path) -> Path:
    repo = tmp / "repo"
    repo.mkdir()
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))
        elif src.exists():
            shutil.copy2(src, repo / name)
    return repo


def _venv(repo: Path, log: Path) -> None:
    """python (for setup.sh's checks), the real twistd, and a pip that logs its arguments."""
    bin_dir = repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    # python: the real one, except that building the C extensions in place is only written
    # down (setup.sh's last step; a real build here would only cost the test time).
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nif [ "$1" = setup.py ]; then echo "python $*" >> {log}; exit 0; fi\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    (bin_dir / "twistd").symlink_to(VENV_BIN / "twistd")
    pip = bin_dir / "pip"
    pip.write_text(f'#!/bin/sh\necho "pip $*" >> {log}\n')
    pip.chmod(0o755)


def _run_demo(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(repo / "scripts" / "run-demo.sh"), *args], capture_output=True, text=True, cwd=str(repo), timeout=120)


def test_run_demo_installs_only_when_what_it_installs_changed(tmp_path):
    repo = _repo_copy(tmp_path)
    log = tmp_path / "pip.log"
    _venv(repo, log)

    def installs() -> int:
        return sum("install -q ." in line for line in log.read_text().splitlines()) if log.exists() else 0

    def help_runs() -> None:
        r = _run_demo(repo, "--help")
        assert r.returncode == 0, r.stderr
        assert "one display to many SPICE clients" in r.stdout.replace("\n", " ")  # twistd spice --help itself

    help_runs()
    assert installs() == 1  # a fresh .venv: installed once
    help_runs()
    help_runs()
    assert installs() == 1  # nothing changed: no install
    # A changed package source, a new C source of an extension, a changed build file:
    # each is installed once, then not again.
    with open(repo / "spice_twisted" / "limits.py", "a") as f:
        f.write("\n# changed\n")
    help_runs()
    help_runs()
    assert installs() == 2
    (repo / "spice_twisted" / "codecs" / "fast.c").write_text("int fast(void) { return 1; }\n")
    help_runs()
    assert installs() == 3
    with open(repo / "setup.cfg", "a") as f:
        f.write("\n# changed\n")
    help_runs()
    help_runs()
    assert installs() == 4
    # Compiled files and caches that a run or a build leaves next to the sources are no change.
    (repo / "spice_twisted" / "codecs" / "fast.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    (repo / "spice_twisted" / "__pycache__").mkdir(exist_ok=True)
    (repo / "spice_twisted" / "__pycache__" / "x.pyc").write_bytes(b"x")
    help_runs()
    assert installs() == 4
    # A .venv without twistd (a failed or removed install) is set up again.
    (repo / ".venv" / "bin" / "twistd").unlink()
    r = _run_demo(repo, "--help")
    assert installs() == 5 and r.returncode != 0  # the logging pip made no twistd
