"""The playback service: the one audio stream every client hears.

A source hands it PCM frames (48 kHz, 16-bit, stereo, FRAME_SAMPLES each); each frame is
stamped with the server's multimedia clock (the clock the main channel's INIT and
MULTI_MEDIA_TIME carry), encoded once per mode some client needs (raw, Opus), and handed
to every playback channel client. A client whose pipe is full drops that whole frame: no
client waits for another, and nothing here knows of sockets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Protocol

from ..wire.enums import AudioDataMode, ChannelType
from ..wire.messages import message
from ..wire.schema import External, encode_split

FREQUENCY = 48000  # Opus takes 48 kHz, and spice-gtk plays any rate it is told in START
CHANNELS = 2
SAMPLE_BYTES = 2  # signed 16-bit little-endian (SPICE_AUDIO_FMT_S16)
FRAME_SAMPLES = 480  # 10 ms: the Opus frame spice-gtk decodes (it refuses longer ones)
FRAME_BYTES = FRAME_SAMPLES * CHANNELS * SAMPLE_BYTES
FRAME_SECONDS = FRAME_SAMPLES / FREQUENCY

_DATA = message(ChannelType.PLAYBACK, "DATA")


class AudioFrame:
    """One frame: its time and its DATA message body per mode, as (head, shared payload)."""

    __slots__ = ("time", "pcm", "bodies")

    def __init__(self, time: int, pcm: bytes) -> None:
        self.time, self.pcm = time, pcm
        self.bodies: dict[AudioDataMode, tuple[bytes, bytes]] = {}


class PlaybackSink(Protocol):
    """A playback channel client, as the service sees it."""

    mode: AudioDataMode

    def audio_start(self) -> None: ...
    def audio_frame(self, frame: AudioFrame) -> None: ...
    def audio_stop(self) -> None: ...
    def audio_volume(self, levels: list[int]) -> None: ...
    def audio_mute(self, mute: bool) -> None: ...


class Encoder(Protocol):
    def encode(self, pcm: bytes) -> bytes: ...


class PlaybackService:
    """Owns the stream's state (playing, volume, mute) and its subscribers."""

    def __init__(self, clock: Callable[[], int], opus: Callable[[], Encoder] | None = None) -> None:
        self.clock = clock
        self.make_opus = opus  # None: Opus is not available, every client gets raw
        self._opus: Encoder | None = None
        self.sinks: list[PlaybackSink] = []
        self.active = False
        self.volume: list[int] | None = None
        self.mute: bool | None = None
        self.frames = 0
        self.encodes: Counter[str] = Counter()  # encodes per mode (one per frame at most)

    @property
    def opus_available(self) -> bool:
        return self.make_opus is not None

    def subscribe(self, sink: PlaybackSink) -> None:
        self.sinks.append(sink)

    def unsubscribe(self, sink: PlaybackSink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)

    def start(self) -> None:
        if self.active:
            return
        self.active = True
        for s in list(self.sinks):
            s.audio_start()

    def stop(self) -> None:
        if not self.active:
            return
        self.active = False
        self._opus = None  # the next stream starts a fresh encoder (and clients a fresh decoder)
        for s in list(self.sinks):
            s.audio_stop()

    def set_volume(self, levels: list[int]) -> None:
        self.volume = [max(0, min(0xFFFF, int(v))) for v in levels]
        for s in list(self.sinks):
            s.audio_volume(self.volume)

    def set_mute(self, mute: bool) -> None:
        self.mute = bool(mute)
        for s in list(self.sinks):
            s.audio_mute(self.mute)

    def frame(self, pcm: bytes) -> AudioFrame:
        """Stamp, encode once per mode in use, and fan out one frame of PCM."""
        if len(pcm) != FRAME_BYTES:
            raise ValueError(f"a frame is {FRAME_BYTES} bytes, not {len(pcm)}")
        if not self.active:
            self.start()
        frame = AudioFrame(self.clock(), pcm)
        self.frames += 1
        modes = {s.mode for s in self.sinks}
        for mode in modes:
            frame.bodies[mode] = self._encode(frame, mode)
        for s in list(self.sinks):
            s.audio_frame(frame)
        return frame

    def _encode(self, frame: AudioFrame, mode: AudioDataMode) -> tuple[bytes, bytes]:
        if mode == AudioDataMode.OPUS:
            if self._opus is None:
                assert self.make_opus is not None
                self._opus = self.make_opus()
            payload = self._opus.encode(frame.pcm)
        else:
            payload = frame.pcm
        self.encodes[mode.name.lower()] += 1
        head, tail = encode_split(_DATA.layout, {"time": frame.time, "data": External(payload)})
        return head, tail or b""
