"""The sans-IO core: no Twisted import, no clock, no sockets.

Every function that depends on time takes ``now`` (seconds since the epoch,
a float) from its caller.
"""
