"""The socket.io client bundle (``socket.io-client/dist``) in headless Chromium.

The page ``/test/sio.html`` of ``serve.py`` loads the bundle; each test runs
one async function in the page and checks what it returns.
"""

from __future__ import annotations

from typing import Any

HELPERS = """
window.connected = (socket) => new Promise((resolve, reject) => {
  socket.once("connect", () => resolve(socket));
  socket.once("connect_error", reject);
});
window.until = async (check, what) => {
  for (let i = 0; i < 400; i++) { if (check()) return; await new Promise((r) => setTimeout(r, 25)); }
  throw new Error("timed out waiting for " + what);
};
window.hook = (path, body) => fetch("/test/" + path, {method: "POST", body: JSON.stringify(body || {})})
  .then((r) => r.json());
"""


def run(browser: Any, origin: str, script: str) -> Any:
    context = browser.new_context()
    try:
        context.add_init_script(HELPERS)
        page = context.new_page()
        page.goto(origin + "/test/sio.html")
        return page.evaluate(script)
    finally:
        context.close()


def test_browser_connects_upgrades_joins_and_gets_acks_and_broadcasts(browser, sio_server):
    result = run(browser, sio_server.origin, """async () => {
      const r = {};
      const s = io({reconnection: false});
      s.io.on("open", () => {
        r.first = s.io.engine.transport.name;
        s.io.engine.on("upgrade", (t) => { r.upgraded = t.name; });
      });
      await connected(s);
      await until(() => r.upgraded, "the upgrade");
      r.rooms = await s.emitWithAck("join", "/chat/browser");
      const said = new Promise((resolve) => s.once("said", (...args) => resolve(args)));
      const other = await connected(io({forceNew: true, transports: ["polling"]}));
      r.ack = await other.emitWithAck("say", "/chat/browser", "<b>hi</b>", {n: 1});
      r.said = await said;
      const bytes = await s.emitWithAck("echo", new Uint8Array([7, 8, 9]).buffer);
      r.binary = Array.from(new Uint8Array(bytes[0]));
      s.close(); other.close();
      return r;
    }""")
    assert result["first"] == "polling" and result["upgraded"] == "websocket"
    assert result["rooms"][1:] == ["/chat/browser"]
    assert result["ack"] == "ok" and result["said"] == ["<b>hi</b>", {"n": 1}]
    assert result["binary"] == [7, 8, 9]


def test_browser_recovers_missed_events_after_a_cut(browser, recovery_server):
    result = run(browser, recovery_server.origin, """async () => {
      const r = {};
      const s = io({reconnectionDelay: 200, reconnectionDelayMax: 200});
      await connected(s);
      await s.emitWithAck("join", "/chat/cut");
      const seen = [];
      s.on("data", (fields) => seen.push(fields.n));
      await hook("publish", {subject: "/chat/cut", fields: {n: "a"}});
      await until(() => seen.length === 1, "the first event");
      const id = s.id;
      const gone = new Promise((resolve) => s.once("disconnect", resolve));
      await fetch("/test/drop?sid=" + id, {method: "POST"});
      await gone;
      for (const n of ["b", "c"]) await hook("publish", {subject: "/chat/cut", fields: {n}});
      await new Promise((resolve) => s.once("connect", resolve));
      r.recovered = s.recovered;
      r.sameId = s.id === id;
      await until(() => seen.length === 3, "the missed events");
      r.seen = seen;
      s.close();
      return r;
    }""")
    assert result == {"recovered": True, "sameId": True, "seen": ["a", "b", "c"]}
