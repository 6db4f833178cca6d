"""The Twisted layer: resources, data channels, timers."""
