"""Real pushpy processes on one Redis, and plain blocking HTTP clients for them.

:class:`Node` runs ``twistd -n pushpy`` in a subprocess on a free loopback
port with the Redis backplane; :class:`RedisServer` runs a private
``redis-server`` (for restart tests).  Clients use ``http.client`` so requests
can go to any node in turn, as behind a round-robin load balancer.
"""

from __future__ import annotations

import contextlib
import functools
import http.client as httplib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/0"
API_KEY = "cluster-test-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], Any], timeout: float = 10.0, step: float = 0.05) -> Any:
    """Poll ``check()`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(step)


def unique_prefix() -> str:
    return "pushpy-test-" + secrets.token_hex(4)


def http(port: int, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    connection = httplib.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class Node:
    """One ``twistd pushpy`` process on the Redis backplane."""

    def __init__(self, tmp: Path, prefix: str, redis_url: str = REDIS_URL, *,
                 port: int | None = None, settings: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.prefix = prefix
        self.tmp = tmp
        options = {"backplane": redis_url, "backplane.prefix": prefix, "api.key": API_KEY,
                   "queue.read.timeout.millis": "1000", "pull.refresh.wait.min.millis": "0",
                   "pull.refresh.wait.max.millis": "0", "stats.interval.secs": "0",
                   "limit.publish.rate": "0", **(settings or {})}
        args = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "--nodaemon", "--pidfile=", "--logfile",
                str(tmp / f"node-{self.port}.log"), "pushpy", "--no-sources",
                "--listen", f"tcp:{self.port}:interface=127.0.0.1"]
        for key, value in options.items():
            args += ["--set", f"{key}={value}"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(args, cwd=tmp, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)

    def wait(self) -> Node:
        """Wait until the node answers and its backplane is up."""
        wait_until(self.ready, timeout=30)
        return self

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"node exited: {self.log()[-2000:]}")
        try:
            status, body = http(self.port, "GET", "/pushlet/stats", timeout=2)
        except OSError:
            return False
        return status == 200 and json.loads(body)["backplane"]["state"] == "up"

    def stats(self) -> dict[str, Any]:
        return json.loads(http(self.port, "GET", "/pushlet/stats")[1])

    def log(self) -> str:
        path = self.tmp / f"node-{self.port}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients or Redis."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@contextmanager
def running_cluster(tmp: Path, count: int = 3,
                    settings: dict[str, str] | None = None) -> Iterator[list[Node]]:
    """``count`` ready nodes of one cluster (a fresh key prefix, deleted afterwards)."""
    from redis_keys import delete_prefix

    prefix = unique_prefix()
    nodes = [Node(tmp, prefix, settings=settings) for _ in range(count)]
    try:
        for node in nodes:
            node.wait()
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        delete_prefix(prefix)


class RedisServer:
    """A private ``redis-server``, by default without persistence (a restart loses everything);
    ``persistent``: with an append-only file, so :meth:`stop` then :meth:`start` keeps its data."""

    def __init__(self, tmp: Path, *, persistent: bool = False) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.persistent = persistent
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.persistent else "no", "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._answers)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM: Redis closes its clients and, when persistent, writes its data out."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class CuttableRelay:
    """A TCP relay (threads) from a loopback port to Redis, for a node of a process test.

    :meth:`cut` closes every relayed connection and refuses new ones until
    :meth:`reopen`: that node alone loses Redis (its commands and its pub/sub).
    """

    def __init__(self, target: int = 6379) -> None:
        self.target = target
        self.port = free_port()
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.reopen()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def reopen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self.lock:
            listener, self.listener = self.listener, None
            sockets, self.sockets = self.sockets, []
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes its accept() (Linux)
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                backend = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            with self.lock:
                self.sockets += [client, backend]
            for source, sink in ((client, backend), (backend, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()


def token_maker(secret: str) -> Callable[[str], str]:
    """``token(user)`` for ``auth.token.secret=secret``: one token per user (a session is bound to
    the token it joined with), granting every subject."""
    from pushpy.auth import mint_token

    @functools.cache
    def token(user: str) -> str:
        return mint_token(secret, user, subscribe=["*"], publish=["*"], expires_in=600)

    return token


def no_traceback(nodes: list[Node]) -> None:
    """Fail when a node logged a traceback (an error that reached no client as an answer)."""
    for node in nodes:
        assert "Traceback" not in node.log(), node.log()[-3000:]


def poll(port: int, *, status: int = 200, **params: str) -> dict | None:
    """One native ``poll``; its answer (``None`` when the expected status is an error)."""
    got, body = http(port, "GET", "/pushlet/poll?" + urlencode(params))
    assert got == status, (got, body)
    return json.loads(body) if status == 200 else None


def pushlet(port: int, **params: str) -> tuple[int, list[dict[str, str]], bytes]:
    """One Pushlet request: its status, its events (``xml`` format) when 200, and its body."""
    status, body = http(port, "GET", "/pushlet/pushlet.srv?" + urlencode(params))
    return status, xml_events(body) if status == 200 else [], body


def publish(port: int, subject: str, **fields: str) -> str:
    """Publish through a node's API; the event's id."""
    body = json.dumps({"subject": subject, "fields": fields}).encode()
    status, answer = http(port, "POST", "/pushlet/api/publish", body,
                          {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"})
    assert status == 200, answer
    return json.loads(answer)["ids"][0]


_EVENT = re.compile(r"<event\s([^>]*?)/?>", re.S)
_ATTRIBUTE = re.compile(r'([\w.-]+)="([^"]*)"')


def xml_events(body: bytes) -> list[dict[str, str]]:
    """The events of a Pushlet ``xml`` response."""
    return [dict(_ATTRIBUTE.findall(match)) for match in _EVENT.findall(body.decode("utf-8"))]


class PushletPullClient:
    """A Pushlet pull-mode client whose every request goes to the next node in turn."""

    def __init__(self, ports: Callable[[], list[int]], subject: str, **params: str) -> None:
        self.ports = ports
        self.params = params  # sent with every request (a token)
        self.turn = 0
        self.events: list[dict[str, str]] = []
        self.session = ""
        reply = self.request({"p_event": "join-listen", "p_format": "xml", "p_mode": "pull",
                              "p_subject": subject})
        ack = [e for e in reply if e.get("p_event") == "join-listen-ack"]
        assert ack, reply
        self.session = ack[0]["p_id"]

    def request(self, params: dict[str, str]) -> list[dict[str, str]]:
        ports = self.ports()
        port = ports[self.turn % len(ports)]
        self.turn += 1
        status, body = http(port, "GET", "/pushlet/pushlet.srv?" + urlencode({**self.params, **params}))
        assert status == 200, (status, body)
        return xml_events(body)

    def refresh(self) -> list[dict[str, str]]:
        """One refresh on the next node; keeps and returns its data events."""
        while True:
            try:
                found = self.request({"p_event": "refresh", "p_id": self.session})
                break
            except OSError:
                continue  # that node is dead: the balancer would send us elsewhere
        data = [e for e in found if e.get("p_event") == "data"]
        self.events.extend(data)
        notices = [e for e in found if e.get("p_event") in ("nack", "abort")]
        assert not notices, notices
        return data


class NativePollClient:
    """A client of pushpy's ``poll`` transport asking the next node each time.

    It sends its subject, session, session key and last event id with every
    request, as ``pushpy.js`` does, so any node can answer it.
    """

    def __init__(self, ports: Callable[[], list[int]], subject: str, **params: str) -> None:
        self.ports = ports
        self.subject = subject
        self.params = params  # sent with every request (a token)
        self.turn = 0
        self.session = ""
        self.key = ""
        self.sessions: set[str] = set()  # every session id the nodes answered with
        self.last_id = ""
        self.events: list[dict[str, Any]] = []
        self.notices: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        params = {"subject": self.subject, **self.params}
        if self.session:
            params["session"] = self.session
            params["session_key"] = self.key
        if self.last_id:
            params["last_event_id"] = self.last_id
        while True:
            ports = self.ports()
            port = ports[self.turn % len(ports)]
            self.turn += 1
            try:
                status, body = http(port, "GET", "/pushlet/poll?" + urlencode(params))
                break
            except OSError:
                continue
        assert status == 200, (status, body)
        answer = json.loads(body)
        self.session = answer["session"]
        self.key = answer.get("session_key", self.key)
        self.sessions.add(self.session)
        self.last_id = answer["position"] or self.last_id  # what pushpy.js resumes from
        found = [m for m in answer["messages"] if m["type"] == "event"]
        for message in answer["messages"]:
            if message["type"] in ("gap", "close") or (
                    message["type"] == "recovery" and not message["recovered"]):
                self.notices.append(message)
        self.events.extend(found)
        return found


def sse_messages(response: httplib.HTTPResponse) -> Iterator[dict[str, Any]]:
    """The JSON messages of an SSE response, as they arrive, until it ends."""
    data: list[str] = []
    while True:
        line = response.fp.readline()
        if not line:
            return
        text = line.decode("utf-8").rstrip("\r\n")
        if text.startswith("data:"):
            data.append(text[5:].strip())
        elif not text and data:
            yield json.loads("\n".join(data))
            data = []


class SSEClient:
    """A native SSE client in a thread: reconnects to the next live node with its last id."""

    def __init__(self, ports: Callable[[], list[int]], subject: str, first_port: int,
                 **params: str) -> None:
        self.ports = ports
        self.subject = subject
        self.params = params
        self.port = first_port
        self.last_id = ""
        self.events: list[dict[str, Any]] = []
        self.notices: list[dict[str, Any]] = []
        self.connections = 0
        self.session = ""
        self.key = ""
        self.opened = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            try:
                self._stream(self.port)
            except OSError:
                pass
            ports = [p for p in self.ports() if p != self.port] or self.ports()
            self.port = ports[self.connections % len(ports)]

    def _stream(self, port: int) -> None:
        params = {"subject": self.subject, **self.params}
        if self.session:  # as pushpy.js: the same session on every node
            params.update(session=self.session, session_key=self.key)
        headers = {"Accept": "text/event-stream"}
        if self.last_id:
            headers["Last-Event-ID"] = self.last_id
        connection = httplib.HTTPConnection("127.0.0.1", port, timeout=3)
        try:
            connection.request("GET", "/pushlet/sse?" + urlencode(params), headers=headers)
            response = connection.getresponse()
            self.connections += 1
            for message in sse_messages(response):
                if self.done.is_set():
                    return
                self._message(message)
        finally:
            connection.close()

    def _message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "open":
            self.session = message["session"]
            self.key = message.get("session_key", self.key)
            self.last_id = self.last_id or message.get("position") or ""  # as pushpy.js
            self.opened.set()
        elif kind == "event":
            self.events.append(message)
            self.last_id = message["id"]
        elif kind in ("gap", "close") or (kind == "recovery" and not message["recovered"]):
            self.notices.append(message)

    def stop(self) -> None:
        self.done.set()


class PushletStream:
    """A Pushlet ``stream``-mode response read in a thread (``join-listen``, or ``listen`` of a session)."""

    def __init__(self, port: int, params: dict[str, str]) -> None:
        self.connection = httplib.HTTPConnection("127.0.0.1", port, timeout=30)
        self.connection.request("GET", "/pushlet/pushlet.srv?" + urlencode(
            {"p_format": "xml", "p_mode": "stream", **params}))
        self.sock = self.connection.sock
        self.response = self.connection.getresponse()
        assert self.response.status == 200, self.response.status
        self.data = b""
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while True:
                chunk = self.response.read1(65536)
                if not chunk:
                    break
                self.data += chunk
        except (OSError, ValueError, httplib.HTTPException):
            pass
        finally:
            self.ended.set()

    def events(self) -> list[dict[str, str]]:
        return xml_events(self.data)

    def session(self) -> str:
        acks = [e for e in wait_until(self.events) if e.get("p_id")]
        return acks[0]["p_id"]

    def close(self) -> None:
        """The client goes away (the socket is closed, as a browser tab closing)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.connection.close()
        self.ended.wait(5)


