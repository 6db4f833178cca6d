"""The three Pushlet output formats: ``js``, ``xml`` and ``xml-strict`` (spec 6).

A codec turns events into bytes.  Data events are shared by every session
they reach, so the codec caches the encoding of an event's own fields on the
event and splices in the per-copy fields (``p_seq``, ``p_sid``, ``p_label``)
at the end; field order is free in every format (spec 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pushpy import protocol as P
from pushpy.core.events import Event
from pushpy.core.subjects import Subscription
from pushpy.wire.escape import java_xml_value, js_string, xml_attribute

#: Fields set on each session's copy of an event, never taken from the shared event.
_PER_COPY = frozenset({P.P_SEQ, P.P_SID, P.P_LABEL})

#: The 242-byte prologue of a ``js`` response (spec 6.3).
JS_PROLOGUE = (
    b'<html><head><meta http-equiv="Pragma" content="no-cache"><meta http-equiv="Expires" '
    b'content="Tue, 31 Dec 1997 23:59:59 GMT"></head><body>\n<script language="JavaScript"> '
    b'var url=" "; \nfunction refresh() { document.location.href=url; }</script>'
)


class PushletCodec:
    """Encodes events in one Pushlet format."""

    #: ``p_format`` value.
    name = ""
    content_type = b""
    #: Written before the first event of any response.
    opening = b""
    #: Written after the last event of a complete (control, pull, poll) response.
    closing = b""

    def event(self, fields: Mapping[str, str] | Iterable[tuple[str, str]]) -> bytes:
        """One complete event."""
        items = fields.items() if isinstance(fields, Mapping) else fields
        return self._head(items) + self._tail

    def data(self, event: Event, seq: int, subscription: Subscription | None) -> bytes:
        """A queued event as one session's copy: ``p_seq``, then ``p_sid``/``p_label``.

        The copy's per-copy fields replace any the publisher sent, so no name
        is written twice (a duplicate attribute is not well-formed XML).
        Without a subscription (unicast, broadcast) the publisher's own
        ``p_sid``/``p_label`` are kept, as in the original.
        """
        return b"".join(self.data_parts(event, seq, subscription))

    def data_parts(self, event: Event, seq: int,
                   subscription: Subscription | None) -> tuple[bytes, bytes, bytes]:
        """:meth:`data` in three parts: the shared head, ``p_seq`` and the end."""
        cached = event.wire_cache.get(self.name)
        if cached is None:
            fields = event.fields
            head = self._head((k, v) for k, v in fields.items() if k not in _PER_COPY)
            own = b"".join(self._pair(k, fields[k]) for k in (P.P_SID, P.P_LABEL) if k in fields)
            cached = event.wire_cache[self.name] = (head, own)
        head, own = cached
        if subscription is not None:
            end = subscription.wire_cache.get(self.name) or subscription_fields(self, subscription)
        else:
            end = own + self._tail
        return head, self._seq % seq, end

    def control(self, fields: Mapping[str, str]) -> bytes:
        """A complete control response: one event (spec 2.4)."""
        return self.opening + self.event(fields) + self.closing

    def refresh(self, url: str, wait: int, now: float) -> bytes:
        """The ``refresh`` event ending a pull/poll response, and the response end."""
        fields = {P.P_EVENT: P.REFRESH, P.P_TIME: str(int(now)), P.P_WAIT: str(int(wait)), P.P_URL: url}
        return self.event(fields) + self.closing

    def _head(self, items: Iterable[tuple[str, str]]) -> bytes:
        raise NotImplementedError

    def _pair(self, name: str, value: str) -> bytes:
        raise NotImplementedError

    _tail = b""
    #: ``p_seq`` with a ``%d`` for the number (digits need no escaping).
    _seq = b""


class XmlCodec(PushletCodec):
    """``xml``: bare ``<event name="value" ... />`` for the Java client (spec 6.4, 14.1.11)."""

    name = P.FORMAT_XML
    content_type = b"text/plain;charset=UTF-8"
    _tail = b"/>"
    _seq = b'p_seq="%d" '

    def _head(self, items: Iterable[tuple[str, str]]) -> bytes:
        return ("<event " + "".join(f'{k}="{java_xml_value(v)}" ' for k, v in items)).encode()

    def _pair(self, name: str, value: str) -> bytes:
        return f'{name}="{java_xml_value(value)}" '.encode()


class XmlStrictCodec(XmlCodec):
    """``xml-strict``: one well-formed ``<pushlet>`` document per response (spec 6.5)."""

    name = P.FORMAT_XML_STRICT
    content_type = b"text/xml;charset=UTF-8"
    opening = b"<pushlet>"
    closing = b"</pushlet>"

    def _head(self, items: Iterable[tuple[str, str]]) -> bytes:
        return ("<event " + "".join(f'{k}="{xml_attribute(v)}" ' for k, v in items)).encode()

    def _pair(self, name: str, value: str) -> bytes:
        return f'{name}="{xml_attribute(value)}" '.encode()


class JsCodec(PushletCodec):
    """``js``: hidden-iframe script streaming (spec 6.3, 14.2 fix 8)."""

    name = P.FORMAT_JS
    content_type = b"text/html;charset=UTF-8"
    opening = JS_PROLOGUE
    _tail = b");</script>"
    _seq = b",'p_seq', \"%d\""

    def _head(self, items: Iterable[tuple[str, str]]) -> bytes:
        pairs = ",".join(f"'{js_string(k)}', \"{js_string(v)}\"" for k, v in items)
        return ('<script language="JavaScript">parent.push(' + pairs).encode()

    def _pair(self, name: str, value: str) -> bytes:
        return f",'{name}', \"{js_string(value)}\"".encode()

    def refresh(self, url: str, wait: int, now: float) -> bytes:
        return (f"\n<script language=\"JavaScript\">url='{js_string(url)}';\n"
                f" setTimeout(\"refresh()\", {int(wait)});\n</script></body></html>").encode()


CODECS: dict[str, PushletCodec] = {
    codec.name: codec for codec in (JsCodec(), XmlCodec(), XmlStrictCodec())
}


def subscription_fields(codec: PushletCodec, subscription: Subscription) -> bytes:
    """``p_sid`` and ``p_label`` of a subscription and the event's end, encoded once per codec."""
    cache = subscription.wire_cache
    encoded = cache.get(codec.name)
    if encoded is None:
        encoded = codec._pair(P.P_SID, subscription.sid)
        if subscription.label:
            encoded += codec._pair(P.P_LABEL, subscription.label)
        encoded += codec._tail
        cache[codec.name] = encoded
    return encoded
