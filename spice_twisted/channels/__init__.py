"""One Twisted protocol per SPICE channel type, on a common channel-client base."""
