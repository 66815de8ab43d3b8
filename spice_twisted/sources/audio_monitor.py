"""The desktop's sound: a PulseAudio or PipeWire monitor, recorded by `parec` or `pw-record`.

The recorder is a child process (never a library in our process: the sound server's
client libraries run their own threads and main loops, and a child that hangs or dies
cannot take the reactor with it). It writes raw 48 kHz 16-bit stereo to its stdout;
we cut it into the playback service's 10 ms frames as it comes, so the recorder's
clock paces the stream. Half a second of digital silence (a monitor of an idle sink
gives zeros forever) stops the stream, and the next sound starts it again: idle
desktops cost clients nothing.

When the recorder exits (no sound server yet, the server restarted), the reason is
logged once per change and the recorder is started again after a backoff. The child
dies with the server (setpriv --pdeathsig), so a killed server leaves no recorder
behind.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path
from typing import Any

from twisted.internet import error, protocol
from twisted.logger import Logger

from ..audio.playback import CHANNELS, FRAME_BYTES, FREQUENCY, PlaybackService
from .audio import AudioSource

FIRST_RETRY = 1.0
RETRY_MAX = 30.0
SILENT_FRAMES = 50  # 0.5 s of zeros stops the stream (STOP), until the next sound
LATENCY_MS = 20  # what the recorder is asked to buffer: low, and a few frames a read
STDERR_KEEP = 4096
KINDS = ("pulse", "pipewire")


def recorder_argv(kind: str, device: str) -> list[str]:
    """The recorder's command line: raw s16le stereo 48 kHz on stdout."""
    if kind == "pulse":
        argv = ["parec", "--raw", "--format=s16le", f"--rate={FREQUENCY}", f"--channels={CHANNELS}"]
        argv += [f"--latency-msec={LATENCY_MS}", "--client-name=spice-twisted", "--stream-name=desktop sound for SPICE clients"]
        return [*argv, f"--device={device or '@DEFAULT_MONITOR@'}"]
    # PipeWire: the default sink's monitor unless a target is named (a sink's name records
    # what it plays, a source's name what it hears).
    argv = ["pw-record", "--format=s16", f"--rate={FREQUENCY}", f"--channels={CHANNELS}", f"--latency={LATENCY_MS}ms"]
    argv += ["-P", "{ stream.capture.sink = true }"]
    if device:
        argv += ["--target", device]
    return [*argv, "-"]


def parse_spec(spec: str) -> tuple[str, str] | None:
    """`pulse[:DEVICE]` / `pipewire[:TARGET]` -> (kind, device); anything else None."""
    kind, _, device = spec.partition(":")
    return (kind, device) if kind in KINDS else None


def desktop_server(env: dict[str, str] | None = None) -> str | None:
    """Which sound server this process would reach ("pulse", "pipewire") or None: checked by
    its socket, never by starting a recorder (libpulse would autospawn a daemon)."""
    env = dict(os.environ) if env is None else env
    runtime = Path(env.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}")
    if shutil.which("parec") and (env.get("PULSE_SERVER") or (runtime / "pulse" / "native").exists()):
        return "pulse"  # PulseAudio, or PipeWire's pulse server
    if shutil.which("pw-record") and (runtime / "pipewire-0").exists():
        return "pipewire"
    return None


def desktop_sound(log: Logger) -> MonitorSource | None:
    """The X11 source's sound when a sound server is here; else None, saying why."""
    kind = desktop_server()
    if kind is None:
        log.info(
            "x11: the desktop's sound is not played: no PulseAudio or PipeWire server found for this user (or "
            "parec/pw-record missing: apt-get install pulseaudio-utils); --audio-source pulse[:MONITOR] names one"
        )
        return None
    return MonitorSource(kind, "")


class WavHeaderSkipper:
    """Drops a WAV header at the start of a stream, if there is one. pw-cat before PipeWire's
    --raw option writes stdout through libsndfile, as a WAV whose sizes it cannot fill in
    (a pipe does not seek): the samples start after the "data" chunk's header. A stream
    that does not start with RIFF is raw already. At most MAX bytes are held looking."""

    MAX = 4096

    def __init__(self) -> None:
        self._held = b""
        self.done = False

    def feed(self, data: bytes) -> bytes:
        held = self._held + data
        if len(held) < 4 and b"RIFF".startswith(held):
            self._held = held
            return b""
        if not held.startswith(b"RIFF"):
            self.done = True
            return held
        at = held.find(b"data", 12)
        if at >= 0 and len(held) >= at + 8:
            self.done = True
            return held[at + 8 :]
        if len(held) > self.MAX:  # not a header we understand: play from here rather than hold more
            self.done = True
            return held[len(held) & 1 :]
        self._held = held
        return b""


def wav_stream_header(channels: int = CHANNELS, rate: int = FREQUENCY) -> bytes:
    """A 16-bit PCM WAV header for a stream of unknown length (sizes at their maximum): what
    pw-play, reading stdin through libsndfile, needs to know the samples' format."""
    block = channels * 2
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, 16)
    return (
        b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 0xFFFFFFFF)
    )


