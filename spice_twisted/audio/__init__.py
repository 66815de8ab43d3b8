"""Sound: one playback stream fanned out to every client, recording from the primary."""
