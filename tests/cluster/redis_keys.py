"""Redis from a test without the reactor: one command, and deleting a test's keys.

:func:`delete_prefix` deletes the keys under one prefix, by SCAN (never FLUSHALL).
"""

from __future__ import annotations

import socket


def _command(sock: socket.socket, *args: str) -> None:
    sock.sendall(b"".join([f"*{len(args)}\r\n".encode()] +
                          [f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args]))


def _reply(reader) -> object:
    line = reader.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind in (b"+", b"-"):
        return rest.decode()
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = reader.read(size + 2)[:-2]
        return data.decode()
    if kind == b"*":
        return [_reply(reader) for _ in range(int(rest))]
    raise ValueError(line)


def delete_prefix(prefix: str, port: int = 6379) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        reader = sock.makefile("rb")
        cursor = "0"
        while True:
            _command(sock, "SCAN", cursor, "MATCH", f"{prefix}:*", "COUNT", "1000")
            cursor, keys = _reply(reader)
            if keys:
                _command(sock, "DEL", *keys)
                _reply(reader)
            if cursor == "0":
                break


def command(*args: str, port: int = 6379) -> object:
    """Run one command on the Redis at ``127.0.0.1:port``; its reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        _command(sock, *args)
        return _reply(sock.makefile("rb"))
