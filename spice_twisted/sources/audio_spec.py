"""What `--audio-source` and `--record-to` name, made into a source or a sink: the one place
that knows every kind (a WAV file, a PulseAudio or PipeWire monitor, none)."""

from __future__ import annotations

from typing import Any

from ..audio.record import RecordSink, WavSink
from .audio import AudioSource, NoSound, WavLoop
from .audio_monitor import MonitorSource, PlayerSink, parse_spec


def audio_source(spec: str) -> AudioSource:
    """What `--audio-source SPEC` names: none, pulse[:MONITOR], pipewire[:TARGET] or a WAV
    file. Raises ValueError with a message for the user."""
    if spec == "none":
        return NoSound()
    monitor = parse_spec(spec)
    if monitor is not None:
        return MonitorSource(*monitor)
    return WavLoop(spec)


def open_record_sink(spec: str, reactor: Any) -> RecordSink:
    """What `--record-to SPEC` names: pulse[:SINK], pipewire[:TARGET] or a WAV file."""
    monitor = parse_spec(spec)
    if monitor is not None:
        return PlayerSink(*monitor, reactor)
    return WavSink(spec)
