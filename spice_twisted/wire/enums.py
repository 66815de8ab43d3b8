"""Every SPICE protocol number, once (values from spice-protocol enums.h / protocol.h)."""

from __future__ import annotations

from enum import IntEnum, IntFlag

SPICE_MAGIC = b"REDQ"
SPICE_VERSION_MAJOR = 2
SPICE_VERSION_MINOR = 2
TICKET_PUBKEY_BYTES = 162
TICKET_ENCRYPTED_BYTES = 128
MAX_PASSWORD_LENGTH = 60


class ChannelType(IntEnum):
    MAIN = 1
    DISPLAY = 2
    INPUTS = 3
    CURSOR = 4
    PLAYBACK = 5
    RECORD = 6
    TUNNEL = 7
    SMARTCARD = 8
    USBREDIR = 9
    PORT = 10
    WEBDAV = 11


class LinkError(IntEnum):
    OK = 0
    ERROR = 1
    INVALID_MAGIC = 2
    INVALID_DATA = 3
    VERSION_MISMATCH = 4
    NEED_SECURED = 5
    NEED_UNSECURED = 6
    PERMISSION_DENIED = 7
    BAD_CONNECTION_ID = 8
    CHANNEL_NOT_AVAILABLE = 9


class CommonCap(IntEnum):
    AUTH_SELECTION = 0
    AUTH_SPICE = 1
    AUTH_SASL = 2
    MINI_HEADER = 3


class MainCap(IntEnum):
    SEMI_SEAMLESS_MIGRATE = 0
    NAME_AND_UUID = 1
    AGENT_CONNECTED_TOKENS = 2
    SEAMLESS_MIGRATE = 3


class DisplayCap(IntEnum):
    SIZED_STREAM = 0
    MONITORS_CONFIG = 1
    COMPOSITE = 2
    A8_SURFACE = 3
    STREAM_REPORT = 4
    LZ4_COMPRESSION = 5
    PREF_COMPRESSION = 6
    GL_SCANOUT = 7
    MULTI_CODEC = 8
    CODEC_MJPEG = 9
    CODEC_VP8 = 10
    CODEC_H264 = 11
    PREF_VIDEO_CODEC_TYPE = 12
    CODEC_VP9 = 13
    CODEC_H265 = 14


class InputsCap(IntEnum):
    KEY_SCANCODE = 0


class AuthMechanism(IntEnum):
    SPICE = 1
    SASL = 2


class MouseMode(IntFlag):
    SERVER = 1
    CLIENT = 2


class LinkReason(IntEnum):
    """DISCONNECTING reasons reuse the link error numbers."""

    OK = 0
    ERROR = 1


# --- message ids ---------------------------------------------------------------------------


class MsgCommon(IntEnum):
    """Server -> client messages every channel understands."""

    MIGRATE = 1
    MIGRATE_DATA = 2
    SET_ACK = 3
    PING = 4
    WAIT_FOR_CHANNELS = 5
    DISCONNECTING = 6
    NOTIFY = 7
    LIST = 8


class MsgcCommon(IntEnum):
    """Client -> server messages every channel may send."""

    ACK_SYNC = 1
    ACK = 2
    PONG = 3
    MIGRATE_FLUSH_MARK = 4
    MIGRATE_DATA = 5
    DISCONNECTING = 6


class MsgMain(IntEnum):
    MIGRATE_BEGIN = 101
    MIGRATE_CANCEL = 102
    INIT = 103
    CHANNELS_LIST = 104
    MOUSE_MODE = 105
    MULTI_MEDIA_TIME = 106
    AGENT_CONNECTED = 107
    AGENT_DISCONNECTED = 108
    AGENT_DATA = 109
    AGENT_TOKEN = 110
    MIGRATE_SWITCH_HOST = 111
    MIGRATE_END = 112
    NAME = 113
    UUID = 114
    AGENT_CONNECTED_TOKENS = 115


class MsgcMain(IntEnum):
    CLIENT_INFO = 101
    MIGRATE_CONNECTED = 102
    MIGRATE_CONNECT_ERROR = 103
    ATTACH_CHANNELS = 104
    MOUSE_MODE_REQUEST = 105
    AGENT_START = 106
    AGENT_DATA = 107
    AGENT_TOKEN = 108


