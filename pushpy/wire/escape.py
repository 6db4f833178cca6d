"""Escaping of values for each context pushpy writes into: JS strings, XML.

One function per context; each returns text that, once encoded as UTF-8,
cannot leave its string or element and decodes back to the original value
(except where a format cannot carry a character: see each docstring).
"""

from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")


def _js_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in [*range(0x20), 0x7F, *range(0x80, 0xA0)]:
        table[code] = f"\\x{code:02X}"
    table.update({
        ord("\\"): "\\\\", ord('"'): '\\"', ord("'"): "\\'", ord("\n"): "\\n", ord("\r"): "\\r",
        0x2028: "\\u2028", 0x2029: "\\u2029", ord("<"): "\\x3C", ord(">"): "\\x3E",
    })
    for code in range(0xD800, 0xE000):
        table[code] = f"\\u{code:04X}"
    return table


_JS = _js_table()
_JS_SPECIAL = re.compile("[\\\\\"'<>\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def js_string(value: str) -> str:
    """Escape ``value`` for a single- or double-quoted JS string in a ``<script>``.

    Spec 14.2 fix 8: ``\\ " '`` LF CR U+2028 U+2029 ``< >`` and control
    characters are escaped; lone surrogates become ``\\uXXXX`` so the string
    the script sees is exactly ``value``.
    """
    if _JS_SPECIAL.search(value) is None:
        return value
    return value.translate(_JS)


_JAVA_XML = {ord("\\"): "\\\\", ord('"'): '\\"', ord(">"): "&gt;"}
_JAVA_XML_SPECIAL = re.compile('[\\\\">\ud800-\udfff]')


def java_xml_value(value: str) -> str:
    """Escape ``value`` for the Java client's ``xml`` parser (spec 14.2 fix 9).

    ``\\`` and ``"`` are backslash-escaped (the parser undoes that); ``>``
    cannot be carried and becomes the text ``&gt;`` (documented, lossy); a
    lone surrogate, which UTF-8 cannot carry, becomes U+FFFD.
    """
    if _JAVA_XML_SPECIAL.search(value) is None:
        return value
    return _SURROGATE.sub("\ufffd", value).translate(_JAVA_XML)


def _xml_table() -> dict[int, str | None]:
    table: dict[int, str | None] = {code: None for code in range(0x20)}
    table.update({
        ord("\t"): "&#9;", ord("\n"): "&#10;", ord("\r"): "&#13;",
        ord("<"): "&lt;", ord(">"): "&gt;", ord('"'): "&quot;", ord("'"): "&#039;",
        ord("\\"): "&#092;", ord("&"): "&amp;", 0xFFFE: None, 0xFFFF: None,
    })
    for code in range(0xD800, 0xE000):
        table[code] = "\ufffd"
    return table


_XML = _xml_table()
_XML_SPECIAL = re.compile("[\x00-\x1f<>\"'\\\\&\ufffe\uffff\ud800-\udfff]")


def xml_attribute(value: str) -> str:
    """Escape ``value`` for a double-quoted XML attribute (spec 6.5 and 14.1.10).

    The six characters of spec 6.5 become entities; tab, LF and CR become
    character references so parsers keep them; other characters XML 1.0
    forbids are dropped and lone surrogates become U+FFFD.
    """
    if _XML_SPECIAL.search(value) is None:
        return value
    return value.translate(_XML)


_HTML = {ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;", ord('"'): "&quot;", ord("'"): "&#x27;"}


def html_text(value: str) -> str:
    """Escape ``value`` for HTML text or a quoted attribute."""
    return _SURROGATE.sub("\ufffd", value).translate(_HTML)


#: A field name every format can carry unescaped (spec 14.1.15).
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")


def valid_name(name: str) -> bool:
    """Whether ``name`` can be written as a field name in every format."""
    return len(name) <= 128 and FIELD_NAME.match(name) is not None
