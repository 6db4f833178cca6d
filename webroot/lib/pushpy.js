/*
 * pushpy.js: the browser client of pushpy's own JSON protocol (docs/protocol.md).
 *
 * Plain ES5 in one file, no build step, no dependency:
 *
 *   <script src="/pushlet/lib/pushpy.js"></script>
 *   var c = pushpy.connect();                       // root URL: the folder before lib/
 *   c.subscribe('/chat', function (fields, event) { ... });
 *   c.publish('/chat', {text: 'hi'}, function (err, ack) { ... });
 *   c.on('open' | 'close' | 'error' | 'gap' | 'transport' | 'event' | 'unsubscribed', fn);
 *   c.close();
 *
 * Transports, in the order tried: WebSocket, Server-Sent Events, XHR streaming,
 * hidden iframe, long-poll, poll (`transport` forces one, `transports` sets the
 * list).  A transport that fails before its `open` message is replaced by the
 * next; a streaming one that stays silent past `openTimeout` (a proxy buffers
 * it) is replaced by long-poll.  Lost connections come back after a jittered
 * exponential backoff and resume from the last event id: nothing is lost, events
 * are delivered once, and a gap the server cannot fill is reported as `gap`.
 * Data is only ever parsed with JSON.parse and handed to the application.
 * The iframe transport and `POST send` need the page and the server on one origin
 * (XHR streaming, long-poll and poll also work cross-origin where the server allows CORS).
 */
