"""Recording: only the primary client's microphone is heard, and it moves with the primary.

The record service keeps the record channel clients; the one whose client is the
server's primary gets START (and is heard), every other one is idle (or gets STOP when it
stops being the primary). Samples go to a sink: a WAV file for --record-to.
"""

from __future__ import annotations

import wave
from typing import Any, Protocol

from .playback import CHANNELS, FREQUENCY, SAMPLE_BYTES


class RecordSink(Protocol):
    """Where the primary's samples go. A sink that wants them only at times (a VM that is
    recording) has `bind(service)` and calls `service.set_wanted(...)`."""

    def write(self, pcm: bytes) -> None: ...
    def close(self) -> None: ...


class WavSink:
    """16-bit stereo 48 kHz PCM into a WAV file (the header is kept right as it grows)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = open(path, "wb")  # kept open while recording
        self._wav: Any = wave.open(self._file, "wb")
        self._wav.setnchannels(CHANNELS)
        self._wav.setsampwidth(SAMPLE_BYTES)
        self._wav.setframerate(FREQUENCY)
        self.bytes = 0

    def write(self, pcm: bytes) -> None:
        whole = len(pcm) - len(pcm) % (CHANNELS * SAMPLE_BYTES)  # never a torn sample
        if whole:
            self._wav.writeframes(pcm[:whole])  # writeframes patches the header's sizes
            self._file.flush()  # a reader sees a valid file at any moment
            self.bytes += whole

    def close(self) -> None:
        self._wav.close()  # (does not close a file it was given)
        self._file.close()


class Recorder(Protocol):
    """A record channel client, as the service sees it."""

    client: Any

    def record_start(self) -> None: ...
    def record_stop(self) -> None: ...


class RecordService:
    def __init__(self, sink: RecordSink | None) -> None:
        self.sink = sink
        self.recorders: list[Recorder] = []
        self.active: Recorder | None = None
        self.bytes = 0
        self.ignored = 0  # messages of data from a record channel that is not the active one
        self.wanted = True  # False: the sink wants nothing now, so no client is asked to record
        self._primary: Any = None
        bind = getattr(sink, "bind", None)
        if bind is not None:
            self.wanted = False
            bind(self)

    @property
    def enabled(self) -> bool:
        return self.sink is not None

    def set_wanted(self, wanted: bool) -> None:
        """The sink starts (or stops) wanting samples: the primary is asked (or told to stop)."""
        self.wanted = wanted
        self.primary_changed(self._primary)

    def attach(self, rec: Recorder, primary: Any) -> None:
        self.recorders.append(rec)
        self.primary_changed(primary)

    def detach(self, rec: Recorder, primary: Any) -> None:
        if rec in self.recorders:
            self.recorders.remove(rec)
        if self.active is rec:
            self.active = None
        self.primary_changed(primary)

    def primary_changed(self, primary: Any) -> None:
        """Give the recording to the primary's record channel (if it has one)."""
        self._primary = primary
        if not self.enabled:
            return
        want = next((r for r in self.recorders if r.client is primary), None) if self.wanted else None
        if want is self.active:
            return
        old, self.active = self.active, want
        if old is not None:
            old.record_stop()
        if want is not None:
            want.record_start()

    def samples(self, rec: Recorder, pcm: bytes) -> None:
        if rec is not self.active or self.sink is None:
            self.ignored += 1
            return
        self.sink.write(pcm)
        self.bytes += len(pcm)

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()
