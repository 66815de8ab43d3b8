"""The desktop's sound through a real PulseAudio: a private daemon with a null sink, a tone
played into it with pacat, and real spice-gtk clients that must hear that tone.

The daemon is this test's own (its own runtime folder and socket, no autospawn, no
D-Bus); the server finds it through PULSE_SERVER, as a desktop session's would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from support.processes import wait_until

RATE = 48000
TONE_HZ = 1000.0
SINK = "st_null"
MIC = "st_mic"  # a null sink the primary's microphone is played into (its monitor: a virtual mic)


class PulseDaemon:
    """`pulseaudio` with a null sink (the default) and an anonymous unix socket in `tmp`."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "pulse"
        self.dir.mkdir(mode=0o700)
        self.socket = self.dir / "native"
        script = self.dir / "default.pa"
        script.write_text(
            f"load-module module-null-sink sink_name={SINK} rate={RATE} channels=2\n"
            f"load-module module-null-sink sink_name={MIC} rate={RATE} channels=2\n"
            f"load-module module-native-protocol-unix auth-anonymous=1 socket={self.socket}\n"
            f"set-default-sink {SINK}\n"
        )
        self.env = {
            **os.environ,
            "HOME": str(self.dir),
            "PULSE_RUNTIME_PATH": str(self.dir),
            "PULSE_STATE_PATH": str(self.dir),
            "PULSE_SERVER": f"unix:{self.socket}",
        }
        argv = ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no", "-F", str(script)]
        argv += ["--log-target=stderr", "--disable-shm=yes"]
        self.log = open(self.dir / "daemon.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(argv, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(self.ready, timeout=30, what="the private PulseAudio daemon")

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"pulseaudio exited: {(self.dir / 'daemon.log').read_text()[-2000:]}")
        r = subprocess.run(["pactl", "list", "short", "sinks"], env=self.env, capture_output=True, text=True)
        return r.returncode == 0 and SINK in r.stdout

    def play(self, pcm: bytes) -> subprocess.Popen:
        """pacat plays raw 48 kHz s16le stereo into the null sink (returns at once)."""
        p = subprocess.Popen(
            ["pacat", "--playback", "--raw", "--format=s16le", f"--rate={RATE}", "--channels=2", f"--device={SINK}"],
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert p.stdin is not None
        p.stdin.write(pcm)
        p.stdin.close()
        return p

    def capture(self, path: Path) -> subprocess.Popen:
        """parec records MIC's monitor into `path` until killed."""
        argv = ["parec", "--raw", "--format=s16le", f"--rate={RATE}", "--channels=2", f"--device={MIC}.monitor"]
        with open(path, "wb") as out:
            return subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.log.close()


@pytest.fixture
def pulse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    missing = [t for t in ("pulseaudio", "pacat", "parec", "pactl") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run scripts/setup.sh --test (pulseaudio, pulseaudio-utils)")
    d = PulseDaemon(tmp_path)
    monkeypatch.setenv("PULSE_SERVER", d.env["PULSE_SERVER"])  # what the servers spawned here find
    monkeypatch.setenv("PULSE_RUNTIME_PATH", str(d.dir))
    yield d
    d.stop()


def tone(seconds: float, hz: float = TONE_HZ, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    mono = np.round(level * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    return np.repeat(mono[:, None], 2, axis=1)


def dominant_hz(mono: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return float(np.argmax(spectrum) * RATE / len(mono))


def heard(client, tmp: Path) -> np.ndarray:
    path = tmp / f"heard-{client.proc.pid}-{time.monotonic_ns()}.raw"
    client.command(f"audio_dump {path}", "audio_dump")
    return np.frombuffer(path.read_bytes(), dtype="<i2").reshape(-1, 2)


def check_tone(pcm: np.ndarray, ref: np.ndarray) -> None:
    """The loud part of what a client heard is the tone played: its frequency, and sample for
    sample the same wave (correlation with the reference at the best alignment)."""
    loud = np.flatnonzero(np.abs(pcm[:, 0].astype(np.int32)) > 1000)
    assert len(loud) > RATE, f"only {len(loud)} loud samples heard"
    part = pcm[loud[0] : loud[-1] + 1, 0].astype(np.float64)
    assert abs(dominant_hz(part[:RATE]) - TONE_HZ) < 3
    seg = part[2400 : 2400 + 4800]  # 100 ms, past any fade-in
    r = ref[: 4800 + 480, 0].astype(np.float64)  # a period of the tone is 48 samples
    best = max(np.corrcoef(seg, r[k : k + 4800])[0, 1] for k in range(48))
    assert best > 0.99, f"correlation with the tone played: {best:.4f}"
    both = pcm[loud[0] : loud[-1] + 1].astype(np.int32)
    assert np.corrcoef(both[:, 0], both[:, 1])[0, 1] > 0.99  # both channels (PulseAudio's mixing is not bit-exact)


def test_the_x11_desktop_sound_reaches_every_client(spawn, pulse, xvfb_factory, tmp_path: Path) -> None:
    xvfb = xvfb_factory()
    server = spawn.harness("--source", f"x11:{xvfb.display}", "--disable-ticketing")
    a = spawn.client("--port", str(server.port), "--audio")
    b = spawn.client("--port", str(server.port), "--audio")
    for c in (a, b):
        c.wait_event("channel", channel="playback", what="opened", timeout=30)
    # An idle sink is digital silence: no stream yet (the monitor runs, nothing is sent).
    wait_until(lambda: server.stats()["audio"]["source"]["state"] == "playing", timeout=30, what="parec recording")
    assert server.stats()["audio"]["source"]["name"] == "pulse"
    ref = tone(3.0)
    player = pulse.play(ref.tobytes())
    for c in (a, b):
        c.wait_event("playback-start", timeout=30)
    wait_until(lambda: min(c.command("audio", "audio")["frames"] for c in (a, b)) >= 250, timeout=60, what="2.5 s of the tone")
    player.wait(30)
    for c in (a, b):  # the tone ended: half a second of silence later the stream stops
        c.wait_event("playback-stop", timeout=30)
    for c in (a, b):
        check_tone(heard(c, tmp_path), ref)


def test_a_named_monitor_on_the_demo_source(spawn, pulse, tmp_path: Path) -> None:
    server = spawn.harness("--disable-ticketing", "--audio-source", f"pulse:{SINK}.monitor")
    c = spawn.client("--port", str(server.port), "--audio")
    c.wait_event("channel", channel="playback", what="opened", timeout=30)
    wait_until(lambda: server.stats()["audio"]["source"]["state"] == "playing", timeout=30, what="parec recording")
    ref = tone(2.0)
    pulse.play(ref.tobytes()).wait(30)
    c.wait_event("playback-stop", timeout=30)
    check_tone(heard(c, tmp_path), ref)


def test_without_the_recorder_the_server_runs_silent_and_says_why(spawn, tmp_path: Path, monkeypatch) -> None:
    bin_dir = tmp_path / "bin"  # a PATH with python and setpriv but no parec or pw-record
    bin_dir.mkdir()
    for tool in ("setpriv",):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(os.sys.executable).parent}")
    server = spawn.harness("--disable-ticketing", "--audio-source", "pulse")
    c = spawn.client("--port", str(server.port), "--audio")
    c.wait_event("channel", channel="playback", what="opened", timeout=30)
    src = server.stats()["audio"]["source"]
    assert src["state"] == "unavailable" and "parec is not installed" in src["reason"]
    assert "parec is not installed (apt-get install pulseaudio-utils)" in server.stderr()


def test_the_primary_clients_microphone_plays_into_a_sink(spawn, pulse, tmp_path: Path) -> None:
    server = spawn.harness("--disable-ticketing", "--record-to", f"pulse:{MIC}")
    captured = tmp_path / "mic.raw"
    parec = pulse.capture(captured)
    try:
        primary = spawn.client("--port", str(server.port), "--audio")
        primary.wait_event("record-start", timeout=30)
        other = spawn.client("--port", str(server.port), "--audio")
        other.wait_event("channel", channel="record", what="opened", timeout=30)
        ref = tone(1.0, hz=600.0)
        (tmp_path / "tone.raw").write_bytes(ref.tobytes())
        noise = np.random.default_rng(9).integers(-9000, 9000, size=(48000, 2)).astype("<i2")
        (tmp_path / "noise.raw").write_bytes(noise.tobytes())
        assert other.command(f"record_send {tmp_path / 'noise.raw'} 20", "record_send", timeout=30)["ok"]  # not the primary
        assert primary.command(f"record_send {tmp_path / 'tone.raw'} 20", "record_send", timeout=30)["ok"]

        def loud() -> int:
            pcm = np.frombuffer(captured.read_bytes()[: os.path.getsize(captured) // 4 * 4], dtype="<i2")
            return int(np.count_nonzero(np.abs(pcm) > 1000))

        wait_until(lambda: loud() >= 2 * 40000, timeout=30, what="the tone in the mic sink's monitor")
    finally:
        parec.kill()
        parec.wait(10)
    pcm = np.frombuffer(captured.read_bytes()[: os.path.getsize(captured) // 4 * 4], dtype="<i2").reshape(-1, 2)
    loud = np.flatnonzero(np.abs(pcm[:, 0].astype(np.int32)) > 1000)
    part = pcm[loud[0] : loud[-1] + 1, 0].astype(np.float64)
    assert abs(dominant_hz(part) - 600) < 3, dominant_hz(part)
    r = ref[: 4800 + 80, 0].astype(np.float64)  # a period of 600 Hz is 80 samples
    best = max(np.corrcoef(part[2400:7200], r[k : k + 4800])[0, 1] for k in range(80))
    assert best > 0.99, f"correlation with the tone the primary sent: {best:.4f}"
    assert other.command("audio", "audio")["record_starts"] == 0
    assert server.stats()["audio"]["record_to"] == f"pulse:{MIC}"


def test_x11_without_a_sound_server_says_why_and_plays_nothing(spawn, xvfb_factory, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("PULSE_SERVER", raising=False)
    (tmp_path / "runtime").mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "runtime"))  # no pulse/native, no pipewire-0 in it
    xvfb = xvfb_factory()
    server = spawn.server("--source", f"x11:{xvfb.display}", "--disable-ticketing")  # twistd: its log from the start
    c = spawn.client("--port", str(server.port), "--audio")
    c.wait_event("channel", channel="playback", what="opened", timeout=30)
    assert "x11: the desktop's sound is not played: no PulseAudio or PipeWire server" in server.log()
    assert "desktop sound: recording" not in server.log() and c.command("audio", "audio")["starts"] == []
