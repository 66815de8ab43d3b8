"""The playback channel: every client hears the one stream of the playback service.

On connect: MODE (raw, or Opus when the client has PLAYBACK_CAP_OPUS and the server an
encoder), LATENCY when the client has the cap, VOLUME and MUTE once set, START when the
stream plays. Each frame's DATA is the service's shared (head, payload) for this
client's mode, never copied per client. At most MAX_QUEUED_FRAMES wait in the pipe: a
client that reads slower than the stream plays drops whole frames (counted), and
the others never notice.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from ..audio.playback import CHANNELS, FRAME_SECONDS, FREQUENCY, AudioFrame, PlaybackService
from ..wire.enums import AudioDataMode, AudioFmt, ChannelType, MsgPlayback, PlaybackCap
from ..wire.link import LinkRequest
from .base import ChannelClient, ChannelHost, Parts
from .pipe import PipeItem

if TYPE_CHECKING:
    from .interfaces import ClientView

MAX_QUEUED_FRAMES = 20  # 200 ms of sound: more would only play late
LATENCY_MS = 100  # what we tell a client with PLAYBACK_CAP_LATENCY to buffer
# The kernel's send buffer for a playback socket. Left to autotuning it grows to megabytes:
# seconds of sound that a slow client would play late instead of dropping.
SEND_BUFFER = 64 * 1024


class AudioItem(PipeItem):
    """One DATA message: a small head and the frame's payload, shared by every pipe."""

    __slots__ = ("tail",)

    def __init__(self, head: bytes, tail: bytes) -> None:
        super().__init__(MsgPlayback.DATA, head)
        self.tail = tail
        self.nbytes += len(tail)


class PlaybackChannelClient(ChannelClient):
    channel_type = ChannelType.PLAYBACK

    def __init__(
        self, host: ChannelHost, client: ClientView, request: LinkRequest, mini_header: bool, secure: bool, playback: PlaybackService
    ) -> None:
        self.playback = playback
        caps = request.channel_caps
        self.mode = AudioDataMode.OPUS if PlaybackCap.OPUS in caps and playback.opus_available else AudioDataMode.RAW
        self.frames_sent = 0
        self.frames_dropped = 0
        self.frames_queued = 0
        super().__init__(host, client, request, mini_header, secure)

    def on_connected(self) -> None:
        self._bound_send_buffer()
        pb = self.playback
        self.send("MODE", {"time": self.client_time(), "mode": self.mode, "data": b""})
        if PlaybackCap.LATENCY in self.request.channel_caps:
            self.send("LATENCY", {"latency_ms": LATENCY_MS})
        if pb.volume is not None:
            self.audio_volume(pb.volume)
        if pb.mute is not None:
            self.audio_mute(pb.mute)
        if pb.active:
            self.audio_start()
        pb.subscribe(self)

    def _bound_send_buffer(self) -> None:
        handle = getattr(self.transport, "getHandle", lambda: None)()
        setsockopt = getattr(handle, "setsockopt", None)
        if setsockopt is not None:  # a TCP socket (also under TLS); not a test's fake transport
            try:
                setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            except OSError as exc:
                self.log.info("{cc}: send buffer left as it is: {exc}", cc=self, exc=exc)

    def client_time(self) -> int:
        return self.playback.clock()

    # --- what the service tells us ------------------------------------------------------
    def audio_start(self) -> None:
        self.send("START", {"channels": CHANNELS, "format": AudioFmt.S16, "frequency": FREQUENCY, "time": self.client_time()})

    def audio_stop(self) -> None:
        self.send("STOP")

    def audio_volume(self, levels: list[int]) -> None:
        if PlaybackCap.VOLUME in self.request.channel_caps:
            self.send("VOLUME", {"volume": levels})

    def audio_mute(self, mute: bool) -> None:
        if PlaybackCap.VOLUME in self.request.channel_caps:
            self.send("MUTE", {"mute": int(mute)})

    def audio_frame(self, frame: AudioFrame) -> None:
        if not self.connected:
            return
        if self.frames_queued >= MAX_QUEUED_FRAMES:
            self.frames_dropped += 1
            return
        self.frames_queued += 1
        self.queue(AudioItem(*frame.bodies[self.mode]))

    def audio_stats(self) -> dict[str, object]:
        return {
            "mode": self.mode.name.lower(),
            "frames_sent": self.frames_sent,
            "frames_dropped": self.frames_dropped,
            "frames_queued": self.frames_queued,
            "queued_ms": round(self.frames_queued * FRAME_SECONDS * 1000),  # the sound waiting here, not yet sent
            "latency_ms": LATENCY_MS if PlaybackCap.LATENCY in self.request.channel_caps else None,
        }

    # --- the pipe -----------------------------------------------------------------------
    def marshal(self, item: PipeItem) -> Parts | None:
        if isinstance(item, AudioItem):
            return [item.data, item.tail]
        return [item.data]

    def item_sent(self, item: PipeItem) -> None:
        if isinstance(item, AudioItem):
            self.frames_queued -= 1
            self.frames_sent += 1

    def on_disconnected(self) -> None:
        self.playback.unsubscribe(self)
        self.frames_queued = 0