class _Recorder(protocol.ProcessProtocol):
    def __init__(self, source: MonitorSource) -> None:
        self.source = source
        self.err = b""

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self.source._samples(self, data)
        else:
            self.err = (self.err + data)[-STDERR_KEEP:]

    def processEnded(self, reason: Any) -> None:
        self.source._ended(self, reason.value)

    def kill(self) -> None:
        try:
            self.transport.signalProcess("KILL")
        except (error.ProcessExitedAlready, AttributeError):
            pass


class MonitorSource(AudioSource):
    """`--audio-source pulse[:DEVICE]` or `pipewire[:TARGET]` (and the X11 source's default
    when a sound server is there)."""

    log = Logger()

    def __init__(self, kind: str, device: str = "", retry_max: float = RETRY_MAX) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown sound server {kind!r} (pulse or pipewire)")
        self.kind, self.device = kind, device
        self.name = f"{kind}:{device}" if device else kind
        self.argv = recorder_argv(kind, device)
        self.retry_max = retry_max
        self.playback: PlaybackService | None = None
        self.reactor: Any = None
        self.recorder: _Recorder | None = None
        self.state = "stopped"
        self.reason = ""
        self.frames = 0
        self.silent_frames = 0  # zeros in a row
        self.starts = 0
        self._buf = bytearray()
        self._header: WavHeaderSkipper | None = None
        self._delay = FIRST_RETRY
        self._timer: Any = None
        self._stopping = False

    def start(self, playback: PlaybackService, reactor: Any) -> None:
        self.playback, self.reactor = playback, reactor
        self._spawn()

    def stop(self) -> None:
        self._stopping = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self.recorder is not None:
            self.recorder.kill()
        if self.playback is not None:
            self.playback.stop()

    def _spawn(self) -> None:
        self._timer = None
        if self._stopping:
            return
        tool = shutil.which(self.argv[0])
        if tool is None:
            package = "pulseaudio-utils" if self.kind == "pulse" else "pipewire-bin"
            self.state, self.reason = "unavailable", f"{self.argv[0]} is not installed (apt-get install {package})"
            self.log.error("desktop sound ({name}): {reason}; clients hear nothing", name=self.name, reason=self.reason)
            return
        argv = [tool, *self.argv[1:]]
        setpriv = shutil.which("setpriv")
        if setpriv:  # the recorder dies with us (it follows the reactor thread, which lives as long)
            argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
        self.starts += 1
        self._buf.clear()
        self._header = WavHeaderSkipper() if self.kind == "pipewire" else None
        self.recorder = _Recorder(self)
        self.reactor.spawnProcess(self.recorder, argv[0], argv, env=dict(os.environ), childFDs={0: "w", 1: "r", 2: "r"})
        self.recorder.transport.closeStdin()

    def _samples(self, rec: _Recorder, data: bytes) -> None:
        if rec is not self.recorder or self.playback is None:
            return
        if self.state != "playing":
            self.state, self.reason, self._delay = "playing", "", FIRST_RETRY
            self.log.info("desktop sound: recording {name} through {tool}", name=self.name, tool=self.argv[0])
        if self._header is not None:  # pw-record (PipeWire 0.3.x) writes a WAV header to a pipe
            data = self._header.feed(data)
            if self._header.done:
                self._header = None
        buf = self._buf
        buf += data
        n = len(buf) // FRAME_BYTES
        for i in range(n):
            pcm = bytes(buf[i * FRAME_BYTES : (i + 1) * FRAME_BYTES])
            if pcm.count(0) == FRAME_BYTES:
                self.silent_frames += 1
                if self.silent_frames >= SILENT_FRAMES:
                    if self.playback.active:
                        self.playback.stop()
                    continue
            else:
                self.silent_frames = 0
            self.frames += 1
            self.playback.frame(pcm)
        del buf[: n * FRAME_BYTES]

    def _ended(self, rec: _Recorder, why: BaseException) -> None:
        if rec is not self.recorder:
            return
        self.recorder = None
        if self._stopping:
            return
        if self.playback is not None:
            self.playback.stop()
        lines = [ln.strip() for ln in rec.err.decode(errors="replace").splitlines() if ln.strip()]
        code = getattr(why, "exitCode", None)
        self._failed(f"{self.argv[0]} ended (exit code {code}){': ' + lines[-1] if lines else ''}")

    def _failed(self, reason: str) -> None:
        if self.state != "failed" or reason != self.reason:
            self.log.warn(
                "desktop sound ({name}): {reason}; retrying (backoff up to {m:g} s)", name=self.name, reason=reason, m=self.retry_max
            )
        self.state, self.reason = "failed", reason
        self._timer = self.reactor.callLater(self._delay, self._spawn)
        self._delay = min(self._delay * 2, self.retry_max)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "recorder": self.argv[0],
            "state": self.state,
            "reason": self.reason,
            "frames": self.frames,
            "silent": self.silent_frames >= SILENT_FRAMES,
            "recorder_starts": self.starts,
            "recorder_pid": (self.recorder.transport.pid if self.recorder is not None and self.recorder.transport else None),
        }


