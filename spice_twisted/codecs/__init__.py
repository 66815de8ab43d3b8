"""Image encoders behind the encode-once cache."""