class MsgDisplay(IntEnum):
    MODE = 101
    MARK = 102
    RESET = 103
    COPY_BITS = 104
    INVAL_LIST = 105
    INVAL_ALL_PIXMAPS = 106
    INVAL_PALETTE = 107
    INVAL_ALL_PALETTES = 108
    STREAM_CREATE = 122
    STREAM_DATA = 123
    STREAM_CLIP = 124
    STREAM_DESTROY = 125
    STREAM_DESTROY_ALL = 126
    DRAW_FILL = 302
    DRAW_OPAQUE = 303
    DRAW_COPY = 304
    SURFACE_CREATE = 314
    SURFACE_DESTROY = 315
    STREAM_DATA_SIZED = 316
    MONITORS_CONFIG = 317
    STREAM_ACTIVATE_REPORT = 319


class MsgcDisplay(IntEnum):
    INIT = 101
    STREAM_REPORT = 102
    PREFERRED_COMPRESSION = 103
    GL_DRAW_DONE = 104
    PREFERRED_VIDEO_CODEC_TYPE = 105


class MsgInputs(IntEnum):
    INIT = 101
    KEY_MODIFIERS = 102
    MOUSE_MOTION_ACK = 111


class MsgcInputs(IntEnum):
    KEY_DOWN = 101
    KEY_UP = 102
    KEY_MODIFIERS = 103
    KEY_SCANCODE = 104
    MOUSE_MOTION = 111
    MOUSE_POSITION = 112
    MOUSE_PRESS = 113
    MOUSE_RELEASE = 114


class MsgCursor(IntEnum):
    INIT = 101
    RESET = 102
    SET = 103
    MOVE = 104
    HIDE = 105
    TRAIL = 106
    INVAL_ONE = 107
    INVAL_ALL = 108


# --- audio (playback and record channels) -----------------------------------------------------


class PlaybackCap(IntEnum):
    CELT_0_5_1 = 0
    VOLUME = 1
    LATENCY = 2
    OPUS = 3


class RecordCap(IntEnum):
    CELT_0_5_1 = 0
    VOLUME = 1
    OPUS = 2


class MsgPlayback(IntEnum):
    DATA = 101
    MODE = 102
    START = 103
    STOP = 104
    VOLUME = 105
    MUTE = 106
    LATENCY = 107


class MsgRecord(IntEnum):
    START = 101
    STOP = 102
    VOLUME = 103
    MUTE = 104


class MsgcRecord(IntEnum):
    DATA = 101
    MODE = 102
    START_MARK = 103


class AudioDataMode(IntEnum):
    INVALID = 0
    RAW = 1
    CELT_0_5_1 = 2
    OPUS = 3


class AudioFmt(IntEnum):
    INVALID = 0
    S16 = 1


# --- drawing ---------------------------------------------------------------------------------


class SurfaceFormat(IntEnum):
    FMT_1_A = 1
    FMT_8_A = 8
    FMT_16_555 = 16
    FMT_32_xRGB = 32
    FMT_16_565 = 80
    FMT_32_ARGB = 96


class SurfaceFlags(IntFlag):
    NONE = 0
    PRIMARY = 1
    STREAMING_MODE = 2


class VideoCodecType(IntEnum):
    """A stream's codec (STREAM_CREATE's codec_type, PREFERRED_VIDEO_CODEC_TYPE's list)."""

    MJPEG = 1
    VP8 = 2
    H264 = 3
    VP9 = 4
    H265 = 5


class StreamFlags(IntFlag):
    TOP_DOWN = 1  # rows of a frame run top to bottom (flags8 bit 0)


class ClipType(IntEnum):
    NONE = 0
    RECTS = 1


class ImageType(IntEnum):
    BITMAP = 0
    QUIC = 1
    LZ_PLT = 100
    LZ_RGB = 101
    GLZ_RGB = 102
    FROM_CACHE = 103
    SURFACE = 104
    JPEG = 105
    FROM_CACHE_LOSSLESS = 106
    ZLIB_GLZ_RGB = 107
    JPEG_ALPHA = 108
    LZ4 = 109


class ImageCompression(IntEnum):
    """SpiceImageCompression: what DISPLAY_PREFERRED_COMPRESSION asks for (enums.h)."""

    INVALID = 0
    OFF = 1
    AUTO_GLZ = 2
    AUTO_LZ = 3
    QUIC = 4
    GLZ = 5
    LZ = 6
    LZ4 = 7


class ResourceType(IntEnum):
    """What an INVAL_LIST entry names (spice-protocol SPICE_RES_TYPE_*)."""

    INVALID = 0
    PIXMAP = 1


class ImageFlags(IntFlag):
    NONE = 0
    CACHE_ME = 1
    HIGH_BITS_SET = 2
    CACHE_REPLACE_ME = 4


class BitmapFormat(IntEnum):
    INVALID = 0
    BIT1_BE = 1
    BIT1_LE = 2
    BIT4_BE = 3
    BIT4_LE = 4
    BIT8 = 5
    BIT16 = 6
    BIT24 = 7
    BIT32 = 8
    RGBA = 9
    BIT8_A = 10


