"""XSS proof in headless Chromium: hostile values through every format and transport execute nothing.

Each hostile value, if it ever ran as script or markup, calls ``top.__pwned``
(or opens a dialog, or inserts an element).  The values go out through a
server-side publish, the back-end publish API and a page's own publish, to
pushpy.js on each of its six transports, to Pushlet's ``js`` format in a
hidden iframe, and to the ``xml`` and ``xml-strict`` formats read by the page;
error pages and the ``js`` refresh script get hostile URLs.  Values are
compared in the page as UTF-16 code units: intact everywhere, except for the
documented substitutions of the XML formats (``docs/pushlet.md``).
"""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from typing import Any

import pytest
from browser_support import SERVER_SETTINGS, Server

pytestmark = pytest.mark.browser

API_KEY = "xss-test-api-key-0123456789"
TRANSPORTS = ["websocket", "sse", "xhr", "iframe", "longpoll", "poll"]
FAST = {"reconnectDelay": 100, "maxReconnectDelay": 1000, "pollInterval": 150}

HOSTILE = {
    "script_close": "</script><script>top.__pwned('script_close')</script>",
    "script_close_upper": "</SCRIPT ><script >top.__pwned('upper')</script>",
    "comment": "<!--<script>top.__pwned('comment')</script>-->",
    "separators": "a\u2028b\u2029c;top.__pwned('separators')",
    "quotes": "\"'`);top.__pwned('quotes');//",
    "backslashes": "\\\\\\\";top.__pwned('bs')//\\'\\u0041\\x3c\\",
    "nul": "a\x00b\x00</script>",
    "lone_surrogates": "x\ud800y\udfffz\udbff",
    "js_url": "javascript:top.__pwned('js_url')",
    "img": "<img src=x onerror=\"top.__pwned('img')\">",
    "svg": "<svg onload=top.__pwned('svg')>",
    "cdata": "]]><![CDATA[<script>top.__pwned('cdata')</script>",
    "entities": "&lt;script&gt;&#60;&amp;",
    "newlines": "l1\nl2\r\nl3\rdata: {\"type\":\"event\"}\n\n",
    "controls": "\x01\x08\x0b\x1f\x7f\x9f",
}
#: Values that can travel in a URL too (``encodeURIComponent`` refuses lone surrogates).
URL_SAFE = {k: v for k, v in HOSTILE.items() if k != "lone_surrogates"}

WATCH = """
window.__hits = [];
window.__pwned = function (what) { window.__hits.push(String(what)); };
window.__units = function (s) {
  var out = [];
  for (var i = 0; i < s.length; i++) { out.push(s.charCodeAt(i)); }
                                return out; };
"""


def units(value: str) -> list[int]:
    """The UTF-16 code units of ``value``, as a JS string holds them."""
    data = value.encode("utf-16-le", "surrogatepass")
    return [int.from_bytes(data[i:i + 2], "little") for i in range(0, len(data), 2)]


def strict_xml(value: str) -> str:
    """``xml-strict``'s documented substitution: XML-forbidden controls dropped, lone surrogates U+FFFD."""
    value = re.sub("[\ud800-\udfff]", "\ufffd", value)
    return re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]", "", value)


def java_xml(value: str) -> str:
    """``xml``'s documented substitution: ``>`` becomes the text ``&gt;``, lone surrogates U+FFFD."""
    return re.sub("[\ud800-\udfff]", "\ufffd", value).replace(">", "&gt;")


@pytest.fixture(scope="module")
def server():
    """A server with the publish API on, and streams for Chromium (no forced pull for its Safari UA)."""
    running = Server(f"api.key={API_KEY}", "listen.force.pull.agents=", *SERVER_SETTINGS)
    yield running
    running.stop()


def api_publish(server: Server, subject: str, fields: dict[str, str]) -> None:
    request = urllib.request.Request(
        server.origin + "/pushlet/api/publish", method="POST",
        data=json.dumps({"subject": subject, "fields": fields}).encode(),
        headers={"Content-Type": "application/json", "X-Pushpy-Key": API_KEY})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def subject() -> str:
    return f"/xss{uuid.uuid4().hex[:10]}"


