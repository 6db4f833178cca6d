"""The ``twistd pushpy`` plugin; the options and service live in :mod:`pushpy.tap`."""

from twisted.application.service import ServiceMaker

pushpy = ServiceMaker(
    "pushpy",
    "pushpy.tap",
    "A Comet (HTTP server-push) server speaking the Pushlet 2.0.4 protocol.",
    "pushpy",
)
