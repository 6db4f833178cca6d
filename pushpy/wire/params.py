"""Request parameters: raw query strings and POST bodies to a str dict (spec 2.2, 14.1.3).

Values arrive unencoded from the original clients (raw ``/``, ``,`` and
spaces), form-encoded from others.  Both decode here: ``+`` is a space,
``%XX`` a byte, bytes are UTF-8 or, when not valid UTF-8, ISO-8859-1.  A
malformed ``%`` escape is kept literally.  The first value of a name wins.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from pushpy.errors import ClientError


def decode_component(raw: bytes) -> str:
    """Form-decode one name or value."""
    data = unquote_to_bytes(raw.replace(b"+", b" ")) if (b"%" in raw or b"+" in raw) else raw
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def parse_query(query: bytes, params: dict[str, str] | None = None, *,
                limit: int = 64) -> dict[str, str]:
    """Add the parameters of ``query`` to ``params`` (first value wins)."""
    params = {} if params is None else params
    if not query:
        return params
    pairs = query.split(b"&")
    if len(pairs) > limit * 4:
        raise ClientError(f"Too many parameters (at most {limit})", 400)
    for pair in pairs:
        if not pair:
            continue
        name, _, value = pair.partition(b"=")
        key = decode_component(name)
        if not key or key in params:
            continue
        if len(params) >= limit:
            raise ClientError(f"Too many parameters (at most {limit})", 400)
        params[key] = decode_component(value)
    return params


def parse_event_element(body: str, params: dict[str, str] | None = None, *,
                        limit: int = 64) -> dict[str, str]:
    """Add the attributes of one ``<event name="value" .../>`` element to ``params``.

    Parsed as the Java client parses (spec 6.4.1): ``\\x`` stands for ``x``,
    entities are not decoded.  A body that is not such an element is a 400.
    """
    params = {} if params is None else params
    text = body.strip()
    start = text.find("<")
    if start < 0 or not text.endswith("/>"):
        raise ClientError("POST body must be one <event name=\"value\" .../> element", 400)
    text = text[start + 1:-2]
    space = 0
    while space < len(text) and not text[space].isspace():
        space += 1
    i = space
    count = 0
    while True:
        eq = text.find("=", i)
        if eq < 0:
            if text[i:].strip():
                raise ClientError("malformed <event> attribute in POST body", 400)
            return params
        name = text[i:eq].strip()
        quote = text.find('"', eq)
        if quote < 0 or not name or text[eq + 1:quote].strip():
            raise ClientError("malformed <event> attribute in POST body", 400)
        value, i = _read_quoted(text, quote + 1)
        count += 1
        if count > limit:
            raise ClientError(f"Too many parameters (at most {limit})", 400)
        params.setdefault(name, value)


def _read_quoted(text: str, i: int) -> tuple[str, int]:
    out = []
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise ClientError("unterminated attribute value in POST body", 400)