def assert_inert(page: Any) -> None:
    """Nothing ran: no ``__pwned`` call, no dialog, no injected element in any frame."""
    page.page.wait_for_timeout(200)  # let any injected image, svg or script run
    assert page.js("() => window.__hits") == []
    assert page.dialogs == []
    for frame in page.page.frames:
        assert frame.evaluate("() => document.querySelectorAll('img, svg').length") == 0


def compare(page: Any, name: str, expected: dict[str, str]) -> list[dict[str, Any]]:
    """For each field map in the page's ``window[name]``, the fields that differ from ``expected``.

    The comparison runs in the page on UTF-16 code units, so lone surrogates
    and NULs are compared exactly as JavaScript holds them.
    """
    want = {key: units(value) for key, value in expected.items()}
    return page.js("""([name, want]) => window[name].map(function (fields) {
        var wrong = {};
        Object.keys(want).forEach(function (key) {
          var got = fields[key] === undefined ? null : window.__units(fields[key]);
          if (JSON.stringify(got) !== JSON.stringify(want[key])) { wrong[key] = got; }
        });
        return wrong;
      })""", [name, want])


def page_with_watch(open_page: Any) -> Any:
    """A test page that records any ``__pwned`` call, in itself and every frame it opens."""
    return open_page(init_script=WATCH)


# -- pushpy.js, every transport ----------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_hostile_values_reach_pushpy_js_intact_and_inert(open_page, server, transport):
    """Server, API and page publishes of hostile values reach pushpy.js on each transport unchanged."""
    page = page_with_watch(open_page)
    topic = subject()
    client = page.open([topic], transport=transport, **FAST)
    server.publish(topic + "/server", HOSTILE)
    api_publish(server, topic + "/api", HOSTILE)
    error, _ = page.js("""([i, s, want]) => {
        var fields = {};
        Object.keys(want).forEach(function (k) { fields[k] = String.fromCharCode.apply(null, want[k]); });
        return H.publish(i, s, fields);
      }""", [client, topic + "/page", {k: units(v) for k, v in HOSTILE.items()}])
    assert error is None
    page.wait_received(client, 3)
    page.js("i => { window.__native = H.clients[i].got.map(function (e) { return e.fields; }); }", client)
    assert compare(page, "__native", HOSTILE) == [{}, {}, {}]
    assert_inert(page)


# -- Pushlet formats -----------------------------------------------------------------

JS_STREAM = """([url]) => new Promise(function (resolve) {
    window.__pushlet = [];
    window.push = function () {
      var fields = {};
      for (var i = 0; i + 1 < arguments.length; i += 2) { fields[arguments[i]] = arguments[i + 1]; }
      if (fields.p_event === 'data') { window.__pushlet.push(fields); }
      if (fields.p_event === 'hb' || fields.p_event === 'join-listen-ack') { resolve(true); }
    };
    var frame = document.createElement('iframe');
    frame.src = url;
    document.body.appendChild(frame);
  })"""


def test_hostile_values_through_the_pushlet_js_format_in_a_hidden_iframe(open_page, server):
    """The ``js`` format streams hostile values to ``parent.push`` unchanged; nothing else runs."""
    page = page_with_watch(open_page)
    topic = subject()
    url = f"/pushlet/pushlet.srv?p_event=join-listen&p_format=js&p_mode=stream&p_subject={topic}"
    assert page.js(JS_STREAM, [url]) is True
    server.publish(topic, HOSTILE)
    api_publish(server, topic + "/api", HOSTILE)
    page.wait("() => window.__pushlet.length >= 2")
    assert compare(page, "__pushlet", HOSTILE) == [{}, {}]
    assert_inert(page)


def pull(page: Any, server: Server, fmt: str, topic: str, values: dict[str, str]) -> str:
    """A pull-mode Pushlet session of ``fmt`` read by the page: the body of the refresh with the events."""
    first = page.js("u => fetch(u).then(function (r) { return r.text(); })",
                    f"/pushlet/pushlet.srv?p_event=join-listen&p_format={fmt}&p_mode=pull&p_subject={topic}")
    session = re.search(r'p_id="([^"]+)"', first).group(1)
    server.publish(topic, values)
    return page.js("u => fetch(u).then(function (r) { return r.text(); })",
                   f"/pushlet/pushlet.srv?p_event=refresh&p_id={session}")