class BitmapFlags(IntFlag):
    NONE = 0
    PAL_CACHE_ME = 1
    PAL_FROM_CACHE = 2
    TOP_DOWN = 4


class BrushType(IntEnum):
    """SpiceBrushType: what a DRAW_FILL paints with."""

    NONE = 0
    SOLID = 1
    PATTERN = 2


class Rop(IntFlag):
    """ROP descriptor bits; OP_PUT copies the source as is."""

    INVERS_SRC = 1
    INVERS_BRUSH = 2
    INVERS_DEST = 4
    OP_PUT = 8


class ScaleMode(IntEnum):
    INTERPOLATE = 0
    NEAREST = 1


class NotifySeverity(IntEnum):
    INFO = 0
    WARN = 1
    ERROR = 2


class NotifyVisibility(IntEnum):
    LOW = 0
    MEDIUM = 1
    HIGH = 2


# --- the agent protocol carried in MAIN AGENT_DATA (spice-protocol vd_agent.h) -------------
VD_AGENT_PROTOCOL = 1
VD_AGENT_MAX_DATA_SIZE = 2048  # bytes of one AGENT_DATA message body, header included


class AgentMsg(IntEnum):
    MOUSE_STATE = 1
    MONITORS_CONFIG = 2
    REPLY = 3
    CLIPBOARD = 4
    DISPLAY_CONFIG = 5
    ANNOUNCE_CAPABILITIES = 6
    CLIPBOARD_GRAB = 7
    CLIPBOARD_REQUEST = 8
    CLIPBOARD_RELEASE = 9
    FILE_XFER_START = 10
    FILE_XFER_STATUS = 11
    FILE_XFER_DATA = 12
    CLIENT_DISCONNECTED = 13
    MAX_CLIPBOARD = 14
    AUDIO_VOLUME_SYNC = 15
    GRAPHICS_DEVICE_INFO = 16


class AgentCap(IntEnum):
    MOUSE_STATE = 0
    MONITORS_CONFIG = 1
    REPLY = 2
    CLIPBOARD = 3
    DISPLAY_CONFIG = 4
    CLIPBOARD_BY_DEMAND = 5
    CLIPBOARD_SELECTION = 6
    SPARSE_MONITORS_CONFIG = 7
    GUEST_LINEEND_LF = 8
    GUEST_LINEEND_CRLF = 9
    MAX_CLIPBOARD = 10
    AUDIO_VOLUME_SYNC = 11
    MONITORS_CONFIG_POSITION = 12
    FILE_XFER_DISABLED = 13
    FILE_XFER_DETAILED_ERRORS = 14
    GRAPHICS_DEVICE_INFO = 15
    CLIPBOARD_NO_RELEASE_ON_REGRAB = 16
    CLIPBOARD_GRAB_SERIAL = 17


class ClipboardType(IntEnum):
    NONE = 0
    UTF8_TEXT = 1
    IMAGE_PNG = 2
    IMAGE_BMP = 3
    IMAGE_TIFF = 4
    IMAGE_JPG = 5
    FILE_LIST = 6


class ClipboardSelection(IntEnum):
    CLIPBOARD = 0
    PRIMARY = 1
    SECONDARY = 2


class FileXferStatus(IntEnum):
    CAN_SEND_DATA = 0
    CANCELLED = 1
    ERROR = 2
    SUCCESS = 3
    NOT_ENOUGH_SPACE = 4
    SESSION_LOCKED = 5
    VDAGENT_NOT_CONNECTED = 6
    DISABLED = 7


class AgentReply(IntEnum):
    SUCCESS = 1
    ERROR = 2


FILE_XFER_ERROR_GLIB_IO = 0  # VDAgentFileXferStatusError.error_type: error_code is a GIOErrorEnum
G_IO_ERROR_INVALID_FILENAME = 10  # GIOErrorEnum value spice-gtk words as "Invalid filename"

MESSAGE_IDS_SERVER: dict[ChannelType, type[IntEnum]] = {
    ChannelType.MAIN: MsgMain,
    ChannelType.DISPLAY: MsgDisplay,
    ChannelType.INPUTS: MsgInputs,
    ChannelType.CURSOR: MsgCursor,
}
MESSAGE_IDS_CLIENT: dict[ChannelType, type[IntEnum]] = {
    ChannelType.MAIN: MsgcMain,
    ChannelType.DISPLAY: MsgcDisplay,
    ChannelType.INPUTS: MsgcInputs,
}
