"""The seams users extend, as zope interfaces."""

from __future__ import annotations

from zope.interface import Attribute, Interface


class ISessionIdPolicy(Interface):
    """Chooses session and subscription ids."""

    def session_id(params):
        """A new session id for a join request with ``params`` (a str mapping).

        It must match ``[A-Za-z0-9_.~-]{1,128}``; a clash with a live session
        is refused.
        """

    def subscription_id():
        """A new subscription id (unique within its session is enough)."""


class IBackplane(Interface):
    """The only path from publishers to subscribers.

    Publishing stores multicast events in history (giving them their
    position) and hands every event to each attached receiver, on this
    process and, for a clustered backplane, on every other node.
    """

    epoch = Attribute("The id of the current history; changes when it is replaced.")
    position = Attribute("The resume position (``epoch:offset``) of the newest stored event.")

    def attach(receiver):
        """Call ``receiver(event)`` for every event published from now on."""

    def detach(receiver):
        """Stop calling ``receiver``."""

    def publish(event):
        """Publish ``event``; return the stored event (or a Deferred firing with it)."""

    def history(subject, count):
        """The newest ``count`` events of ``subject``, oldest first (or a Deferred)."""

    def since(position, matches):
        """A :class:`pushpy.core.history.Recovery` of events after ``position``.

        ``matches(subject)`` says which subjects the caller wants.  May return
        a Deferred.
        """

    def presence_enter(subject, user, member):
        """Mark ``member`` (a session id) of ``user`` present on ``subject``.

        Returns (or a Deferred fires with) ``True`` when the user was absent
        from ``subject`` before, cluster-wide: the caller then publishes the
        user's ``join`` (see :mod:`pushpy.presence`).
        """

    def presence_leave(subject, user, member):
        """Remove ``member`` of ``user`` from ``subject``.

        ``True`` (or a Deferred of it) when the user is now absent from
        ``subject`` cluster-wide (their last member left); the caller then
        publishes the user's ``leave``.
        """

    def presence(subject):
        """``{user: number of present members}`` on ``subject``, cluster-wide (or a Deferred)."""


class IEventSource(Interface):
    """Produces events from outside the clients: a feed, a sensor, a timer.

    Spec 11.1: a source is activated at start-up, may be passivated while
    nobody listens, and stopped at shutdown.
    """

    def activate(publisher):
        """Start producing; publish through ``publisher`` (a :class:`pushpy.PushServer`)."""

    def passivate():
        """Pause producing (may be resumed by :meth:`activate`)."""

    def stop():
        """Stop for good."""


class IAuthorizer(Interface):
    """Decides who may join, subscribe and publish, and who a session's user is.

    Each method may return its answer or a Deferred firing with it, and
    refuses by raising (or failing with) :class:`pushpy.errors.ClientError`
    carrying the reason (sent as a ``nack`` or an HTTP 403).
    """

    def join(credentials):
        """The user id of a new session (``None``: anonymous).

        ``credentials`` is a :class:`pushpy.auth.Credentials`: the request's
        parameters, headers, cookies, client address and transport.  The
        answer may also be a :class:`pushpy.auth.Identity` (user id and claims
        kept on the session for later checks).

        A session with a user is bound to its client: every later request of
        it must present the same ``bind(credentials)`` value, a method the
        authorizer may offer (default: the same token, see
        :meth:`pushpy.auth.Credentials.token`), else it is refused with 403.
        """

    def subscribe(session, subject):
        """Allow ``session`` to subscribe to ``subject`` (a comma list), or raise."""

    def publish(session, subject):
        """Allow ``session`` to publish on ``subject``, or raise."""