def test_hostile_values_through_xml_strict_with_its_documented_substitutions(open_page, server):
    """``xml-strict`` parses in the browser's DOMParser; values arrive intact but for the documented
    substitution (XML-forbidden controls dropped, lone surrogates U+FFFD)."""
    page = page_with_watch(open_page)
    body = pull(page, server, "xml-strict", subject(), HOSTILE)
    page.js("""text => {
        var doc = new DOMParser().parseFromString(text, 'text/xml');
        if (doc.getElementsByTagName('parsererror').length) { throw new Error('not well-formed: ' + text); }
        window.__strict = Array.prototype.filter.call(doc.getElementsByTagName('event'), function (e) {
          return e.getAttribute('p_event') === 'data';
        }).map(function (e) {
          var fields = {};
          Array.prototype.forEach.call(e.attributes, function (a) { fields[a.name] = a.value; });
          return fields;
        });
      }""", body)
    assert compare(page, "__strict", {k: strict_xml(v) for k, v in HOSTILE.items()}) == [{}]
    assert_inert(page)


def test_hostile_values_through_the_java_xml_format_with_its_documented_substitution(open_page, server):
    """``xml`` read with the Java client's rules arrives intact but for ``>`` (the text ``&gt;``) and lone
    surrogates (U+FFFD); shown as a page it is plain text and runs nothing."""
    page = page_with_watch(open_page)
    topic = subject()
    body = pull(page, server, "xml", topic, HOSTILE)
    page.js(r"""text => {
        window.__java = [];
        var event = /<event ((?:[\w.-]+="(?:[^"\\]|\\.)*" )*)\/>/g, m, a;
        var pair = /([\w.-]+)="((?:[^"\\]|\\.)*)" /g;
        while ((m = event.exec(text))) {
          var fields = {};
          while ((a = pair.exec(m[1]))) { fields[a[1]] = a[2].replace(/\\([\s\S])/g, '$1'); }
          if (fields.p_event === 'data') { window.__java.push(fields); }
        }
      }""", body)
    assert compare(page, "__java", {k: java_xml(v) for k, v in HOSTILE.items()}) == [{}]
    page.js("""u => new Promise(function (resolve) {
        var frame = document.createElement('iframe');
        frame.onload = function () { resolve(true); };
        frame.src = u;
        document.body.appendChild(frame);
      })""", f"/pushlet/pushlet.srv?p_event=join-listen&p_format=xml&p_mode=poll&p_subject={topic}")
    assert_inert(page)


# -- URLs echoed into pages ---------------------------------------------------------

def test_hostile_urls_in_error_pages_and_the_refresh_script_run_nothing(open_page, server):
    """Error pages and the ``js`` refresh script echo hostile URL parts escaped: nothing runs, and the
    refresh URL the script holds is exactly the request's path."""
    from urllib.parse import quote

    page = page_with_watch(open_page)
    hostile_path = "/pushlet/pushlet.srv/" + quote("</script><script>top.__pwned('path')</script>'\\\u2028",
                                                   safe="")
    urls = [f"/pushlet/pushlet.srv?p_event=refresh&p_id={quote(v, safe='')}" for v in URL_SAFE.values()]
    urls += [f"/pushlet/pushlet.srv?p_event=join&p_format={quote(v, safe='')}" for v in URL_SAFE.values()]
    urls += [f"/pushlet/iframe?callback={quote(v, safe='')}" for v in URL_SAFE.values()]
    urls += [f"/pushlet/poll?subject=/a&last_event_id={quote(v, safe='')}" for v in URL_SAFE.values()]
    urls.append(hostile_path + "?p_event=join-listen&p_format=js&p_mode=pull&p_subject=/a")
    loaded = page.js("""urls => Promise.all(urls.map(function (u) {
        return new Promise(function (resolve) {
          var frame = document.createElement('iframe');
          frame.onload = function () { resolve(frame.contentWindow.url === undefined ? null
                                                : window.__units(frame.contentWindow.url)); };
          frame.src = u;
          document.body.appendChild(frame);
        });
      }))""", urls)
    assert_inert(page)
    refresh_url = page.js("u => new URL(u, location.href).pathname", hostile_path) + "?p_id="
    assert loaded[-1][:len(units(refresh_url))] == units(refresh_url)
