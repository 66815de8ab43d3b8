"""The VM's sound: its playback to every client of ours, the primary's microphone to the VM.

Upstream spice-server plays to its one client: our helper (vm_helper.py), whose
spice-gtk playback channel hands over the PCM it decoded (raw or Opus upstream, PCM
here). `VmSound` re-frames it into the playback service's 10 ms frames (converting
the format if the VM's is not 48 kHz stereo), so every client hears the VM, each in
its own mode. The upstream's pace is the stream's pace: frames go out as they come.

Recording goes the other way: while the VM records (its record channel got START),
the record service asks our primary client to record, and `VmMicrophone` sends its
samples to the helper, which hands them to spice-gtk's record channel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..audio.convert import Converter, Reframer
from ..audio.playback import CHANNELS, FREQUENCY, PlaybackService
from . import vm_protocol as proto
from .audio import AudioSource

if TYPE_CHECKING:
    from ..audio.record import RecordService, RecordSink


class VmMicrophone:
    """The record service's sink while serving a VM: the primary's samples go upstream."""

    def __init__(self, sound: VmSound) -> None:
        self.sound = sound
        self.service: RecordService | None = None
        self.converter: Converter | None = None  # our format -> the VM's, while it records
        self.bytes_sent = 0
        self.bytes_dropped = 0  # arrived when the VM was not recording (in flight at a stop)

    def bind(self, service: RecordService) -> None:
        self.service = service

    def upstream_start(self, channels: int, rate: int) -> None:
        self.converter = Converter(CHANNELS, FREQUENCY, channels, rate)
        if self.service is not None:
            self.service.set_wanted(True)

    def upstream_stop(self) -> None:
        if self.converter is None:
            return
        self.converter = None
        if self.service is not None:
            self.service.set_wanted(False)

    def write(self, pcm: bytes) -> None:
        helper = self.sound.helper()
        if self.converter is None or helper is None:
            self.bytes_dropped += len(pcm)
            return
        out = self.converter.convert(pcm)
        for i in range(0, len(out), proto.MAX_PCM):
            helper.send(proto.RecordData(out[i : i + proto.MAX_PCM]))
        self.bytes_sent += len(pcm)

    def close(self) -> None:
        self.converter = None


class VmSound(AudioSource):
    """What the VM plays, as the server's audio source (the VM source's `sounds`)."""

    name = "vm"

    def __init__(self, helper: Any) -> None:
        self.helper = helper  # () -> the live helper (its send()), or None
        self.playback: PlaybackService | None = None
        self.microphone = VmMicrophone(self)
        self.reframer: Reframer | None = None
        self.format: tuple[int, int] | None = None  # the VM's stream: channels, rate
        self.streams = 0
        self.frames = 0
        self.bytes_in = 0

    def start(self, playback: PlaybackService, reactor: Any) -> None:
        self.playback = playback

    def stop(self) -> None:
        self._end_stream()

    def record_sink(self) -> RecordSink:
        return self.microphone

    def message(self, msg: proto.AudioMessage) -> None:
        """A sound frame from the helper."""
        if isinstance(msg, proto.PlaybackStart):
            self._end_stream()
            self.format = (msg.channels, msg.rate)
            self.reframer = Reframer(msg.channels, msg.rate)
            self.streams += 1
        elif isinstance(msg, proto.PlaybackData):
            self.bytes_in += len(msg.pcm)
            if self.reframer is None or self.playback is None:
                return  # data before a start: not a stream we know the format of
            for frame in self.reframer.feed(msg.pcm):
                self.frames += 1
                self.playback.frame(frame)
        elif isinstance(msg, proto.PlaybackStop):
            self._end_stream()
        elif isinstance(msg, proto.PlaybackVolume) and self.playback is not None:
            self.playback.set_volume(list(msg.levels))  # every client's VOLUME follows the VM's
        elif isinstance(msg, proto.PlaybackMute) and self.playback is not None:
            self.playback.set_mute(msg.mute)
        elif isinstance(msg, proto.RecordStart):
            self.microphone.upstream_start(msg.channels, msg.rate)
        elif isinstance(msg, proto.RecordStop):
            self.microphone.upstream_stop()

    def upstream_gone(self) -> None:
        """The helper ended (the VM lost, a crash): the stream and the recording end with it."""
        self._end_stream()
        self.microphone.upstream_stop()

    def _end_stream(self) -> None:
        if self.reframer is not None and self.playback is not None:
            last = self.reframer.flush()
            if last is not None:
                self.frames += 1
                self.playback.frame(last)
        self.reframer = None
        if self.playback is not None:
            self.playback.stop()

    def describe(self) -> dict[str, Any]:
        mic = self.microphone
        return {
            "name": self.name,
            "playing": self.reframer is not None,
            "format": {"channels": self.format[0], "rate": self.format[1]} if self.format else None,
            "streams": self.streams,
            "frames": self.frames,
            "bytes_in": self.bytes_in,
            "recording": mic.converter is not None,
            "record_bytes_sent": mic.bytes_sent,
            "record_bytes_dropped": mic.bytes_dropped,
        }
