"""spice-twisted: a multi-client SPICE server on Twisted."""

__version__ = "0.1.0"