class RoundRobinProxy:
    """A balancer without affinity: each HTTP request goes to the next live node in turn.

    One request per client connection (answered with ``Connection: close``);
    a WebSocket handshake is forwarded the same way and then piped both ways.
    :attr:`served` records ``[method, path, port, status]`` of every request
    (status 0: no answer).
    """

    def __init__(self, ports: Callable[[], list[int]]) -> None:
        self.ports = ports
        self.turn = 0
        self.lock = threading.Lock()
        self.served: list[list[Any]] = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _next(self) -> socket.socket | None:
        for _ in range(8):
            with self.lock:
                ports = self.ports()
                port = ports[self.turn % len(ports)]
                self.turn += 1
            try:
                return socket.create_connection(("127.0.0.1", port), timeout=60)
            except OSError:
                continue  # a dead node: the balancer tries the next one
        return None

    def _serve(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
            head, _, body = head.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            headers = [line for line in lines[1:] if line]
            names = {line.partition(b":")[0].strip().lower(): line.partition(b":")[2].strip()
                     for line in headers}
            size = int(names.get(b"content-length", b"0"))
            while len(body) < size:
                chunk = client.recv(65536)
                if not chunk:
                    return
                body += chunk
            upgrade = names.get(b"upgrade", b"").lower() == b"websocket"
            if not upgrade:
                headers = [h for h in headers if not h.lower().startswith(b"connection:")]
                headers.append(b"Connection: close")
            backend = self._next()
            if backend is None:
                return
            with backend:
                port = backend.getpeername()[1]
                backend.sendall(b"\r\n".join([lines[0], *headers]) + b"\r\n\r\n" + body)
                method, path = lines[0].decode().split(" ")[:2]
                record: list[Any] = [method, path, port, 0]
                with self.lock:
                    self.served.append(record)
                if upgrade:
                    threading.Thread(target=_pipe, args=(client, backend), daemon=True).start()
                first = True
                while True:
                    try:
                        chunk = backend.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    if first:
                        record[3] = int(chunk.split(b" ", 2)[1])
                        first = False
                    try:
                        client.sendall(chunk)
                    except OSError:
                        return


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    try:
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass
