"""Presence and user routing on a server: who is on which subject, cluster-wide.

:class:`PresenceTracker` watches the dispatcher: a session with a user is
present on :data:`~pushpy.core.presence.ONLINE` from its first ``listen`` to its
end (a join refused before it listens never shows), and on
every subject it subscribes to (:func:`~pushpy.core.presence.presence_subjects`)
until it unsubscribes or ends (leave, disconnect, expiry, overflow).  The
state lives in the backplane (``presence_enter``/``presence_leave``/``presence``
of :class:`~pushpy.interfaces.IBackplane`), so it is the cluster's; when a
user's first member enters a subject, or the last leaves it, the tracker
publishes ``{"user", "action": "join"|"leave", "subject"}`` on the companion
subject (``/presence`` + subject, :func:`~pushpy.core.presence.presence_subject`).
Anonymous sessions have no presence.  Backplane answers may be Deferreds.

A clustered backplane may also report users of a dead node now absent
(``departure_listeners``: the tracker announces their ``leave``), ask the
node to set its members again after they were removed (``rejoin_listeners``;
the tracker calls its ``presence_sync``), and tell it it reconnected
(``reconnect_listeners``): enters and leaves that failed meanwhile with
:class:`~pushpy.errors.BackplaneUnavailable` (one warning each, no traceback)
are then made good by the same ``presence_sync``.
With such a backplane a stopping node leaves its members to be reaped (its
stop deletes its heartbeat key), so their ``leave`` is announced by a node
that stays up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from pushpy import protocol as P
from pushpy.core.presence import ONLINE, presence_subject, presence_subjects
from pushpy.core.sessions import EndReason, Session, SessionState
from pushpy.errors import BackplaneUnavailable

if TYPE_CHECKING:
    from pushpy.server import PushServer

#: Key in ``Session.data`` of the subjects a session is present on.
PRESENT = "pushpy.presence"
#: Key in ``Session.data``: the session is present on :data:`ONLINE`.
IS_ONLINE = "pushpy.online"


def stamp_user(fields: dict[str, str], session: Session) -> None:
    """Set ``p_user`` of an event ``session`` publishes to its user (removing a forged one if it has none)."""
    if session.user is not None:
        fields[P.P_USER] = session.user
    else:
        fields.pop(P.P_USER, None)


class PresenceTracker:
    """Keeps the backplane's presence in step with this process's sessions."""

    log = Logger()

    def __init__(self, server: PushServer) -> None:
        self.server = server
        dispatcher = server.dispatcher
        dispatcher.on_listen.append(self.listening)
        dispatcher.on_subscriptions.append(self.changed)
        dispatcher.on_end.append(self.ended)
        departures = getattr(server.backplane, "departure_listeners", None)
        #: The backplane reaps the members of nodes gone (and announces their leave): a stopping node
        #: leaves its members to it (its own writes and publishes would not outlive the stop).
        self.reaped = departures is not None
        if departures is not None:
            departures.append(self.departed)
        rejoins = getattr(server.backplane, "rejoin_listeners", None)
        if rejoins is not None:
            rejoins.append(self.rejoin)
        reconnects = getattr(server.backplane, "reconnect_listeners", None)
        if reconnects is not None:
            reconnects.append(self.reconnected)
        #: Some enter or leave failed while the backplane was unavailable: set right on reconnect.
        self.unsynced = False

    def departed(self, subject: str, user: str) -> None:
        """``user``'s last member on ``subject`` was on a dead node: announce the leave."""
        self._announce(subject, user, "leave")

    def reconnected(self) -> None:
        if self.unsynced:
            self.rejoin()

    def rejoin(self) -> None:
        """Set this node's members in the backplane to its live ones (``presence_sync``: they were
        removed, or enters and leaves failed meanwhile); the changes it reports are announced."""
        self.unsynced = False
        members = []
        for session in list(self.server.dispatcher.sessions.values()):
            if session.user is None or session.state is SessionState.ENDED:
                continue
            subjects = set(session.data.get(PRESENT, set()))  # type: ignore[call-overload]
            if session.data.get(IS_ONLINE):
                subjects.add(ONLINE)
            members += [(subject, session.user, session.id) for subject in sorted(subjects)]

        def announce(changes: list[tuple[str, str, str]]) -> None:
            for subject, user, action in changes:
                self._announce(subject, user, action)

        synced = maybeDeferred(self.server.backplane.presence_sync, members)
        synced.addCallback(announce).addErrback(self._failed, "sync", "members", "every subject")

    def listening(self, session: Session) -> None:
        if session.user is not None:
            session.data[IS_ONLINE] = True
            self._enter(ONLINE, session)

    def changed(self, session: Session) -> None:
        if session.user is None or session.state is SessionState.ENDED:
            return
        before: set[str] = session.data.get(PRESENT, set())  # type: ignore[assignment]
        now = presence_subjects(session.subscriptions.values())
        if now == before:
            return
        session.data[PRESENT] = now
        for subject in sorted(before - now):
            self._leave(subject, session)
        for subject in sorted(now - before):
            self._enter(subject, session)

    def ended(self, session: Session, reason: EndReason) -> None:
        if session.user is None:
            return
        before: set[str] = session.data.pop(PRESENT, set())  # type: ignore[assignment]
        online = session.data.pop(IS_ONLINE, False)
        if reason is EndReason.SHUTDOWN and self.reaped:
            return  # reaped by another node once this one has stopped, which announces the leave
        for subject in sorted(before):
            self._leave(subject, session)
        if online:
            self._leave(ONLINE, session)

    def _enter(self, subject: str, session: Session) -> None:
        user = session.user or ""
        self._then(maybeDeferred(self.server.backplane.presence_enter, subject, user, session.id),
                   subject, user, "join")

    def _leave(self, subject: str, session: Session) -> None:
        user = session.user or ""
        self._then(maybeDeferred(self.server.backplane.presence_leave, subject, user, session.id),
                   subject, user, "leave")

    def _then(self, changed: Deferred, subject: str, user: str, action: str) -> None:
        def announce(first_or_last: Any) -> None:
            if first_or_last:
                self._announce(subject, user, action)

        changed.addCallback(announce).addErrback(self._failed, action, user, subject)

    def _announce(self, subject: str, user: str, action: str) -> None:
        self.server.publish(presence_subject(subject), {"user": user, "action": action, "subject": subject})

    def _failed(self, reason: Failure, action: str, user: str, subject: str) -> None:
        if reason.check(BackplaneUnavailable):
            # A known state (the backplane is degraded): this node's members are set right,
            # and the changes announced, once it is back.
            self.unsynced = True
            self.log.warn("presence {action} of {user} on {subject} deferred: backplane unavailable",
                          action=action, user=user, subject=subject)
            return
        self.log.failure("presence {action} of {user} on {subject} failed", reason,
                         action=action, user=user, subject=subject)
