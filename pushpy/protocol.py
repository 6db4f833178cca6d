"""The Pushlet 2.0.4 vocabulary: parameter names, event names, modes, formats.

One place for every protocol string (spec sections 3 to 5).
"""

from __future__ import annotations

# Parameters (spec section 3).
P_EVENT = "p_event"
P_ID = "p_id"
P_FORMAT = "p_format"
P_MODE = "p_mode"
P_SUBJECT = "p_subject"
P_LABEL = "p_label"
P_SID = "p_sid"
P_TO = "p_to"
P_FROM = "p_from"
P_SEQ = "p_seq"
P_TIME = "p_time"
P_WAIT = "p_wait"
P_URL = "p_url"
P_REASON = "p_reason"

# Client -> server events (spec section 4).
JOIN = "join"
JOIN_LISTEN = "join-listen"
LISTEN = "listen"
REFRESH = "refresh"
SUBSCRIBE = "subscribe"
UNSUBSCRIBE = "unsubscribe"
PUBLISH = "publish"
HEARTBEAT = "hb"
LEAVE = "leave"

# Server -> client events (spec section 5).
JOIN_ACK = "join-ack"
JOIN_LISTEN_ACK = "join-listen-ack"
LISTEN_ACK = "listen-ack"
REFRESH_ACK = "refresh-ack"
SUBSCRIBE_ACK = "subscribe-ack"
UNSUBSCRIBE_ACK = "unsubscribe-ack"
PUBLISH_ACK = "publish-ack"
HEARTBEAT_ACK = "hb-ack"
LEAVE_ACK = "leave-ack"
NACK = "nack"
DATA = "data"
ABORT = "abort"

# Modes.
MODE_STREAM = "stream"
MODE_PULL = "pull"
MODE_POLL = "poll"
MODES = (MODE_STREAM, MODE_PULL, MODE_POLL)

# Formats.
FORMAT_JS = "js"
FORMAT_XML = "xml"
FORMAT_XML_STRICT = "xml-strict"
FORMATS = (FORMAT_JS, FORMAT_XML, FORMAT_XML_STRICT)

#: Request events answered with a data channel (spec section 2.4).
DATA_CHANNEL_EVENTS = frozenset({LISTEN, JOIN_LISTEN, REFRESH})

# Request errors (spec section 2.3), answered with HTTP 400.
NO_EVENT_TYPE = "No eventType specified"
NO_ID = "No id specified"
INVALID_ID = "Invalid or expired id: {id}"
UNSUPPORTED_FORMAT = "Unsupported format: {format}"

# nack reasons (spec section 5 and 14.2).
NO_SUBJECT = "no subject provided"
NO_SUBSCRIPTION = "no subscription for sid={sid}"
UNKNOWN_EVENT = "unknown event: {event}"
NOT_LISTENING = "not listening: send listen before refresh"
QUEUE_OVERFLOW = "queue overflow: {count} events dropped"

# pushpy's own transports (not Pushlet): the session format and local notices.
FORMAT_JSON = "json"
#: Set by the server on events a session with a user publishes: that user's id (clients cannot forge it).
P_USER = "p_user"
#: Notice to a native session: events were dropped on queue overflow.
GAP = "gap"
#: Notice to a native session: the outcome of a resume.
RECOVERY = "recovery"
#: Notice to a session: the application removed its subscriptions to a subject (``PushServer.unsubscribe``).
UNSUBSCRIBED = "unsubscribed"
#: The application ended a session (``PushServer.disconnect``).
DISCONNECTED = "disconnected"
