"""Configuration: the ``pushlet.properties`` keys of spec 10.1 plus pushpy's own.

A key maps to the attribute of the same name with ``.`` and ``-`` turned into
``_`` (``session.timeout.mins`` is ``Config.session_timeout_mins``), so a
Pushlet ``pushlet.properties`` file is read as it is.  Java class-name keys
are accepted and ignored.  This module has no Twisted import.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from pushpy.errors import UsageError

#: Keys of the original that name Java classes or are informational: read, ignored.
IGNORED_KEYS = frozenset({
    "config.version", "controller.class", "dispatcher.class", "sessionmanager.class",
    "session.class", "subscriber.class", "subscription.class", "logger.class",
})

OVERFLOW_POLICIES = ("drop-oldest", "abort")
#: Keys holding secrets: never shown in ``repr``; ``env:NAME`` and ``file:PATH`` values are read.
SECRET_FIELDS = ("auth_token_secret", "api_key")
ID_GENERATIONS = ("secure", "randomstring", "uuid")


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Every setting, with the Pushlet 2.0.4 defaults where the key is Pushlet's."""

    # -- Pushlet 2.0.4 keys (spec 10.1), same names and defaults --
    log_level: int = 4
    sources_activate: bool = True
    #: ``secure`` (default, 128 random bits), ``randomstring`` (the original
    #: 10-letter shape, about 34 bits: guessable) or ``uuid``.
    session_id_generation: str = "secure"
    session_id_size: int = 10
    session_timeout_mins: float = 5.0
    queue_size: int = 24
    queue_read_timeout_millis: int = 20_000
    queue_write_timeout_millis: int = 20
    listen_force_pull_all: bool = False
    listen_force_pull_agents: tuple[str, ...] = ("safari",)
    pull_refresh_timeout_millis: int = 45_000
    pull_refresh_wait_min_millis: int = 2_000
    pull_refresh_wait_max_millis: int = 6_000
    poll_refresh_timeout_millis: int = 60_000
    poll_refresh_wait_min_millis: int = 6_000
    poll_refresh_wait_max_millis: int = 10_000
    #: Total sessions; the original declared the key but never enforced it.
    sessionmanager_maxsessions: int = 50_000

    # -- pushpy's own keys --
    #: ``drop-oldest``: drop, then one ``nack`` per overflow episode; ``abort``:
    #: end the session with ``abort`` on its open data channel.
    queue_overflow_policy: str = "drop-oldest"
    #: End the session when a client drops its data channel (spec 14.2 fix 4).
    session_end_on_disconnect: bool = True
    #: How often leases are checked, in milliseconds.
    session_check_millis: int = 1_000
    #: Events kept per subject for resume and history queries.
    history_size: int = 100
    #: Seconds an event stays in history.
    history_ttl_secs: float = 600.0
    #: Subjects with a history at most; the least recently used is forgotten.
    history_max_subjects: int = 100_000
    #: Events a history query (HTTP ``history``, native ``history`` message) answers at most.
    history_query_max: int = 100
    # -- pushpy's own transports (SSE, WebSocket, XHR streaming, iframe, long-poll, poll) --
    #: Events a native session may hold while its client is away or not reading.
    native_queue_size: int = 1_000
    #: Lease of a native session with no open connection, in seconds.
    native_session_timeout_secs: float = 60.0
    #: A streaming response is closed (the client reconnects and resumes) after this many bytes.
    stream_max_bytes: int = 1_048_576
    #: SSE ``retry:`` sent to browsers, in milliseconds.
    sse_retry_millis: int = 2_000
    #: Interval a ``poll`` client waits between requests, in milliseconds.
    poll_interval_millis: int = 3_000

    # -- scaling out (docs/scaling.md) --
    #: Where events travel between processes: empty for this process only, or
    #: ``redis://host:port/db`` to share one log, sessions and presence through Redis.
    backplane: str = ""
    #: Prefix of the Redis keys and channels: processes with the same prefix form one cluster.
    backplane_prefix: str = "pushpy"
    #: Events kept in the shared log (approximately: ``XADD MAXLEN ~``).
    backplane_log_size: int = 10_000
    #: Publishes held while Redis is unreachable; beyond it publishing is refused (503).
    backplane_outbox_size: int = 10_000
    #: Seconds without heartbeat after which a node is dead: its users' presence ``leave`` is announced.
    backplane_node_ttl_secs: float = 15.0

    # -- limits (docs/security.md); each refusal names its key --
    limit_subscriptions: int = 100
    limit_subject_length: int = 256
    limit_subjects_per_subscription: int = 32
    limit_params: int = 64
    limit_request_bytes: int = 65_536
    #: Sessions per client address (0: unlimited); addresses in the exempt list are not
    #: counted (loopback by default: behind a local reverse proxy every client is loopback).
    limit_sessions_per_address: int = 1_000
    limit_sessions_per_address_exempt: tuple[str, ...] = ("127.0.0.1", "::1")
    #: Fields of one event a client publishes (``p_*`` fields included).
    limit_fields: int = 64
    #: UTF-8 bytes of one published event, names and values together.
    limit_event_bytes: int = 32_768
    #: Sustained client publishes per second per session, and the burst allowed above it (0: off).
    limit_publish_rate: float = 50.0
    limit_publish_burst: int = 100
    #: Data channels (streams, pending refreshes) open at once per Pushlet session.
    limit_channels_per_session: int = 4
    #: Bytes of events one session may hold queued (besides the event count of its queue).
    limit_queue_bytes: int = 1_048_576
    #: Largest request body the HTTP channel reads (413 beyond it).
    limit_body_bytes: int = 1_048_576

    # -- security (docs/security.md) --
    #: HMAC-SHA256 secret of signed tokens; empty: no token checks (the open demo).
    #: ``env:NAME`` reads it from an environment variable, ``file:PATH`` from a file.
    auth_token_secret: str = dataclasses.field(default="", repr=False)
    #: Cookie a token may come in (besides a ``token`` parameter and ``Authorization: Bearer``).
    auth_token_cookie: str = "pushpy_token"
    #: With a token secret: whether clients without a token may join, and the subject
    #: prefixes (comma lists) they may subscribe and publish to.
    auth_anonymous: bool = False
    auth_anonymous_subscribe: str = ""
    auth_anonymous_publish: str = ""
    #: Keys of the back-end publish API (``POST <root>api/publish``), a comma list; empty: disabled.
    #: ``env:NAME`` and ``file:PATH`` as for the token secret.
    api_key: str = dataclasses.field(default="", repr=False)
    #: Events in one API request, at most.
    api_max_events: int = 1_000
    #: Origins (``https://app.example.com``) allowed to use the endpoints from other sites
    #: (CORS and the WebSocket Origin check), a comma list; ``*`` allows every origin
    #: without credentials.  Same-origin requests are always allowed.
    origins_allowed: str = ""

    # -- Socket.IO endpoint (docs/socketio.md) --
    #: Serve Engine.IO v4 / Socket.IO v5 at ``socketio.path`` (and ``<root>socket.io/``).
    socketio_enabled: bool = True
    socketio_path: str = "/socket.io/"
    #: Engine.IO transports offered: ``polling``, ``websocket``.
    socketio_transports: tuple[str, ...] = ("polling", "websocket")
    socketio_ping_interval_millis: int = 25_000
    socketio_ping_timeout_millis: int = 20_000
    #: Largest Engine.IO message or polling body (``maxHttpBufferSize``).
    socketio_max_http_buffer_size: int = 1_000_000
    #: Binary attachments of one Socket.IO packet at most.
    socketio_max_attachments: int = 10
    #: Connection state recovery: ``pid`` in CONNECT, positions appended to room events.
    socketio_recovery: bool = False
    #: Namespaces clients may connect to besides ``/`` and those with handlers (``*``: any).
    socketio_namespaces: tuple[str, ...] = ()
    #: Answer the ``subscribe``/``unsubscribe``/``publish`` events when the application does not.
    socketio_builtin_events: bool = True

    # -- operations (docs/configuration.md) --
    #: Serve ``<root>stats`` (JSON) and ``<root>metrics`` (Prometheus).
    metrics_enabled: bool = True
    #: Publish the server's stats on ``stats.subject`` every this many seconds, for the
    #: dashboard (``<root>dashboard.html``); 0: never.
    stats_interval_secs: float = 2.0
    stats_subject: str = "/pushpy/stats"
    #: At shutdown, seconds to wait for clients to receive their close before dropping them.
    shutdown_timeout_secs: float = 5.0
    #: ``twistd pushpy``: once started, exempt the startup heap from garbage collection
    #: (:mod:`pushpy.heap`), so full collections stay short.
    gc_freeze: bool = True

    def __post_init__(self) -> None:
        # User-Agents are compared lowercased (spec 7.5), so the entries are too.
        agents = tuple(agent.strip().lower() for agent in self.listen_force_pull_agents if agent.strip())
        object.__setattr__(self, "listen_force_pull_agents", agents)
        if self.queue_overflow_policy not in OVERFLOW_POLICIES:
            raise UsageError(
                f"queue.overflow.policy must be one of {', '.join(OVERFLOW_POLICIES)},"
                f" not {self.queue_overflow_policy!r}")
        if self.session_id_generation not in ID_GENERATIONS:
            raise UsageError(
                f"session.id.generation must be one of {', '.join(ID_GENERATIONS)},"
                f" not {self.session_id_generation!r}")
        for low, high in (("pull_refresh_wait_min_millis", "pull_refresh_wait_max_millis"),
                          ("poll_refresh_wait_min_millis", "poll_refresh_wait_max_millis")):
            if getattr(self, low) > getattr(self, high):
                raise UsageError(f"{_key(low)} must not exceed {_key(high)}")
        if self.queue_size < 2:
            raise UsageError("queue.size must be at least 2 (one slot stays free)")
        for name in SECRET_FIELDS:
            object.__setattr__(self, name, resolve_secret(_key(name), getattr(self, name)))
        secret = self.auth_token_secret
        if secret and len(secret) < 16:
            raise UsageError("auth.token.secret must be at least 16 characters (use a long random value)")

    @property
    def session_timeout(self) -> float:
        """The session lease in seconds."""
        return self.session_timeout_mins * 60.0

    @classmethod
    def from_mapping(cls, values: Mapping[str, str], *, strict: bool = False) -> Config:
        """A config from ``key=value`` strings; unknown keys raise if ``strict``."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, object] = {}
        for key, raw in values.items():
            if key in IGNORED_KEYS:
                continue
            name = key.strip().replace(".", "_").replace("-", "_")
            field = known.get(name)
            if field is None:
                if strict:
                    raise UsageError(unknown_key_message(key))
                continue
            kwargs[name] = _convert(key, field, raw)
        return cls(**kwargs)

    def replace(self, **changes: object) -> Config:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


def load_properties(path: str | Path) -> dict[str, str]:
    """Read a Java ``.properties`` file into a dict (comments, ``=``/``:``, continuations)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        text = Path(path).read_text(encoding="latin-1")
    except OSError as e:
        raise UsageError(f"cannot read configuration file {path}: {e.strerror}") from e
    return parse_properties(text)


