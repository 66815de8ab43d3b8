"""Run the fuzz targets: with atheris (coverage-guided libFuzzer) when it is installed,
otherwise with plain random inputs. Both engines feed a target the same thing, one byte
buffer per input, so a finding of either replays with `--replay FILE`.

    python -m fuzz.run TARGET|all [--runs N] [--seconds S] [--engine atheris|random]
                                  [--seed N] [--corpus] [--replay FILE]

Findings (an unexpected exception, a broken bound, an input that ran longer than
--timeout) are written to fuzz/findings/ and make the exit status non-zero. Each run
ends with one JSON line: {"target", "engine", "runs", "seconds", "findings", "rss_mb"}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import resource
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FINDINGS = HERE / "findings"
NAMES = ["framer", "decode", "core", "link", "link-protocol", "websocket", "channels", "agent"]


def _quiet_logs() -> None:
    # The targets make the server log refusals; nobody reads them here.
    from twisted.logger import globalLogBeginner

    globalLogBeginner.beginLoggingTo([lambda event: None], redirectStandardIO=False, discardBuffer=True)


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _save(target: str, data: bytes, what: str) -> Path:
    FINDINGS.mkdir(exist_ok=True)
    path = FINDINGS / f"{target}-{hashlib.sha1(data).hexdigest()[:16]}"
    path.write_bytes(data)
    path.with_suffix(".txt").write_text(what)
    return path


def run_random(target: str, runs: int, seconds: float, seed: int, timeout: float) -> dict:
    from .gen import BytesChooser
    from .targets import TARGETS

    fn = TARGETS[target]
    rng = random.Random(seed)
    start = time.monotonic()
    n = findings = 0
    while (not runs or n < runs) and (not seconds or time.monotonic() - start < seconds):
        data = rng.randbytes(rng.choice((16, 64, 256, 1024, 4096)))
        t0 = time.monotonic()
        try:
            fn(BytesChooser(data))
        except Exception:  # noqa: BLE001  (every unexpected exception is a finding)
            findings += 1
            path = _save(target, data, traceback.format_exc())
            sys.stderr.write(f"FINDING in {target}: {path}\n{traceback.format_exc()}\n")
        if time.monotonic() - t0 > timeout:
            findings += 1
            path = _save(target, data, f"ran {time.monotonic() - t0:.1f}s (timeout {timeout}s)")
            sys.stderr.write(f"FINDING in {target}: slow input {path}\n")
        n += 1
    return {
        "target": target,
        "engine": "random",
        "runs": n,
        "seconds": round(time.monotonic() - start, 1),
        "findings": findings,
        "rss_mb": _rss_mb(),
    }


def run_atheris(target: str, runs: int, seconds: float, seed: int, timeout: float, corpus: bool) -> None:
    """Never returns: libFuzzer exits the process (0 when no finding)."""
    import atheris

    with atheris.instrument_imports(include=["spice_twisted"]):
        import spice_twisted.channels.link  # noqa: F401
        import spice_twisted.server  # noqa: F401
        import spice_twisted.wire.link  # noqa: F401
    from .gen import BytesChooser
    from .targets import TARGETS

    fn = TARGETS[target]

    def one(data: bytes) -> None:
        fn(BytesChooser(data))

    FINDINGS.mkdir(exist_ok=True)
    argv = [sys.argv[0], f"-seed={seed}", f"-timeout={int(timeout)}", "-rss_limit_mb=2048", f"-artifact_prefix={FINDINGS}/{target}-"]
    if runs:
        argv.append(f"-runs={runs}")
    if seconds:
        argv.append(f"-max_total_time={int(seconds)}")
    if corpus:
        d = HERE / "corpus" / target
        d.mkdir(parents=True, exist_ok=True)
        argv.append(str(d))
    atheris.Setup(argv, one)
    atheris.Fuzz()


def atheris_child(target: str, args: argparse.Namespace) -> dict:
    """Run libFuzzer on one target in a child; its stderr is shown and read for the numbers."""
    cmd = [
        sys.executable,
        "-m",
        "fuzz.run",
        target,
        "--child",
        "--engine",
        "atheris",
        "--seed",
        str(args.seed),
        "--timeout",
        str(args.timeout),
    ]
    cmd += ["--runs", str(args.runs)] if args.runs else []
    cmd += ["--seconds", str(args.seconds)] if args.seconds else []
    cmd += ["--corpus"] if args.corpus else []
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stderr=subprocess.PIPE, text=True, errors="replace")
    runs, cov, findings, tail = 0, 0, 0, []
    assert proc.stderr is not None
    for text in proc.stderr:
        if args.verbose or "ERROR" in text or "Traceback" in text or "FINDING" in text:
            sys.stderr.write(text)
        tail = (tail + [text])[-40:]
        m = re.search(r"^#(\d+)\s.*cov: (\d+)", text)
        if m:
            runs, cov = int(m.group(1)), int(m.group(2))
        m = re.search(r"Done (\d+) runs", text)
        if m:
            runs = int(m.group(1))
        if "Uncaught Python exception" in text or text.startswith("==") and "ERROR" in text:
            findings += 1
    status = proc.wait()
    if status and not findings:
        sys.stderr.write("".join(tail))
    return {
        "target": target,
        "engine": "atheris",
        "runs": runs,
        "seconds": round(time.monotonic() - started, 1),
        "findings": findings,
        "coverage": cov,
        "status": status,
    }


def have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", choices=[*NAMES, "all"])
    ap.add_argument("--runs", type=int, default=0, help="inputs per target (0 = until --seconds)")
    ap.add_argument("--seconds", type=float, default=0, help="time per target (0 = until --runs)")
    ap.add_argument("--engine", choices=["auto", "atheris", "random"], default="auto")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds one input may take")
    ap.add_argument("--corpus", action="store_true", help="atheris: keep a corpus in fuzz/corpus/TARGET/")
    ap.add_argument("--replay", help="run one saved input (a finding) and show what it does")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--verbose", action="store_true", help="show libFuzzer's own progress lines")
    args = ap.parse_args(argv)
    if not args.runs and not args.seconds and not args.replay:
        args.runs = 1000
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if have_atheris() else "random"
    if engine == "atheris" and not have_atheris():
        sys.stderr.write("atheris is not installed: pip install atheris, or use --engine random\n")
        return 2
    _quiet_logs()
    if args.replay:
        from .gen import BytesChooser
        from .targets import TARGETS

        TARGETS[args.target](BytesChooser(Path(args.replay).read_bytes()))
        print("no finding")
        return 0
    targets = NAMES if args.target == "all" else [args.target]
    if engine == "atheris":
        if args.child:
            run_atheris(args.target, args.runs, args.seconds, args.seed, args.timeout, args.corpus)
        # libFuzzer runs one target per process and exits: one child each, read for its numbers.
        status = 0
        for t in targets:
            line = atheris_child(t, args)
            print(json.dumps(line), flush=True)
            status = status or (1 if line["findings"] or line["status"] else 0)
        return status
    status = 0
    for t in targets:
        line = run_random(t, args.runs, args.seconds, args.seed, args.timeout)
        print(json.dumps(line), flush=True)
        status = status or (1 if line["findings"] else 0)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
