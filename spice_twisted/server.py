"""The SPICE server state: clients and their channels, the ticket, mouse mode, one render service."""

from __future__ import annotations

import time
import uuid as uuidlib
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import task
from twisted.logger import Logger

from .agent_policy import AgentHub, AgentPolicy
from .audio.playback import PlaybackService
from .audio.record import RecordService
from .audit import audit
from .channel_security import ChannelSecurity
from .channels.base import ChannelClient
from .channels.cursor import CursorChannelClient
from .channels.display import DisplayChannelClient, DisplaySettings
from .channels.inputs import InputsChannelClient
from .channels.keypool import LinkKeyPool
from .channels.main import VIEW_ONLY_NOTICE, MainChannelClient
from .channels.playback import PlaybackChannelClient
from .channels.record import RecordChannelClient
from .guard import Guard
from .inputs import InputOrigin, InputRouter
from .limits import Limits
from .render.cursor import CursorService
from .render.frames import DEFAULT_MAX_FPS
from .render.service import RenderService
from .session import Client, ClientRegistry
from .sources.audio import AudioSource
from .sources.audio_spec import open_record_sink
from .sources.base import DisplaySource
from .wire.enums import ChannelType, CommonCap, DisplayCap, InputsCap, LinkError, MouseMode, PlaybackCap, RecordCap
from .wire.link import LinkRequest
from .wire.ticket import Ticket

CHANNEL_CLASSES: dict[ChannelType, type[ChannelClient]] = {
    ChannelType.MAIN: MainChannelClient,
    ChannelType.DISPLAY: DisplayChannelClient,
    ChannelType.INPUTS: InputsChannelClient,
    ChannelType.CURSOR: CursorChannelClient,
    ChannelType.PLAYBACK: PlaybackChannelClient,
    ChannelType.RECORD: RecordChannelClient,
}

# A view-only client that tries to drive hears why nothing happens at most this often (seconds).
VIEW_ONLY_INPUT_NOTICE_EVERY = 30.0

if TYPE_CHECKING:
    from .audio.opus import OpusDecoder


