"""`twistd spice`: the SPICE server as a twistd plugin (no __init__.py in this folder, on purpose)."""

from twisted.application.service import ServiceMaker

spice = ServiceMaker(
    "spice-twisted",
    "spice_twisted.tap",
    "Serve one display to many SPICE clients.",
    "spice",
)