(function (window, document) {
  'use strict';

  var TRANSPORTS = ['websocket', 'sse', 'xhr', 'iframe', 'longpoll', 'poll'];
  var STREAMING = {websocket: true, sse: true, xhr: true, iframe: true};
  var DEFAULTS = {
    openTimeout: 4000,        // ms for a streaming transport to deliver `open`
    reconnectDelay: 1000,     // first reconnect delay, ms (jittered, doubled per failure)
    maxReconnectDelay: 30000,
    pollInterval: 3000,       // ms between `poll` requests
    requestTimeout: 45000,    // ms a long-poll may take before it counts as lost
    heartbeatTimeout: 0,      // ms without data before a stream counts as dead (0: 2 heartbeats + 2 s)
    leaveOnUnload: true       // end the session when the page is closed for good (not when it goes to bfcache)
  };
  var MAX_SEEN = 2000;        // event ids remembered for de-duplication
  var MAX_URL_SUBJECTS = 32;  // subjects carried in a connect URL (server: limit.subjects.per.subscription)
  var ROOT = scriptRoot();
  var serial = 0;

  function noop() {}

  function isArray(value) {
    return Object.prototype.toString.call(value) === '[object Array]';
  }

  function indexOf(list, item) {
    for (var i = 0; i < list.length; i++) {
      if (list[i] === item) {
        return i;
      }
    }
    return -1;
  }

  function later(fn) {
    setTimeout(fn, 0);
  }

  function rethrow(error) {
    setTimeout(function () { throw error; }, 0);
  }

  /* The folder before lib/ of this script's own URL, e.g. http://host/pushlet/ */
  function scriptRoot() {
    var script = document.currentScript, scripts, src, i;
    if (!script) {
      scripts = document.getElementsByTagName('script');
      for (i = scripts.length - 1; i >= 0; i--) {
        if (/pushpy(\.min)?\.js([?#]|$)/.test(scripts[i].src || '')) {
          script = scripts[i];
          break;
        }
      }
    }
    src = script && script.src;
    if (!src) {
      return absolute('/pushlet/');
    }
    src = src.split('#')[0].split('?')[0];
    i = src.lastIndexOf('/lib/');
    return i >= 0 ? src.substring(0, i + 1) : src.substring(0, src.lastIndexOf('/') + 1);
  }

  function absolute(url) {
    var a = document.createElement('a');
    a.href = url;
    return a.href;
  }

  function supported(name) {
    switch (name) {
    case 'websocket':
      return !!window.WebSocket;
    case 'sse':
      return !!window.EventSource;
    case 'iframe':
      return !!(window.XMLHttpRequest && document.createElement);
    case 'xhr':
    case 'longpoll':
    case 'poll':
      return !!window.XMLHttpRequest;
    }
    return false;
  }

  function splitSubjects(subject) {
    var parts = String(subject).split(','), out = [], i;
    for (i = 0; i < parts.length; i++) {
      if (parts[i]) {
        out.push(parts[i]);
      }
    }
    return out;
  }

  /*
   * `subjects` (a comma list) without the parts overlapping `revoked`: the server's rule for
   * `unsubscribed` (at, under or above it, as string prefixes).
   */
  function withoutRevoked(subjects, revoked) {
    var parts = splitSubjects(subjects), kept = [], i;
    for (i = 0; i < parts.length; i++) {
      if (parts[i].lastIndexOf(revoked, 0) !== 0 && revoked.lastIndexOf(parts[i], 0) !== 0) {
        kept.push(parts[i]);
      }
    }
    return kept.join(',');
  }

  /* Whether an event on `subject` matches `pattern` (a comma list of string prefixes). */
  function matches(pattern, subject) {
    var parts = splitSubjects(pattern), i;
    if (!subject) {
      return false;
    }
    for (i = 0; i < parts.length; i++) {
      if (subject.lastIndexOf(parts[i], 0) === 0) {
        return true;
      }
    }
    return false;
  }

  /*
   * POST `text` to `url` without waiting for an answer, surviving the page's unload:
   * navigator.sendBeacon, else a keepalive fetch, else an XHR (old browsers).  The
   * body is text/plain, a CORS-safelisted type: no preflight, even cross-origin.
   */
  function beacon(url, text) {
    var xhr;
    try {
      if (window.navigator && window.navigator.sendBeacon && window.navigator.sendBeacon(url, text)) {
        return;
      }
    } catch (e) {}
    try {
      if (window.fetch) {
        window.fetch(url, {method: 'POST', body: text, keepalive: true, credentials: 'include'})['catch'](noop);
        return;
      }
    } catch (e) {}
    try {
      xhr = new XMLHttpRequest();
      xhr.open('POST', url, true);
      xhr.setRequestHeader('Content-Type', 'text/plain;charset=UTF-8');
      xhr.send(text);
    } catch (e) {}
  }

  function query(params) {
    var out = [], name;
    for (name in params) {
      if (Object.prototype.hasOwnProperty.call(params, name) && params[name] != null && params[name] !== '') {
        out.push(encodeURIComponent(name) + '=' + encodeURIComponent(params[name]));
      }
    }
    return out.join('&');
  }

  /* One or several messages from a JSON text (a WebSocket frame may carry an array). */
  function parse(text) {
    var value = JSON.parse(text);
    return isArray(value) ? value : [value];
  }

  function options(given) {
    var out = {}, name;
    for (name in DEFAULTS) {
      if (Object.prototype.hasOwnProperty.call(DEFAULTS, name)) {
        out[name] = given && given[name] != null ? given[name] : DEFAULTS[name];
      }
    }
    return out;
  }

  /* ---------------------------------------------------------------- transports
   * Each starts one connection attempt `conn` and reports through
   * client._receive(conn, messages), client._lost(conn, reason[, now]) and, for
   * long-poll, client._answer(conn, answer).  Each sets conn.abort (stop, quietly)
   * and, for WebSocket, conn.send(text).
   */
  var start = {};

  start.websocket = function (client, conn) {
    var url = client.url.replace(/^http/, 'ws') + 'ws?' + client._query(conn), ws;
    try {
      ws = new window.WebSocket(url);
    } catch (e) {
      later(function () { client._lost(conn, 'websocket refused: ' + e.message); });
      return;
    }
    ws.onmessage = function (e) {
      client._text(conn, e.data);
    };
    ws.onclose = function (e) {
      client._lost(conn, 'websocket closed (' + e.code + ')');
    };
    ws.onerror = noop;  // onclose follows
    conn.send = function (text) {
      ws.send(text);
    };
    conn.abort = function () {
      ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close();
      } catch (e) {}
    };
  };

  start.sse = function (client, conn) {
    var source = new window.EventSource(client.url + 'sse?' + client._query(conn));
    source.onmessage = function (e) {
      client._text(conn, e.data);
    };
    // Heartbeats come as a comment (for proxies) and a named 'hb' event (for this watchdog).
    source.addEventListener('hb', function () {
      client._text(conn, '{"type":"hb"}');
    });
    source.onerror = function () {
      // Reconnect ourselves, with a fresh URL (the browser's own retry would reuse the old query).
      client._lost(conn, 'event stream error');
    };
    conn.abort = function () {
      source.onmessage = source.onerror = null;
      source.close();
    };
  };

  start.xhr = function (client, conn) {
    var xhr = new XMLHttpRequest(), offset = 0;
    function read() {
      var text, end, line;
      if (xhr.readyState < 3 || xhr.status !== 200) {
        return;
      }
      text = xhr.responseText;
      while (!conn.ended && (end = text.indexOf('\n', offset)) >= 0) {
        line = text.substring(offset, end);
        offset = end + 1;
        if (/\S/.test(line)) {
          client._text(conn, line);
        }
      }
    }
    xhr.onreadystatechange = function () {
      read();
      if (xhr.readyState === 4) {
        client._lost(conn, xhr.status === 200 ? 'stream ended' : 'HTTP status ' + xhr.status);
      }
    };
    xhr.onprogress = read;
    xhr.open('GET', client.url + 'xhr?' + client._query(conn), true);
    xhr.send(null);
    conn.abort = function () {
      xhr.onreadystatechange = xhr.onprogress = noop;
      xhr.abort();
    };
  };

  start.iframe = function (client, conn) {
    var name = 'pushpy_frame_' + (++serial) + '_' + Math.floor(Math.random() * 1e9),
        frame = document.createElement('iframe'), style = frame.style;
    window[name] = function (message) {
      client._receive(conn, isArray(message) ? message : [message]);
    };
    style.position = 'absolute';
    style.width = style.height = '0';
    style.border = '0';
    style.visibility = 'hidden';
    frame.setAttribute('aria-hidden', 'true');
    frame.setAttribute('tabindex', '-1');
    frame.onload = function () {
      client._lost(conn, 'iframe stream ended');
    };
    frame.src = client.url + 'iframe?' + client._query(conn) + '&callback=parent.' + name;
    (document.body || document.documentElement).appendChild(frame);
    conn.abort = function () {
      window[name] = noop;  // a script still running in the frame finds a function
      setTimeout(function () {
        try {
          delete window[name];
        } catch (e) {
          window[name] = undefined;
        }
      }, 30000);
      frame.onload = null;
      if (frame.parentNode) {
        frame.parentNode.removeChild(frame);
      }
    };
  };

  function polling(wait) {
    return function (client, conn) {
      var xhr = null, timer = null;
      function request() {
        timer = null;
        // The first request is a `poll`: it answers at once, so the session opens at once.
        var path = wait && conn.opened ? 'longpoll' : 'poll', sent = client._query(conn);
        xhr = new XMLHttpRequest();
        xhr.open('GET', client.url + path + '?' + sent, true);
        xhr.timeout = wait ? client.options.requestTimeout : Math.max(client.options.openTimeout, 10000);
        xhr.onload = function () {
          var answer;
          if (xhr.status !== 200) {
            client._lost(conn, 'HTTP status ' + xhr.status);
            return;
          }
          try {
            answer = JSON.parse(xhr.responseText);
          } catch (e) {
            client._lost(conn, 'bad answer: ' + e.message);
            return;
          }
          client._answer(conn, answer);
          if (!conn.ended) {
            timer = setTimeout(request, wait ? 0 : client.options.pollInterval);
          }
        };
        xhr.onerror = function () {
          client._lost(conn, 'request failed');
        };
        xhr.ontimeout = function () {
          client._lost(conn, 'request timed out');
        };
        xhr.send(null);
      }
      conn.abort = function () {
        if (timer) {
          clearTimeout(timer);
        }
        if (xhr) {
          xhr.onload = xhr.onerror = xhr.ontimeout = noop;
          xhr.abort();
        }
      };
      request();
    };
  }

  start.longpoll = polling(true);
  start.poll = polling(false);

  /* ---------------------------------------------------------------- the client */

  /**
   * A connection to a pushpy server that survives transport failures.
   *
   * options: url (root, default: the folder before this script's lib/),
   * transport (force one), transports (the list to try, in order),
   * lastEventId (resume from there, e.g. an id kept across page loads),
   * openTimeout, reconnectDelay, maxReconnectDelay, pollInterval,
   * requestTimeout, heartbeatTimeout (ms), leaveOnUnload (default true:
   * leave() when the page is closed or navigated away from for good).
   */
  function Client(given) {
    var self = this, names = [], list, i;
    given = given || {};
    this.options = options(given);
    this.url = absolute(given.url || ROOT);
    if (this.url.charAt(this.url.length - 1) !== '/') {
      this.url += '/';
    }
    list = given.transport ? [given.transport] : (given.transports || TRANSPORTS);
    for (i = 0; i < list.length; i++) {
      if (indexOf(TRANSPORTS, list[i]) < 0) {
        throw new Error('pushpy: unknown transport ' + list[i]);
      }
      if (supported(list[i])) {
        names.push(list[i]);
      }
    }
    this.transports = names;
    this.forced = !!given.transport;
    this.transport = null;     // the transport in use (or being tried)
    this.session = null;       // the server's session id
    this.sessionKey = null;    // its secret key: continuing the session needs it (docs/security.md)
    this.lastEventId = given.lastEventId || null;  // where to resume from
    this.token = given.token || null;  // a signed token, sent with every request (docs/security.md)
    this.state = 'connecting'; // 'connecting', 'open', 'closed'
    this._subs = [];           // [{subject, handlers}]
    this._serverSubs = [];     // the subscriptions the session has on the server (subject strings)
    this._listeners = {};
    this._seen = {};
    this._seenOrder = [];
    this._outbox = [];         // publishes waiting for a connection
    this._posts = [];          // messages waiting for `POST send`
    this._posting = false;
    this._pending = {};        // ref -> {callback, conn}
    this._ref = 0;
    this._conn = null;
    this._index = 0;
    this._failures = 0;
    this._worked = {};         // transports that opened at least once
    this._timer = null;
    this._unload = null;       // {name, fn}: the window listener that leaves when the page goes away
    if (this.options.leaveOnUnload) {
      this._watchUnload();
    }
    // Connect after the current script turn, so subscriptions made right away go in the first URL.
    later(function () {
      if (self.state !== 'closed' && !self._conn) {
        self._connect();
      }
    });
  }

  Client.prototype = {
    constructor: Client,

    /** Receive events on `subject` (a prefix; a comma list is several): handler(fields, event). */
    subscribe: function (subject, handler) {
      var entry = this._entry(subject);
      if (typeof handler !== 'function') {
        throw new Error('pushpy: subscribe needs a handler function');
      }
      if (!entry) {
        entry = {subject: String(subject), handlers: []};
        this._subs.push(entry);
      }
      entry.handlers.push(handler);
      this._sync(null);
      return this;
    },

    /** Stop `handler` (or every handler) receiving `subject`. */
    unsubscribe: function (subject, handler) {
      var entry = this._entry(subject), at;
      if (!entry) {
        return this;
      }
      at = handler ? indexOf(entry.handlers, handler) : -1;
      if (handler && at >= 0) {
        entry.handlers.splice(at, 1);
      }
      if (!handler || !entry.handlers.length) {
        this._subs.splice(indexOf(this._subs, entry), 1);
        this._sync(null);
      }
      return this;
    },

    /**
     * Publish `fields` (string values) on `subject`; callback(error, ack), the ack
     * carrying the event's `id`.  publish(subject, fields, {to: sessionId}, callback)
     * sends to one session, publish(subject, fields, {user: userId}, callback) to every
     * session of a user (the subject only labels it; `subject` may be null).
     */
    publish: function (subject, fields, extra, callback) {
      var message = {type: 'publish', subject: subject, fields: fields || {}};
      if (typeof extra === 'function') {
        callback = extra;
        extra = null;
      }
      if (extra && extra.to) {
        message.to = extra.to;
      }
      if (extra && extra.user) {
        message.user = extra.user;
        if (subject == null) {
          delete message.subject;
        }
      }
      return this.send(message, callback);
    },

    /**
     * The newest `count` events of exactly `subject`, oldest first (at most the server's
     * history.query.max): callback(error, events), each {subject, id, name, fields}.
     */
    history: function (subject, count, callback) {
      return this.send({type: 'history', subject: subject, count: count}, function (error, reply) {
        var out = [], list = (reply && reply.events) || [], i;
        for (i = 0; i < list.length; i++) {
          out.push({subject: list[i].subject, id: list[i].id, name: list[i].name || 'data',
                    fields: list[i].fields || {}});
        }
        if (callback) {
          callback(error, error ? null : out);
        }
      });
    },

    /** Who is on `subject` ('/online': who has a session): callback(error, {user: sessions}). */
    presence: function (subject, callback) {
      return this.send({type: 'presence', subject: subject}, function (error, reply) {
        if (callback) {
          callback(error, error ? null : (reply && reply.users) || {});
        }
      });
    },

    /** Send one protocol message (published when connected); callback(error, reply). */
    send: function (message, callback) {
      var ref = ++this._ref;
      message.ref = ref;
      if (this.state === 'closed') {
        if (callback) {
          later(function () { callback(new Error('pushpy: client closed')); });
        }
        return ref;
      }
      this._pending[ref] = {callback: callback || null, conn: null};
      if (this.state === 'open') {
        this._transmit([message]);
      } else {
        this._outbox.push(message);
      }
      return ref;
    },

    /** Listen to 'open', 'close', 'error', 'gap', 'transport', 'event' or 'unsubscribed'. */
    on: function (name, fn) {
      (this._listeners[name] = this._listeners[name] || []).push(fn);
      return this;
    },

    off: function (name, fn) {
      var list = this._listeners[name] || [], at = indexOf(list, fn);
      if (at >= 0) {
        list.splice(at, 1);
      }
      return this;
    },

    /**
     * End the session on the server now (it leaves presence at once), then close.
     * Called by itself when the page is closed (see the option leaveOnUnload).
     */
    leave: function () {
      var conn = this._conn, text = JSON.stringify({type: 'leave'});
      if (this.state !== 'closed' && this.session) {
        if (conn && conn.send && conn.opened && !conn.ended) {
          try {
            conn.send(text);  // sent before the closing handshake
            text = null;
          } catch (e) {}
        }
        if (text) {
          // No open WebSocket: `POST send` as a beacon, which outlives the page.
          beacon(this.url + 'send?' + query({session: this.session, session_key: this.sessionKey,
                                             token: this.token}), text);
        }
      }
      this.close();
    },

    /** Close for good: no reconnect; pending callbacks get an error. */
    close: function () {
      this._shut('client');
    },

    _shut: function (reason) {
      var wasOpen = this.state === 'open';
      if (this.state === 'closed') {
        return;
      }
      this.state = 'closed';
      if (this._unload) {
        window.removeEventListener(this._unload.name, this._unload.fn, false);
        this._unload = null;
      }
      if (this._timer) {
        clearTimeout(this._timer);
        this._timer = null;
      }
      if (this._conn) {
        this._end(this._conn);
      }
      this._failPending(null, 'client closed');
      this._outbox = [];
      this._emit('close', {reason: reason, reconnecting: false, wasOpen: wasOpen});
    },

    /*
     * Leave when the page goes away for good: on `pagehide`, unless the page is kept
     * in the back/forward cache (it may come back: the session then goes on), or on
     * `beforeunload` in old browsers without `pagehide`.  A session whose client just
     * vanished would otherwise stay (and its user online) until its lease runs out.
     */
    _watchUnload: function () {
      var self = this, name = 'onpagehide' in window ? 'pagehide' : 'beforeunload';
      if (!window.addEventListener) {
        return;
      }
      this._unload = {name: name, fn: function (e) {
        if (!(e && e.persisted)) {
          self.leave();
        }
      }};
      window.addEventListener(name, this._unload.fn, false);
    },

    /* -- connecting ------------------------------------------------------- */

    _connect: function () {
      var self = this, name, conn, previous = this.transport;
      this._timer = null;
      if (this.state === 'closed') {
        return;
      }
      if (!this.transports.length) {
        this.state = 'closed';
        this._emit('error', {reason: 'no supported transport'});
        return;
      }
      name = this.transports[this._index];
      conn = {transport: name, opened: false, ended: false, quiet: false, subjects: '',
              abort: noop, send: null, openTimer: null, idleTimer: null, heartbeat: 0};
      this._conn = conn;
      this.transport = name;
      this.state = 'connecting';
      if (name !== previous) {
        this._emit('transport', {from: previous, to: name});
      }
      conn.openTimer = setTimeout(function () {
        conn.openTimer = null;
        self._lost(conn, 'timeout');
      }, this.options.openTimeout);
      try {
        start[name](this, conn);
      } catch (e) {
        later(function () { self._lost(conn, 'transport failed: ' + e.message); });
      }
    },

    /* The connect query of `conn`: subjects, session, last event id. */
    _query: function (conn) {
      var subjects = [], i;
      for (i = 0; i < this._subs.length && subjects.length < MAX_URL_SUBJECTS; i++) {
        subjects = subjects.concat(splitSubjects(this._subs[i].subject));
      }
      conn.subjects = subjects.slice(0, MAX_URL_SUBJECTS).join(',');
      conn.resumeFrom = this.lastEventId;
      return query({subject: conn.subjects, session: this.session, session_key: this.sessionKey,
                    last_event_id: this.lastEventId, token: this.token});
    },

    /* `conn` is over (quietly): stop it and its timers. */
    _end: function (conn) {
      if (conn.ended) {
        return;
      }
      conn.ended = true;
      if (conn.openTimer) {
        clearTimeout(conn.openTimer);
      }
      if (conn.idleTimer) {
        clearTimeout(conn.idleTimer);
      }
      try {
        conn.abort();
      } catch (e) {}
      if (conn.send) {
        this._failPending(conn, 'connection lost');
      }
    },

    /* `conn` failed or ended: pick the transport and time of the next attempt. */
    _lost: function (conn, reason, now) {
      var name = conn.transport, delay, longpoll;
      if (conn !== this._conn || conn.ended || this.state === 'closed') {
        return;
      }
      this._end(conn);
      if (conn.opened) {
        this.state = 'connecting';
        this._emit('close', {reason: reason, reconnecting: true, wasOpen: true});
        delay = now ? 0 : this._backoff();
      } else {
        this._emit('error', {reason: reason, transport: name});
        longpoll = indexOf(this.transports, 'longpoll');
        if (this.forced || this._worked[name]) {
          delay = this._backoff();
        } else if (reason === 'timeout' && STREAMING[name] && longpoll > this._index) {
          this._index = longpoll;  // something buffers the stream: stop streaming
          delay = 0;
        } else if (this._index + 1 < this.transports.length) {
          this._index += 1;
          delay = 0;
        } else {
          this._index = 0;
          delay = this._backoff();
        }
      }
      this._schedule(delay);
    },

    _backoff: function () {
      var o = this.options,
          base = Math.min(o.maxReconnectDelay, o.reconnectDelay * Math.pow(2, Math.min(this._failures, 16)));
      this._failures += 1;
      return Math.round(base * (0.5 + Math.random() * 0.5));
    },

    _schedule: function (delay) {
      var self = this;
      if (this._timer) {
        clearTimeout(this._timer);
      }
      this._timer = setTimeout(function () { self._connect(); }, delay);
    },

    /* The first message of `conn` arrived. */
    _opened: function (conn, session, position, heartbeat, key) {
      if (conn.openTimer) {
        clearTimeout(conn.openTimer);
        conn.openTimer = null;
      }
      conn.opened = true;
      conn.heartbeat = heartbeat || 0;
      this._failures = 0;
      this._worked[conn.transport] = true;
      this.state = 'open';
      this._session(conn, session, key);
      if (position) {
        this.lastEventId = position;
      }
      this._watch(conn);
      this._emit('open', {transport: conn.transport, session: this.session});
      this._sync(conn.resumeFrom);
      if (this._outbox.length && this.state === 'open') {
        this._transmit(this._outbox.splice(0, this._outbox.length));
      }
    },

    /* The server named the session of `conn` (and its key, when new): it starts from the URL subjects. */
    _session: function (conn, session, key) {
      if (session && session !== this.session) {
        this.session = session;
        this.sessionKey = key || null;
        this._serverSubs = conn.subjects ? [conn.subjects] : [];
        return true;
      }
      return false;
    },

    /* Restart the dead-stream timer of a streaming `conn`. */
    _watch: function (conn) {
      var self = this, limit;
      if (!STREAMING[conn.transport] || conn.quiet || conn.ended) {
        return;
      }
      limit = this.options.heartbeatTimeout || ((conn.heartbeat || 20) * 2000 + 2000);
      if (conn.idleTimer) {
        clearTimeout(conn.idleTimer);
      }
      conn.idleTimer = setTimeout(function () {
        conn.idleTimer = null;
        self._lost(conn, 'heartbeat timeout');
      }, limit);
    },

    /* -- receiving -------------------------------------------------------- */

    _text: function (conn, text) {
      var messages;
      if (conn !== this._conn || conn.ended) {
        return;
      }
      try {
        messages = parse(text);
      } catch (e) {
        this._lost(conn, 'bad message: ' + e.message);
        return;
      }
      this._receive(conn, messages);
    },

    _receive: function (conn, messages) {
      var i;
      for (i = 0; i < messages.length && conn === this._conn && !conn.ended; i++) {
        if (messages[i] && typeof messages[i] === 'object') {
          this._message(conn, messages[i]);
        }
      }
      if (conn === this._conn && conn.opened && !conn.ended) {
        this._watch(conn);
      }
    },

    /* A long-poll or poll answer: {session, position, messages}. */
    _answer: function (conn, answer) {
      var renewed;
      if (conn !== this._conn || conn.ended || !answer || typeof answer !== 'object') {
        return;
      }
      if (!conn.opened) {
        this._opened(conn, answer.session, null, 0, answer.session_key);
      } else {
        renewed = this._session(conn, answer.session, answer.session_key);
      }
      this._receive(conn, isArray(answer.messages) ? answer.messages : []);
      if (conn === this._conn && !conn.ended) {
        if (answer.position) {
          this.lastEventId = answer.position;
        }
        if (renewed) {
          this._sync(conn.resumeFrom);
        }
      }
    },

    _message: function (conn, message) {
      var type = message.type;
      if (type === 'open') {
        this._opened(conn, message.session, message.position, message.heartbeat, message.session_key);
      } else if (type === 'event') {
        this._event(message);
      } else if (type === 'recovery') {
        if (!message.recovered) {
          this._emit('gap', {reason: message.reason || 'not recovered', recovered: false, dropped: null});
        }
      } else if (type === 'gap') {
        this._emit('gap', {reason: message.reason || 'gap', recovered: false,
                           dropped: message.dropped == null ? null : message.dropped});
      } else if (type === 'ack' || type === 'nack') {
        this._reply(message);
      } else if (type === 'reconnect') {
        this._lost(conn, 'reconnect', true);
      } else if (type === 'unsubscribed') {
        this._revoked(message);
      } else if (type === 'close') {
        this.session = this.sessionKey = null;  // the server ended the session: resume in a new one
        if (message.reconnect === false) {
          this._shut('closed by server: ' + (message.reason || ''));  // the application ended it
        } else {
          this._lost(conn, 'closed by server: ' + (message.reason || ''));
        }
      }
      // 'hb' and unknown types: only keep the stream alive.
    },

    /* Whether the message with `id` is new (else it was delivered before: a resume overlapped). */
    _fresh: function (id) {
      if (id == null) {
        return true;
      }
      id = String(id);
      if (this._seen['#' + id]) {
        return false;
      }
      this._seen['#' + id] = true;
      this._seenOrder.push(id);
      if (this._seenOrder.length > MAX_SEEN) {
        delete this._seen['#' + this._seenOrder.shift()];
      }
      this.lastEventId = id;
      return true;
    },

    /*
     * The server removed our subscriptions at, under and above `message.subject` (the
     * application took them back): drop them here too, so no reconnect asks for them again.
     */
    _revoked: function (message) {
      var subject = String(message.subject || ''), subs = [], dropped = [], servers = [], i, rest;
      if (!subject || !this._fresh(message.id)) {
        return;
      }
      for (i = 0; i < this._subs.length; i++) {
        rest = withoutRevoked(this._subs[i].subject, subject);
        if (rest) {
          this._subs[i].subject = rest;
          subs.push(this._subs[i]);
        } else {
          dropped.push(this._subs[i].subject);
        }
      }
      for (i = 0; i < this._serverSubs.length; i++) {
        rest = withoutRevoked(this._serverSubs[i], subject);
        if (rest) {
          servers.push(rest);
        }
      }
      this._subs = subs;
      this._serverSubs = servers;
      this._emit('unsubscribed', {subject: subject, reason: message.reason || '', subjects: dropped});
    },

    _event: function (message) {
      var id = message.id, fields = message.fields || {}, event, subs, i, j;
      if (!this._fresh(id)) {
        return;
      }
      id = id == null ? id : String(id);
      event = {subject: message.subject == null ? null : String(message.subject), id: id,
               name: message.name || 'data', fields: fields, to: message.to || null};
      // An event sent to this user, this session or everyone ('to') reached us by no subscription: its
      // subject is the sender's label, so it goes to 'event' listeners only, never to a subject's handlers.
      subs = event.to ? [] : this._subs.slice();
      for (i = 0; i < subs.length; i++) {
        if (matches(subs[i].subject, event.subject)) {
          for (j = 0; j < subs[i].handlers.length; j++) {
            try {
              subs[i].handlers[j].call(this, fields, event);
            } catch (e) {
              rethrow(e);
            }
          }
        }
      }
      this._emit('event', fields, event);
    },

    _reply: function (message) {
      var entry = message.ref != null && this._pending[message.ref], error = null;
      if (message.type === 'nack') {
        error = new Error('pushpy: ' + (message.reason || 'refused'));
        error.reply = message;
      }
      if (!entry) {
        if (error) {
          this._emit('error', {reason: message.reason || 'refused', reply: message});
        }
        return;
      }
      delete this._pending[message.ref];
      if (entry.callback) {
        try {
          entry.callback.call(this, error, message);
        } catch (e) {
          rethrow(e);
        }
      } else if (error) {
        this._emit('error', {reason: message.reason || 'refused', reply: message});
      }
    },

    /* Fail the callbacks waiting on `conn` (every one when null). */
    _failPending: function (conn, reason) {
      var ref, entry, error, failed = [];
      for (ref in this._pending) {
        if (Object.prototype.hasOwnProperty.call(this._pending, ref)) {
          entry = this._pending[ref];
          if (!conn || entry.conn === conn) {
            failed.push(entry);
            delete this._pending[ref];
          }
        }
      }
      for (ref = 0; ref < failed.length; ref++) {
        if (failed[ref].callback) {
          error = new Error('pushpy: ' + reason);
          try {
            failed[ref].callback.call(this, error, null);
          } catch (e) {
            rethrow(e);
          }
        }
      }
    },

    /* -- sending ---------------------------------------------------------- */

    /*
     * Bring the session's subscriptions on the server in line with ours.  A new
     * session holds the connect URL's comma list as one subscription: kept while
     * all its subjects are wanted, dropped when none is, and when only some are,
     * everything is subscribed anew, resuming from our position so nothing is lost.
     */
    _sync: function (resumeFrom) {
      var want = [], keep = [], present = [], remove = [], messages = [], reset = false,
          i, j, entry, parts, wanted;
      if (this.state !== 'open') {
        return;  // the next connect URL carries them
      }
      for (i = 0; i < this._subs.length; i++) {
        want.push(this._subs[i].subject);
      }
      for (i = 0; i < this._serverSubs.length && !reset; i++) {
        entry = this._serverSubs[i];
        if (indexOf(want, entry) >= 0) {
          keep.push(entry);
          present.push(entry);
          continue;
        }
        parts = splitSubjects(entry);
        for (wanted = 0, j = 0; j < parts.length; j++) {
          wanted += indexOf(want, parts[j]) >= 0 ? 1 : 0;
        }
        if (!wanted) {
          remove.push(entry);
        } else if (wanted === parts.length) {
          keep.push(entry);
          present = present.concat(parts);
        } else {
          reset = true;
        }
      }
      if (reset) {
        messages.push({type: 'unsubscribe'});
        for (i = 0; i < want.length; i++) {
          messages.push({type: 'subscribe', subject: want[i], last_event_id: this.lastEventId || undefined});
        }
        keep = want.slice();
      } else {
        for (i = 0; i < remove.length; i++) {
          messages.push({type: 'unsubscribe', subject: remove[i]});
        }
        for (i = 0; i < want.length; i++) {
          if (indexOf(present, want[i]) < 0) {
            messages.push({type: 'subscribe', subject: want[i], last_event_id: resumeFrom || undefined});
            keep.push(want[i]);
          }
        }
      }
      this._serverSubs = keep;
      for (i = 0; i < messages.length; i++) {
        messages[i].ref = ++this._ref;
        this._pending[messages[i].ref] = {callback: null, conn: null};
      }
      if (messages.length) {
        this._transmit(messages);
      }
    },

    /* Send messages over the WebSocket, or with `POST send` (one request at a time). */
    _transmit: function (messages) {
      var conn = this._conn, i;
      if (conn && conn.send && conn.opened && !conn.ended) {
        for (i = 0; i < messages.length; i++) {
          this._pending[messages[i].ref].conn = conn;
          try {
            conn.send(JSON.stringify(messages[i]));
          } catch (e) {
            this._lost(conn, 'send failed: ' + e.message);
            return;
          }
        }
        return;
      }
      this._posts = this._posts.concat(messages);
      this._post();
    },

    _post: function () {
      var self = this, batch, xhr, session = this.session;
      if (this._posting || !this._posts.length || this.state === 'closed') {
        return;
      }
      if (!session) {
        this._requeue(this._posts.splice(0, this._posts.length));
        return;
      }
      batch = this._posts.splice(0, 64);  // server: limit.params messages per request
      this._posting = true;
      xhr = new XMLHttpRequest();
      xhr.open('POST', this.url + 'send?' + query({session: session, session_key: this.sessionKey,
                                                   token: this.token}), true);
      xhr.setRequestHeader('Content-Type', 'application/json');
      xhr.onreadystatechange = function () {
        var replies, i;
        if (xhr.readyState !== 4) {
          return;
        }
        self._posting = false;
        if (self.state === 'closed') {
          return;
        }
        if (xhr.status === 200) {
          try {
            replies = JSON.parse(xhr.responseText);
          } catch (e) {
            replies = null;
          }
          for (i = 0; i < batch.length; i++) {
            self._reply(replies && replies[i] ? replies[i]
                        : {type: 'nack', ref: batch[i].ref, reason: 'no reply'});
          }
        } else if (xhr.status === 404 && session === self.session) {
          // The session is gone: nothing was done.  Publishes wait for the next session,
          // subscriptions come back with its URL.
          self.session = self.sessionKey = null;
          self._requeue(batch);
          if (self._conn && !self._conn.ended) {
            self._lost(self._conn, 'session expired');
          }
        } else {
          for (i = 0; i < batch.length; i++) {
            self._reply({type: 'nack', ref: batch[i].ref,
                         reason: xhr.status ? 'HTTP status ' + xhr.status : 'send failed'});
          }
        }
        self._post();
      };
      xhr.send(JSON.stringify(batch));
    },

    /* Unsent messages of a session that is gone: publishes wait for the next one. */
    _requeue: function (messages) {
      var i;
      for (i = 0; i < messages.length; i++) {
        if (messages[i].type === 'publish') {
          this._outbox.push(messages[i]);
        } else {
          delete this._pending[messages[i].ref];  // subscriptions come back by _sync
        }
      }
    },

    /* -- helpers ---------------------------------------------------------- */

    _entry: function (subject) {
      var i;
      for (i = 0; i < this._subs.length; i++) {
        if (this._subs[i].subject === String(subject)) {
          return this._subs[i];
        }
      }
      return null;
    },

    _emit: function (name) {
      var list = (this._listeners[name] || []).slice(), args = Array.prototype.slice.call(arguments, 1), i;
      for (i = 0; i < list.length; i++) {
        try {
          list[i].apply(this, args);
        } catch (e) {
          rethrow(e);
        }
      }
    }
  };

  window.pushpy = {
    /** A new client; see Client for the options. */
    connect: function (given) {
      return new Client(given);
    },
    Client: Client,
    transports: TRANSPORTS.slice(),
    root: ROOT,
    version: '0.1.0'
  };
}(window, document));