def parse_properties(text: str) -> dict[str, str]:
    """Parse ``.properties`` text: ``#``/``!`` comments, ``\\`` continuations."""
    out: dict[str, str] = {}
    logical = ""
    for raw in text.splitlines():
        line = raw.lstrip()
        if not logical and (not line or line[0] in "#!"):
            continue
        if _continues(line):
            logical += line[:-1]
            continue
        logical += line
        key, value = _split_pair(logical)
        logical = ""
        if key:
            out[key] = value
    if logical:
        key, value = _split_pair(logical)
        if key:
            out[key] = value
    return out


def load_config(path: str | Path | None = None, *, settings: Mapping[str, str] | None = None,
                strict: bool = False, **overrides: object) -> Config:
    """The config from a properties file (or defaults), then ``settings``, then ``overrides``.

    :param settings: ``key: value`` strings that win over the file's (``twistd pushpy --set``).
    :param strict: refuse unknown keys in the file and in ``settings``.
    :param overrides: attribute values (``session_timeout_mins=1``) applied last.
    """
    values = load_properties(path) if path else {}
    values.update(settings or {})
    config = Config.from_mapping(values, strict=strict) if values else Config()
    return config.replace(**overrides) if overrides else config


def resolve_secret(key: str, value: str) -> str:
    """``value``, or the environment variable (``env:NAME``) or file (``file:PATH``) it names.

    Secrets given on a command line show in the process list; these forms keep
    them out of it.
    """
    if value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise UsageError(f"{key}: the environment variable {name!r} is not set")
        return os.environ[name].strip()
    if value.startswith("file:"):
        try:
            return Path(value[5:]).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise UsageError(f"{key}: cannot read {value[5:]}: {e.strerror}") from e
    return value