# --- the primary's microphone into the desktop: `--record-to pulse[:SINK]` / `pipewire[:TARGET]`
def player_argv(kind: str, device: str) -> list[str]:
    """The player's command line: raw s16le stereo 48 kHz from its stdin."""
    if kind == "pulse":
        argv = ["pacat", "--playback", "--raw", "--format=s16le", f"--rate={FREQUENCY}", f"--channels={CHANNELS}"]
        argv += [f"--latency-msec={LATENCY_MS * 2}", "--client-name=spice-twisted", "--stream-name=the SPICE primary client's microphone"]
        return [*argv, f"--device={device or '@DEFAULT_SINK@'}"]
    argv = ["pw-play", "--format=s16", f"--rate={FREQUENCY}", f"--channels={CHANNELS}", f"--latency={LATENCY_MS * 2}ms"]
    return [*argv, *(["--target", device] if device else []), "-"]


class _Player(protocol.ProcessProtocol):
    def __init__(self, sink: PlayerSink) -> None:
        self.sink = sink
        self.err = b""

    def childDataReceived(self, fd: int, data: bytes) -> None:
        self.err = (self.err + data)[-STDERR_KEEP:]

    def processEnded(self, reason: Any) -> None:
        self.sink._ended(self, reason.value)


class PlayerSink:
    """A record sink: the primary's samples played into a sink (e.g. a null sink whose
    monitor desktop programs use as their microphone) by `pacat` / `pw-play`, a child
    process started with the server and again at the next samples after it ends. A player that does
    not keep up (its stdin pipe full) pauses us, and samples meanwhile are dropped:
    memory stays bounded and late sound is no use to anyone."""

    log = Logger()

    def __init__(self, kind: str, device: str, reactor: Any) -> None:
        self.kind, self.device, self.reactor = kind, device, reactor
        self.name = f"{kind}:{device}" if device else kind
        self.path = self.name  # what the stats show as record_to
        self.argv = player_argv(kind, device)
        self.player: _Player | None = None
        self.paused = False
        self.bytes = 0
        self.dropped = 0
        self.starts = 0
        self._closed = False
        # Started with the server, not at the first samples: a player still connecting to
        # its sound server when they come would take them late, or drop them.
        reactor.callWhenRunning(self._spawn)

    def write(self, pcm: bytes) -> None:
        if self._closed:
            return
        if self.player is None:
            self._spawn()
        if self.player is None or self.paused:
            self.dropped += len(pcm)
            return
        self.player.transport.write(pcm)
        self.bytes += len(pcm)

    def _spawn(self) -> None:
        tool = shutil.which(self.argv[0])
        if tool is None or self._closed or self.player is not None:
            return
        argv = [tool, *self.argv[1:]]
        setpriv = shutil.which("setpriv")
        if setpriv:
            argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
        self.starts += 1
        self.paused = False
        player = _Player(self)
        self.reactor.spawnProcess(player, argv[0], argv, env=dict(os.environ), childFDs={0: "w", 1: "r", 2: "r"})
        player.transport.registerProducer(self, True)
        if self.kind == "pipewire":
            player.transport.write(wav_stream_header())
        self.player = player
        self.log.info("recording: the primary client's microphone plays into {name} through {tool}", name=self.name, tool=self.argv[0])

    def _ended(self, player: _Player, why: BaseException) -> None:
        if player is not self.player:
            return
        self.player = None
        if not self._closed:
            lines = [ln.strip() for ln in player.err.decode(errors="replace").splitlines() if ln.strip()]
            code = getattr(why, "exitCode", None)
            self.log.warn(
                "recording into {name}: {tool} ended (exit code {code}){tail}; started again with the next samples",
                name=self.name,
                tool=self.argv[0],
                code=code,
                tail=": " + lines[-1] if lines else "",
            )

    # IPushProducer: the player's stdin pipe is full (pause) or drained (resume).
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.paused = True

    def close(self) -> None:
        self._closed = True
        if self.player is not None:
            try:
                self.player.transport.closeStdin()  # it plays what it has and leaves
            except Exception:
                pass


def check_player(spec: str) -> tuple[str, str]:
    """`--record-to pulse[:SINK]` / `pipewire[:TARGET]` -> (kind, device); ValueError if its
    player is not installed (the user asked for it: say so at start, not at the first sample)."""
    kind_device = parse_spec(spec)
    assert kind_device is not None
    tool = player_argv(*kind_device)[0]
    if shutil.which(tool) is None:
        package = "pulseaudio-utils" if kind_device[0] == "pulse" else "pipewire-bin"
        raise ValueError(f"{tool} is not installed (apt-get install {package})")
    return kind_device