class SpiceServer:
    log = Logger()
    new_clients_view_only = False  # --view-only: every new client starts view-only
    _ticket_timer: Any = None  # logs "ticket expired" when the ticket's time is up

    def __init__(
        self,
        source: DisplaySource,
        ticket: Ticket,
        reactor: Any,
        mini_header: bool = True,
        name: str = "spice-twisted",
        allow_multiple_clients: bool = True,
        stall_timeout: float = 30.0,
        stats_interval: float = 0.0,
        ping_interval: float = 10.0,
        max_fps: float = DEFAULT_MAX_FPS,
        image_compression: str = "auto_glz",
        jpeg_wan_compression: str = "auto",
        zlib_glz_wan_compression: str = "auto",
        limits: Limits | None = None,
        channel_security: ChannelSecurity | None = None,
        view_ticket: Ticket | None = None,
        agent_policy: AgentPolicy | None = None,
    ) -> None:
        self.source = source
        self.ticket = ticket
        self.view_ticket = view_ticket  # --view-only-password-file: clients with it only watch
        self.reactor = reactor
        self.limits = limits or Limits()
        self.guard = Guard(self.limits, reactor)
        self.channel_security = channel_security or ChannelSecurity()
        self.mini_header = mini_header
        self.name = name
        self.allow_multiple_clients = allow_multiple_clients
        self.stall_timeout = stall_timeout
        self.stats_interval = stats_interval
        self.ping_interval = ping_interval
        self.uuid = uuidlib.uuid4()
        self.link_keys = LinkKeyPool(reactor)
        self.render = RenderService(source.width, source.height, reactor, max_fps=max_fps)
        self.display_settings = DisplaySettings(
            image_compression=image_compression,
            jpeg_wan_compression=jpeg_wan_compression,
            zlib_glz_wan_compression=zlib_glz_wan_compression,
        )
        self.cursor = CursorService()
        self.sessions = ClientRegistry()
        self.clients: dict[int, Client] = self.sessions.clients  # by session id, oldest first
        self.inputs = InputRouter(source, self.cursor, self.sessions, self.render, policy=self)
        # Sound: the playback stream every client hears, and the primary's microphone.
        self.playback = PlaybackService(self.mm_time)
        self.record_opus: Callable[[], OpusDecoder] | None = None  # None: clients record raw PCM only
        self.record = RecordService(None)
        self.audio_source: AudioSource | None = getattr(source, "sounds", None)
        # The built-in agent (clipboard, resize, files) and its multi-client policy.
        self.agent_hub = AgentHub(agent_policy or AgentPolicy(), source.desktop_agent(), lambda: self.primary)
        self.supported_mouse_modes = MouseMode.SERVER | (MouseMode.CLIENT if source.accepts_absolute else 0)
        # Client mode (absolute positions) when the source takes them: no pointer lag for anyone.
        self.mouse_mode = MouseMode.CLIENT if source.accepts_absolute else MouseMode.SERVER
        self.started = time.monotonic()
        self.link_refusals: Counter[str] = Counter()
        self.stalled_disconnects = 0
        self.unanswered_disconnects = 0
        self.slot_evictions = 0
        self._loops: list[task.LoopingCall] = []
        # Where we listen (filled in by service.py); the admin site and .vv files read it.
        self.endpoints: dict[str, Any] = {"listen": "127.0.0.1", "port": 0, "tls_port": 0, "admin_port": 0}
        self.ca_pem: str | None = None
        self.ticket_required = False  # a public address or a real desktop (options.py): the ticket may not be cleared

    def start(self) -> None:
        self.render.start()
        self.link_keys.start()
        self.source.notify_clients = self.notify_all
        self.source.report_locks = self.inputs.source_locks
        self.source.start(self.render, self.cursor)
        self.agent_hub.start()
        if self.audio_source is not None:
            self.audio_source.start(self.playback, self.reactor)
        self.every(1.0, self.tick_second)

    def every(self, interval: float, fn: Any) -> None:
        """Call `fn` every `interval` seconds from now until the server stops."""
        loop = task.LoopingCall(fn)
        loop.clock = self.reactor
        loop.start(interval, now=False)
        self._loops.append(loop)

    def stop(self) -> None:
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self.source.stop()
        if self.audio_source is not None:
            self.audio_source.stop()
        for client in list(self.clients.values()):
            self.disconnect_client(client, "server stopping")
        self.render.stop()
        self.link_keys.stop()
        self.record.close()

    def configure_audio(self, source: AudioSource | None, record_to: str | None, compression: bool = True) -> None:
        """--audio-source (None keeps the display source's own sounds), --record-to and
        --playback-compression (off: every client gets raw PCM)."""
        if source is not None:
            self.audio_source = source
        if record_to:
            self.record = RecordService(open_record_sink(record_to, self.reactor))
        elif self.audio_source is not None and (sink := self.audio_source.record_sink()) is not None:
            self.record = RecordService(sink)  # a VM's microphone: the primary's goes upstream
        from .audio.opus import opus_decoder_factory, opus_encoder_factory

        # A microphone in Opus costs us one decode per 10 ms and saves the client's uplink
        # 192 kB/s, whatever --playback-compression says of the downlink.
        self.record_opus = opus_decoder_factory()
        if compression:
            self.playback.make_opus = opus_encoder_factory()

    def tick_second(self) -> None:
        self.check_stalled()
        self.check_liveness()
        self.guard.tick()
        for client in self.clients.values():
            for cc in client.channels:
                cc.sample_rate()

    def check_stalled(self) -> None:
        """Disconnect clients whose pipes made no progress for stall_timeout (they stopped reading)."""
        now = time.monotonic()
        for client in list(self.clients.values()):
            for cc in list(client.channels):
                if cc.stalled_for(now) > self.stall_timeout:
                    self.stalled_disconnects += 1
                    cc.abort(f"client stopped reading for {self.stall_timeout:g}s")
                    self.disconnect_client(client, "a channel stalled")
                    break

    def check_liveness(self) -> None:
        """Drop clients whose main channel answered no PING for --ping-timeout, whatever its
        buffers: a client that links and never reads would otherwise hold its slot for ever
        (the stall clock runs only once the kernel's buffers are full)."""
        timeout = self.limits.ping_timeout
        now = time.monotonic()
        for client in list(self.clients.values()):
            main = client.main
            if main is None or not main.connected:
                continue
            owed = main.liveness(now, timeout)
            if timeout and owed > timeout:
                self.unanswered_disconnects += 1
                reason = f"no answer to a PING for {timeout:g}s (--ping-timeout)"
                self.disconnect_client(client, reason)
                for cc in list(client.channels):
                    cc.abort(reason)  # it does not read: a polite close would wait on it

    # --- policy -------------------------------------------------------------------------
    @property
    def primary(self) -> Client | None:
        """The longest-connected client: single-user things (agent, recording) belong to it."""
        return self.sessions.primary

    def set_ticket(self, password: bytes | None, expires_in: float | None, by: str | None = None) -> None:
        """Set (or clear, with None) the password; expires_in seconds from now (0 = now)."""
        if password is None and self.ticket_required:
            raise ValueError("this server needs a ticket (public address or real desktop, see --disable-ticketing): it cannot be cleared")
        if password is None and self.view_ticket is not None:
            raise ValueError("the view-only password needs a ticket beside it: it cannot be cleared")
        if password is not None and self.view_ticket is not None and password == self.view_ticket.password:
            raise ValueError("that is the view-only password: choose another")
        same = password is not None and password == self.ticket.password
        expires = time.time() + expires_in if expires_in is not None else None
        self.ticket = Ticket(password, expires)  # raises ValueError for a ticket no client can send
        if password is None:
            what = "ticket cleared (ticketing disabled: clients connect without a password)"
        else:
            when = "never expires" if expires_in is None else "expires now" if expires_in == 0 else f"expires in {expires_in:g}s"
            what = f"ticket expiry changed: {when}" if same else f"ticket set: a new password, {when}"
        self.log.info("{what}{by}", what=what, by=f" (by {by})" if by else "")
        action = "ticket_cleared" if password is None else "ticket_expiry" if same else "ticket_set"
        audit("admin", action=action, expires=expires, by=by or "local")
        self.watch_ticket_expiry(by)

    def watch_ticket_expiry(self, by: str | None = None) -> None:
        """Log the moment the current ticket expires (the password itself is never logged)."""
        self.stop_watching_ticket()
        ticket = self.ticket
        if ticket.password is None or ticket.expires is None:
            return

        def expired() -> None:
            self._ticket_timer = None
            if self.ticket is ticket:
                self.log.info(
                    "ticket expired: new connections are refused until a new ticket is set{by}", by=f" (it was set by {by})" if by else ""
                )

        self._ticket_timer = self.reactor.callLater(max(ticket.expires - time.time(), 0.0), expired)

    def stop_watching_ticket(self) -> None:
        if self._ticket_timer is not None and self._ticket_timer.active():
            self._ticket_timer.cancel()
        self._ticket_timer = None

    def disconnect(self, session_id: int, by: str | None = None) -> None:
        why = f"disconnected by {by}" if by else "disconnected by the admin"
        audit("admin", action="disconnect", session=f"{session_id:#x}", by=by or "local")
        self.disconnect_client(self.clients[session_id], "disconnected by the admin", why=why)

    def set_view_only(self, session_id: int, view_only: bool, by: str | None = None) -> None:
        """A view-only client sees everything; its input is dropped (and counted)."""
        client = self.clients[session_id]
        if not view_only and client.view_only_locked:
            raise ValueError("this client authenticated with the view-only password: it stays view-only")
        client.view_only = bool(view_only)
        if client.main is not None and client.main.connected:
            client.main.notify(VIEW_ONLY_NOTICE if view_only else "you may drive now: view-only is off", severity=0)
        client.view_only_told = None
        audit("admin", action="view_only", session=f"{session_id:#x}", view_only=bool(view_only), by=by or "local")
        what = "is view-only now" if view_only else "may drive now (view-only off)"
        self.log.info("client {sid:#x} {what}{by}", sid=session_id, what=what, by=f" (by {by})" if by else "")

    def set_primary(self, session_id: int, by: str | None = None) -> None:
        """Hand control to another client: it becomes the primary (resize, the recording),
        the others keep their order of seniority behind it."""
        client = self.clients[session_id]
        if client is self.primary:
            return
        self.sessions.promote(session_id)
        audit("admin", action="primary", session=f"{session_id:#x}", by=by or "local")
        self.log.info("client {sid:#x} is now the primary{by}", sid=session_id, by=f" (by {by})" if by else "")
        self.record.primary_changed(client)
        self.agent_hub.primary_changed()
        if client.main is not None and client.main.connected:
            client.main.notify("you have control now (the primary client): your window size sets the desktop's", severity=0)

    def set_allow_multiple_clients(self, allow: bool, by: str | None = None) -> None:
        self.allow_multiple_clients = bool(allow)
        audit("admin", action="allow_multiple_clients", allow=bool(allow), by=by or "local")
        what = "multiple clients allowed" if allow else "multiple clients off: the next client replaces the connected ones"
        self.log.info("{what}{by}", what=what, by=f" (by {by})" if by else "")

    def mm_time(self) -> int:
        """The multimedia clock (ms) that clients schedule stream frames against."""
        return int((time.monotonic() - self.started) * 1000) & 0xFFFFFFFF

    def source_notice(self) -> str | None:
        """What the source has to say to every client that joins (a VM unavailable, ...)."""
        return self.source.notice

    # --- link decisions ---------------------------------------------------------------
    def common_caps(self) -> frozenset[int]:
        caps = {CommonCap.AUTH_SELECTION, CommonCap.AUTH_SPICE}
        if self.mini_header:
            caps.add(CommonCap.MINI_HEADER)
        return frozenset(caps)

    def channel_caps(self, request: LinkRequest) -> frozenset[int]:
        if request.channel_type == ChannelType.INPUTS:
            return frozenset({InputsCap.KEY_SCANCODE})
        if request.channel_type == ChannelType.DISPLAY:
            return frozenset({DisplayCap.PREF_COMPRESSION})  # spice-gtk then sends its preferred compression
        if request.channel_type == ChannelType.PLAYBACK:
            return frozenset({PlaybackCap.VOLUME, PlaybackCap.LATENCY} | ({PlaybackCap.OPUS} if self.playback.opus_available else set()))
        if request.channel_type == ChannelType.RECORD:
            return frozenset({RecordCap.VOLUME} | ({RecordCap.OPUS} if self.record_opus is not None else set()))
        return frozenset()

    def channel_list(self) -> list[tuple[int, int]]:
        return [(int(t), 0) for t in CHANNEL_CLASSES if t != ChannelType.MAIN]

    def check_link(self, request: LinkRequest, secure: bool, view_only: bool = False) -> LinkError | None:
        refusal = self.link_refusal(request, secure, view_only)
        return refusal[0] if refusal is not None else None

    def link_refusal(
        self, request: LinkRequest, secure: bool, view_only: bool | None = False, host: str = ""
    ) -> tuple[LinkError, str] | None:
        """Why this link may not go on, or None. `view_only`: its ticket was the view-only one
        (None: its ticket is not checked yet). `host`: where it comes from."""
        error = self.channel_security.check(request.channel_type, secure)
        if error is not None:
            return (
                error,
                f"channel {request.channel_type} is {'TLS' if error == LinkError.NEED_SECURED else 'plain'}-only (--{'tls' if error == LinkError.NEED_SECURED else 'plaintext'}-channel)",
            )
        ctype = request.known_channel
        if ctype not in CHANNEL_CLASSES or request.channel_id != 0:
            return LinkError.CHANNEL_NOT_AVAILABLE, f"no channel {request.channel_type}:{request.channel_id}"
        if ctype == ChannelType.MAIN:
            return self.client_slot(host, view_only)[0]
        client = self.clients.get(request.connection_id)
        if client is None:
            return LinkError.BAD_CONNECTION_ID, f"no session {request.connection_id:#x}"
        if len(client.channels) >= self.limits.max_channels_per_client:
            return (
                LinkError.ERROR,
                f"session {request.connection_id:#x} has {len(client.channels)} channels already (--max-channels-per-client)",
            )
        if view_only and not client.view_only_locked:
            return LinkError.PERMISSION_DENIED, "the view-only password cannot join a session opened with the full password"
        return None

    def client_slot(self, host: str, view_only: bool | None) -> tuple[tuple[LinkError, str] | None, Client | None]:
        """(refusal, None) if a new client from `host` does not fit under --max-clients and
        --max-clients-per-address, else (None, the client it must replace, or None).

        A client with the full ticket is never locked out by view-only-ticket clients: when
        the slots it would need are taken, it replaces one of them. The one to go is a
        view-only-ticket client that never answered a PING (it proved nothing), else the
        youngest: it has watched the least, and whoever keeps refilling the slots is always
        the youngest, so long-watching viewers do not pay for the churn. With `view_only`
        None (the ticket is not checked yet) a link that might make room passes for now.
        """
        if not self.allow_multiple_clients:
            return None, None
        per_address = self.limits.max_clients_per_address
        same = self.sessions.from_address(host)
        if per_address and len(same) >= per_address:
            refusal = (LinkError.ERROR, f"{len(same)} clients from {host} connected already (--max-clients-per-address)")
            pool = same
        elif len(self.clients) >= self.limits.max_clients:
            refusal = (LinkError.ERROR, f"{len(self.clients)} clients connected already (--max-clients)")
            pool = list(self.clients.values())
        else:
            return None, None
        candidates = [c for c in pool if c.view_only_locked]
        if view_only or self.view_ticket is None or not candidates:
            return refusal, None
        if view_only is None:
            return None, None
        return None, min(candidates, key=lambda c: (c.live, -c.connected_since))

    def view_only_input(self, client: Client) -> None:
        """A view-only client sent input: tell it why nothing happens (not once per motion)."""
        now = time.monotonic()
        if client.view_only_told is not None and now - client.view_only_told < VIEW_ONLY_INPUT_NOTICE_EVERY:
            return
        client.view_only_told = now
        if client.main is not None and client.main.connected:
            client.main.notify(f"{VIEW_ONLY_NOTICE} (input dropped)", severity=0)

    def authenticate(self, password: bytes | None) -> str | None:
        """Which ticket a decrypted password is: "view-only", "full", or None (refused)."""
        view = self.view_ticket is not None and not self.ticket.expired() and self.view_ticket.accepts(password)
        full = self.ticket.accepts(password)  # both are always compared
        if view:
            return "view-only"
        return "full" if full else None

    def stats_link_refused(self, error: LinkError) -> None:
        self.link_refusals[error.name] += 1

    # --- clients and channels -----------------------------------------------------------
    def create_channel_client(
        self, request: LinkRequest, mini_header: bool, secure: bool, peer: str, view_only_ticket: bool = False, host: str = ""
    ) -> ChannelClient:
        ctype = ChannelType(request.channel_type)
        if ctype == ChannelType.MAIN:
            refusal, victim = self.client_slot(host, view_only_ticket)
            if refusal is not None:
                raise ValueError(refusal[1])  # link_refusal said yes a moment ago: only a bug gets here
            if victim is not None:
                self.slot_evictions += 1
                self.disconnect_client(
                    victim,
                    "a client with the full password needed the slot; view-only clients make room",
                    why=f"replaced by a client with the full password from {host} (no free client slot)",
                )
            sid = request.connection_id
            if not sid or sid in self.clients:
                sid = self.sessions.new_session_id()
            if not self.allow_multiple_clients:
                for old in list(self.clients.values()):
                    self.disconnect_client(old, "replaced by a new client", why="replaced by a new client (multiple clients off)")
            view_only = self.new_clients_view_only or view_only_ticket
            client = Client(
                sid,
                peer,
                host=host,
                colour=self.sessions.next_colour(),
                view_only=view_only,
                view_only_locked=view_only_ticket,
            )
            self.sessions.add(client)
            vo = " (view-only password)" if view_only_ticket else " (view-only)" if client.view_only else ""
            self.log.info("client {sid:#x} connected from {peer}{vo}", sid=sid, peer=peer, vo=vo)
            audit("session_start", session=f"{sid:#x}", peer=peer, view_only=client.view_only, view_only_ticket=view_only_ticket)
        else:
            client = self.clients[request.connection_id]
        cc = self._channel_client(ctype, client, request, mini_header, secure)
        client.channels.append(cc)
        if isinstance(cc, MainChannelClient):
            client.main = cc
        return cc

    def _channel_client(self, ctype: ChannelType, client: Client, request: LinkRequest, mini: bool, secure: bool) -> ChannelClient:
        """Each channel client gets the collaborators it works with, and nothing else."""
        if ctype == ChannelType.MAIN:
            return MainChannelClient(self, client, request, mini, secure, session=self)
        if ctype == ChannelType.DISPLAY:
            cc = DisplayChannelClient(self, client, request, mini, secure, render=self.render, settings=self.display_settings)
            cc.link_meter = client.link  # its ACKs measure the client's send rate
            return cc
        if ctype == ChannelType.INPUTS:
            return InputsChannelClient(self, client, request, mini, secure, inputs=self.inputs)
        if ctype == ChannelType.PLAYBACK:
            return PlaybackChannelClient(self, client, request, mini, secure, playback=self.playback)
        if ctype == ChannelType.RECORD:
            return RecordChannelClient(self, client, request, mini, secure, record=self.record, session=self, opus=self.record_opus)
        return CursorChannelClient(self, client, request, mini, secure, cursor=self.cursor)

    def channel_closed(self, cc: ChannelClient) -> None:
        if cc in cc.client.channels:
            cc.client.channels.remove(cc)

    def main_channel_closed(self, client: Client) -> None:
        """Closing a client's main channel closes all its channels."""
        self._forget(client, "its main channel closed")
        for cc in list(client.channels):
            cc.close("main channel closed")

    def _forget(self, client: Client, why: str) -> None:
        was_primary = self.primary is client
        if not self.sessions.remove(client):
            return
        self.log.info("client {sid:#x} disconnected: {why}", sid=client.session_id, why=why)
        audit("session_end", session=f"{client.session_id:#x}", reason=why)
        self.source.client_gone(InputOrigin(client.session_id, client.colour))
        if was_primary and self.primary is not None:
            self.log.info("client {sid:#x} is now the primary", sid=self.primary.session_id)
        if was_primary:
            self.record.primary_changed(self.primary)  # the recording moves with the primary
            self.agent_hub.primary_changed()

    def notify_all(self, text: str) -> None:
        """A NOTIFY to every connected client (the source's news: a display lost, back)."""
        for client in self.clients.values():
            if client.main is not None and client.main.connected:
                client.main.notify(text)

    def disconnect_client(self, client: Client, reason: str, why: str | None = None) -> None:
        """Tell the client why (a NOTIFY on its main channel), then close all its channels.
        `why` is what the log says, when it says more than the client is told."""
        self._forget(client, why or reason)
        if client.main is not None and client.main.connected:
            client.main.notify(f"disconnected: {reason}")
        for cc in list(client.channels):
            cc.close(reason)

    # --- mouse ------------------------------------------------------------------------
    def request_mouse_mode(self, mode: MouseMode | None, client: Client) -> None:
        """Honour a supported mode from a client that may drive, and tell every client."""
        if mode is not None and mode & self.supported_mouse_modes and not client.view_only and mode != self.mouse_mode:
            self.mouse_mode = mode
            self.log.info("mouse mode {mode} (asked by {sid:#x})", mode=mode.name, sid=client.session_id)
            targets = list(self.clients.values())
        else:
            targets = [client]  # nothing changed: only the asker hears the current mode
        for c in targets:
            if c.main is not None:
                c.main.send_mouse_mode()