def comma_list(value: str) -> tuple[str, ...]:
    """The non-empty, stripped items of a comma list (case kept)."""
    return tuple(item.strip() for item in value.split(",") if item.strip())


def known_keys() -> list[str]:
    """Every configuration key pushpy reads, dotted (``session.timeout.mins``)."""
    return [_key(f.name) for f in fields(Config)]


def unknown_key_message(key: str) -> str:
    """An error text for an unknown key, naming the closest known keys."""
    dotted = key.strip().replace("-", ".").replace("_", ".")
    close = difflib.get_close_matches(dotted, known_keys(), n=2, cutoff=0.75)
    hint = f"; did you mean {' or '.join(repr(k) for k in close)}?" if close else \
        " (pushpy/config.py lists the keys)"
    return f"unknown configuration key {key!r}{hint}"


def _continues(line: str) -> bool:
    trailing = len(line) - len(line.rstrip("\\"))
    return trailing % 2 == 1


def _split_pair(line: str) -> tuple[str, str]:
    """Key and value of a logical line; escapes work in both, trailing spaces stay (as in Java)."""
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "=: \t\f":
            break
        i += 1
    key = line[:i]
    rest = line[i:].lstrip(" \t\f")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" \t\f")
    return _unescape(key), _unescape(rest)


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    out = []
    i = 0
    simple = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            if nxt == "u" and i + 6 <= len(value):
                try:
                    out.append(chr(int(value[i + 2:i + 6], 16)))
                    i += 6
                    continue
                except ValueError:
                    pass
            out.append(simple.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _key(name: str) -> str:
    return name.replace("_", ".")


def _convert(key: str, field: dataclasses.Field, raw: str) -> object:
    kind = field.type
    value = raw.strip()
    try:
        if kind == "bool":
            lowered = value.lower()
            if lowered in ("true", "yes", "on", "1"):
                return True
            if lowered in ("false", "no", "off", "0"):
                return False
            raise ValueError(value)
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "tuple[str, ...]":
            return tuple(part.strip().lower() for part in value.split(",") if part.strip())
        return value
    except ValueError:
        raise UsageError(f"configuration key {key!r}: {raw!r} is not a valid {kind}") from None
