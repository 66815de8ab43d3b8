"""The record channel: the client's microphone, heard only while its client is the primary.

The record service decides (START when this client becomes the primary, STOP when it
stops being it). DATA carries raw 16-bit PCM, or Opus packets when RECORD_CAP_OPUS was offered
(PyAV decodes them: audio/opus.py) and the client's MODE says Opus; a client that records
in any other mode is told why and its samples are not used. An Opus packet that does not
decode closes the channel (bad input: that client only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..audio.opus import OpusDecoder
from ..audio.playback import CHANNELS, FREQUENCY
from ..audio.record import RecordService
from ..wire.enums import AudioDataMode, AudioFmt, ChannelType
from ..wire.link import LinkRequest
from .base import ChannelClient, ChannelHost

if TYPE_CHECKING:
    from .interfaces import ClientView


class RecordSession(Protocol):
    @property
    def primary(self) -> ClientView | None: ...


class RecordChannelClient(ChannelClient):
    channel_type = ChannelType.RECORD

    def __init__(
        self,
        host: ChannelHost,
        client: ClientView,
        request: LinkRequest,
        mini_header: bool,
        secure: bool,
        record: RecordService,
        session: RecordSession,
        opus: Callable[[], OpusDecoder] | None = None,
    ) -> None:
        self.record, self.session = record, session
        self.make_opus = opus  # None: RECORD_CAP_OPUS was not offered
        self.decoder: OpusDecoder | None = None
        self.recording = False
        self.mode = AudioDataMode.RAW
        self.bytes_received = 0
        super().__init__(host, client, request, mini_header, secure)

    def on_connected(self) -> None:
        self.record.attach(self, self.session.primary)

    def record_start(self) -> None:
        self.recording = True
        self.send("START", {"channels": CHANNELS, "format": AudioFmt.S16, "frequency": FREQUENCY})

    def record_stop(self) -> None:
        if self.recording:
            self.recording = False
            self.send("STOP")

    def audio_stats(self) -> dict[str, object]:
        return {"mode": self.mode.name.lower(), "recording": self.recording, "bytes_received": self.bytes_received}

    def handle_MODE(self, fields: dict[str, Any]) -> None:
        mode = fields["mode"]
        if mode == AudioDataMode.OPUS and self.make_opus is not None:
            self.decoder = self.make_opus()  # a fresh stream: a fresh decoder
        elif mode != AudioDataMode.RAW:
            self.notify(f"record mode {mode} is not supported: send raw PCM", severity=1)
        self.mode = AudioDataMode(mode) if mode in AudioDataMode._value2member_map_ else AudioDataMode.INVALID

    def handle_START_MARK(self, fields: dict[str, Any]) -> None:
        pass  # the time the client started capturing: nothing to align it with here

    def handle_DATA(self, fields: dict[str, Any]) -> None:
        data = fields["data"]
        self.bytes_received += len(data)
        if self.mode == AudioDataMode.RAW:
            self.record.samples(self, data)
        elif self.mode == AudioDataMode.OPUS and self.decoder is not None:
            try:
                pcm = self.decoder.decode(data)
            except ValueError as exc:
                self.abort(f"record DATA: {exc}")
                return
            self.record.samples(self, pcm)

    def on_disconnected(self) -> None:
        self.record.detach(self, self.session.primary)
