// Scenarios run by tests/socketio/test_sio_node_client.py with the real socket.io client (v4):
//   node scenarios.js <name> <origin>
// Each prints one JSON object of what it saw and exits 0, or prints the error and exits 1.
"use strict";
const http = require("http");
const { io } = require("socket.io-client");

const [name, origin] = process.argv.slice(2);
const sockets = [];

function open(path, options) {
  const socket = io(origin + (path || ""), { reconnection: false, forceNew: true, ...options });
  sockets.push(socket);
  return socket;
}
function once(emitter, event) {
  return new Promise((resolve) => emitter.once(event, (...args) => resolve(args)));
}
function connected(socket) {
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
  });
}
async function until(check, what) {
  for (let i = 0; i < 200; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error("timed out waiting for " + what);
}
async function hook(path, body) {
  const response = await fetch(origin + "/test/" + path, { method: "POST", body: JSON.stringify(body || {}) });
  return response.json();
}

const scenarios = {
  async basic() {
    const r = {};
    const s = open("", {});
    s.io.on("open", () => {
      r.first = s.io.engine.transport.name;
      s.io.engine.on("upgrade", (transport) => { r.upgraded = transport.name; });
    });
    await connected(s);
    await until(() => r.upgraded, "the upgrade");
    r.rooms = await s.emitWithAck("join", "/chat/room1");
    const s2 = await connected(open("", { transports: ["websocket"] }));
    await s2.emitWithAck("join", "/chat/room1");
    const said = once(s, "said");
    const saidToo = once(s2, "said");
    r.sayAck = await s2.emitWithAck("say", "/chat/room1", { text: "hi" }, 2);
    r.said = await said;
    r.saidToo = await saidToo;
    r.echo = await s.emitWithAck("echo", 1, "two", { three: [3] }, null);
    const binary = await s.emitWithAck("echo", Buffer.from([1, 2, 3]), { nested: Buffer.from("xyz") });
    r.binary = [Array.from(binary[0]), Buffer.from(binary[1].nested).toString()];
    const everyone = once(s, "everyone");
    await s2.emitWithAck("everyone", "all!");
    r.everyone = await everyone;
    s.on("question", (q, callback) => callback("answer-" + q));
    const answered = once(s, "answered");
    r.ask = await s.emitWithAck("ask");
    r.answered = await answered;
    await s.emitWithAck("leave", "/chat/room1");
    let late = 0;
    s.on("said", () => late++);
    await s2.emitWithAck("say", "/chat/room1", "after leave");
    await s.emitWithAck("echo");  // a round trip: anything for s would have come before
    r.afterLeave = late;
    const admin = open("/admin", {});
    await connected(admin);
    r.admin = await admin.emitWithAck("whoami");
    r.adminId = admin.id;
    const unknown = open("/nope", {});
    r.unknownNamespace = await connected(unknown).then(() => "connected", (e) => e.message);
    const refused = open("", { auth: { refuse: "yes" } });
    r.refused = await connected(refused).then(() => "connected", (e) => [e.message, e.data]);
    return r;
  },

  async polling() {
    const r = {};
    const s = await connected(open("", { transports: ["polling"] }));
    r.rooms = await s.emitWithAck("join", "/chat/poll");
    const said = once(s, "said");
    r.sayAck = await s.emitWithAck("say", "/chat/poll", "over polling");
    r.said = await said;
    const binary = await s.emitWithAck("echo", Buffer.from("bytes"));
    r.binary = Buffer.from(binary[0]).toString();
    const published = once(s, "data");
    await hook("publish", { subject: "/chat/poll", fields: { price: "42" } });
    r.published = await published;
    r.transport = s.io.engine.transport.name;
    return r;
  },

  async fallback() {
    const r = {};
    const s = await connected(open("", { transports: ["websocket", "polling"], tryAllTransports: true }));
    r.fallback = s.io.engine.transport.name;
    r.echo = await s.emitWithAck("echo", "still works");
    const d = await connected(open("", {}));
    await new Promise((resolve) => setTimeout(resolve, 300));
    r.defaultClient = d.io.engine.transport.name;
    r.echoDefault = await d.emitWithAck("echo", "polling only");
    return r;
  },

  async recover() {
    const r = {};
    const s = open("", { reconnection: true, reconnectionDelay: 300, reconnectionDelayMax: 300 });
    await connected(s);
    await s.emitWithAck("join", "/chat/rec");
    const seen = [];
    s.on("data", (fields, offset) => seen.push([fields.n, offset]));
    await hook("publish", { subject: "/chat/rec", fields: { n: "0" } });
    await until(() => seen.length === 1, "the first event");
    r.offset = seen[0][1];
    const id = s.id;
    const gone = once(s, "disconnect");
    await hook("drop", {}, "");
    await fetch(origin + "/test/drop?sid=" + id, { method: "POST" });
    r.reason = (await gone)[0];
    for (const n of ["1", "2", "3"]) await hook("publish", { subject: "/chat/rec", fields: { n } });
    await once(s, "connect");
    r.recovered = s.recovered;
    r.sameId = s.id === id;
    await until(() => seen.length === 4, "the missed events");
    r.seen = seen.map((pair) => pair[0]);
    await hook("publish", { subject: "/chat/rec", fields: { n: "4" } });
    await until(() => seen.length === 5, "a live event after recovery");
    r.after = seen[4][0];
    return r;
  },

  // Against a round-robin balancer over several `twistd pushpy` nodes (built-in events only).
  async cluster() {
    const r = {};
    const s = await connected(open("", { transports: ["polling"] }));
    r.sid = s.io.engine.id;
    r.subscribed = await s.emitWithAck("subscribe", "/chat/cluster");
    const t = await connected(open("", { transports: ["polling"] }));
    const said = once(s, "said");
    r.published = await t.emitWithAck("publish", "/chat/cluster", "said", { text: "hi" }, Buffer.from([0, 1, 255]));
    const got = await said;
    r.said = [got[0], Array.from(got[1])];
    // Default transports: the upgrade probe may land on a node that does not hold the session
    // (refused: the client keeps polling) or on the one that does (upgraded).
    const d = await connected(open("", {}));
    await new Promise((resolve) => setTimeout(resolve, 500));
    r.defaultTransport = d.io.engine.transport.name;
    const heard = once(d, "said");
    r.defaultSubscribed = await d.emitWithAck("subscribe", "/chat/cluster");
    await t.emitWithAck("publish", "/chat/cluster", "said", "to both");
    r.defaultHeard = await heard;
    return r;
  },

  // Nodes with socketio.recovery=true behind the balancer. Prints "ready <engine sid>" once it has
  // event 0: the test then SIGKILLs the node holding the session and publishes events 1 to 3.
  async clusterRecover() {
    const r = {};
    const s = open("", { transports: ["polling"], reconnection: true, reconnectionDelay: 300,
                         reconnectionDelayMax: 300 });
    await connected(s);
    r.subscribed = await s.emitWithAck("subscribe", "/chat/crec");
    const seen = [];
    s.on("data", (fields, offset) => seen.push([fields.n, offset]));
    await s.emitWithAck("publish", "/chat/crec", "data", { n: "0" });
    await until(() => seen.length === 1, "the first event");
    const id = s.id;
    const gone = once(s, "disconnect");
    const back = new Promise((resolve) => s.io.once("reconnect", resolve));
    console.log("ready " + s.io.engine.id);
    r.reason = (await gone)[0];
    await back;
    await until(() => s.connected, "the reconnection");
    r.recovered = s.recovered;
    r.sameId = s.id === id;
    r.engine = s.io.engine.id;
    await until(() => seen.length === 4, "the missed events");
    await s.emitWithAck("publish", "/chat/crec", "data", { n: "4" });
    await until(() => seen.length === 5, "a live event after recovery");
    r.seen = seen.map((pair) => pair[0]);
    return r;
  },

  async cross() {
    const r = { sse: [] };
    const stream = await new Promise((resolve, reject) => {
      const request = http.get(origin + "/pushlet/sse?subject=/chat/cross", (response) => {
        response.setEncoding("utf8");
        let buffer = "";
        response.on("data", (chunk) => {
          buffer += chunk;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            for (const line of block.split("\n")) {
              if (line.startsWith("data:")) {
                const message = JSON.parse(line.slice(5));
                if (message.type === "open") resolve(request);
                if (message.type === "event") r.sse.push(message.fields);
              }
            }
          }
        });
      });
      request.on("error", reject);
    });
    const listener = await connected(open("", {}));
    await listener.emitWithAck("join", "/chat/cross");
    const talker = await connected(open("", { transports: ["websocket"] }));
    const heard = [];
    listener.on("said", (...args) => heard.push(["said", args]));
    listener.on("data", (fields) => heard.push(["data", fields.text]));
    await talker.emitWithAck("say", "/chat/cross", { text: "from socket.io" });
    await hook("publish", { subject: "/chat/cross", fields: { text: "from pushpy" } });
    await until(() => heard.length === 2 && r.sse.length === 2, "both events on both sides");
    r.heard = heard;
    stream.destroy();
    return r;
  },
};

const timer = setTimeout(() => { console.log("timeout"); process.exit(2); }, 20000);
scenarios[name]()
  .then((result) => {
    console.log(JSON.stringify(result));
    clearTimeout(timer);
    for (const socket of sockets) socket.close();
    setTimeout(() => process.exit(0), 50);
  })
  .catch((error) => {
    console.log("error: " + (error && error.stack || error));
    process.exit(1);
  });
