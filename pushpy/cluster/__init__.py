"""Running several pushpy processes as one: the Redis backplane, shared sessions, workers.

See ``docs/scaling.md``.
"""
