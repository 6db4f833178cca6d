/* pushpy demo page: the sample feeds, live, over the Pushlet protocol itself.
 *
 * A hidden iframe loads pushlet.srv?p_event=join-listen&p_format=js&...; the
 * server answers with scripts that call parent.push('name', "value", ...),
 * which lands in the global push() below.
 *
 * Stream mode: that response never ends.  Pull mode (forced by the server
 * for user agents containing "safari", so for every Chrome and Safari): each
 * response ends with a script that sets `url` and reloads the iframe there
 * after p_wait ms; the next response calls push() again.  Either way the
 * iframe's load event means "a response ended": with a refresh URL pending
 * that is pull mode working, otherwise (abort, error page, server gone) the
 * page reconnects.  A watchdog also reconnects after a long silence.
 *
 * Data is rendered with textContent only.  Plain ES5, no dependencies.
 */

var SUBJECTS = '/temperature,/stocks/aex,/system,/pushlet/ping,/demo/chat';
var JOIN_URL = 'pushlet.srv?p_event=join-listen&p_format=js&p_subject=' + SUBJECTS;
var SILENCE_LIMIT = 45000;   // ms without any push() before reconnecting
var SILENCE_WARNING = 25000; // ms without any push() before the status says so
var RETRY_DELAY = 3000;      // ms before reconnecting after the channel ended

var demo = {
  frame: null,
  sessionId: null,
  mode: null,
  events: 0,
  pings: 0,
  lastSeen: 0,
  retry: null,
  stocks: {}
};

/* Called by the iframe's scripts: arguments alternate name, value. */
function push() {
  var event = {};
  for (var i = 0; i + 1 < arguments.length; i += 2) {
    event[String(arguments[i])] = String(arguments[i + 1]);
  }
  demo.lastSeen = Date.now();
  handleEvent(event);
}

function handleEvent(event) {
  var name = event.p_event || '';
  if (name === 'join-listen-ack' || name === 'listen-ack') {
    demo.sessionId = event.p_id;
    demo.mode = event.p_mode;
    setFormEnabled(true);
  } else if (name === 'data') {
    demo.events += 1;
    showData(event.p_subject || '', event);
  } else if (name === 'abort') {
    demo.sessionId = null;  // gone: nothing to leave
    setFormEnabled(false);
    setStatus('bad', 'The server ended the session; reconnecting\u2026');
    reconnectSoon();
    return;
  } else if (/nack$/.test(name)) {
    setStatus('bad', 'Refused by the server: ' + (event.p_reason || name));
    return;
  }
  if (demo.sessionId) {
    setStatus('ok', 'Connected: session ' + demo.sessionId + ', ' + demo.mode + ' mode, ' +
              'events received: ' + demo.events + ', last at ' + clockTime(new Date()));
  }
}

function showData(subject, event) {
  if (subject === '/temperature') {
    var row = keyedItem('temperature', event.number, 'tr', ['', 'num']);
    row.cells[0].textContent = event.city;
    row.cells[1].textContent = event.value + ' \u00b0C';
    flash(row);
  } else if (subject === '/stocks/aex') {
    showStock(event);
  } else if (subject === '/system/jvm') {
    text('sys-total', bytes(event.totalMemory));
    text('sys-free', bytes(event.freeMemory));
    text('sys-max', bytes(event.maxMemory));
    text('sys-threads', event.threads);
  } else if (subject === '/system/pushlet') {
    text('sys-pushlet', event.publisher);
  } else if (subject === '/pushlet/ping') {
    demo.pings += 1;
    text('ping-count', demo.pings);
    text('ping-time', clockTime(new Date()));
  } else if (subject.indexOf('/demo') === 0) {
    showChat(subject, event);
  }
}

function showStock(event) {
  var cell = keyedItem('stocks', event.number, 'div', ['', 'num']);
  var before = demo.stocks[event.number];
  var rate = parseFloat(event.rate);
  cell.className = 'stock';
  cell.children[0].textContent = event.name;
  cell.children[1].textContent = event.rate + (before === undefined ? '  ' :
      rate > before ? ' \u25b2' : rate < before ? ' \u25bc' : ' =');
  cell.children[1].className = 'num ' + (rate > before ? 'up' : rate < before ? 'down' : '');
  demo.stocks[event.number] = rate;
  flash(cell);
}

function showChat(subject, event) {
  var log = document.getElementById('chat-log');
  var line = document.createElement('div');
  var who = event.p_from === demo.sessionId ? 'you' : (event.p_from || 'server');
  var when = event.p_time ? new Date(parseInt(event.p_time, 10) * 1000) : new Date();
  line.textContent = clockTime(when) + ' ' + who +
      (subject === '/demo/chat' ? '' : ' on ' + subject) + ': ' + (event.text || '');
  log.appendChild(line);
  while (log.children.length > 100) {
    log.removeChild(log.firstChild);
  }
  log.scrollTop = log.scrollHeight;
}

/* The element of `container` for `key`, created in key order with one child per class. */
function keyedItem(container, key, tag, classes) {
  var parent = document.getElementById(container);
  var id = container + '-' + String(key).replace(/[^A-Za-z0-9_-]/g, '_');
  var item = document.getElementById(id);
  if (item) {
    return item;
  }
  item = document.createElement(tag);
  item.id = id;
  item.setAttribute('data-order', key);
  for (var i = 0; i < classes.length; i++) {
    var child = document.createElement(tag === 'tr' ? 'td' : 'span');
    child.className = classes[i];
    item.appendChild(child);
  }
  var next = null;
  for (var j = 0; j < parent.children.length; j++) {
    if (Number(parent.children[j].getAttribute('data-order')) > Number(key)) {
      next = parent.children[j];
      break;
    }
  }
  parent.insertBefore(item, next);
  return item;
}

function flash(element) {
  element.classList.add('fresh');
  setTimeout(function () { element.classList.remove('fresh'); }, 600);
}

function text(id, value) {
  document.getElementById(id).textContent = value === undefined ? '\u2013' : String(value);
}

function bytes(value) {
  var n = Number(value);
  if (!isFinite(n)) {
    return '\u2013';
  }
  return n >= 10 * 1073741824 ? (n / 1073741824).toFixed(1) + ' GB' : (n / 1048576).toFixed(1) + ' MB';
}

function clockTime(date) {
  return date.toTimeString().slice(0, 8);
}

function setStatus(kind, message) {
  var status = document.getElementById('status');
  status.className = kind;
  status.textContent = message;
}

/* -- the data channel ---------------------------------------------------- */

function connect() {
  clearTimeout(demo.retry);
  demo.retry = null;
  if (demo.frame) {
    demo.frame.parentNode.removeChild(demo.frame);
  }
  if (demo.sessionId) {
    request('leave', demo.sessionId, '');
  }
  demo.sessionId = null;
  setFormEnabled(false);
  setStatus('wait', 'Connecting\u2026');
  var frame = document.createElement('iframe');
  frame.id = 'pushlet-frame';
  frame.title = 'Pushlet data channel';
  frame.tabIndex = -1;
  frame.setAttribute('aria-hidden', 'true');
  frame.onload = function () { channelEnded(frame); };
  frame.src = JOIN_URL;
  document.body.appendChild(frame);
  demo.frame = frame;
  demo.lastSeen = Date.now();
}

/* A response in the iframe finished loading. */
function channelEnded(frame) {
  if (frame !== demo.frame) {
    return;
  }
  var refreshing = false;
  try {
    var url = frame.contentWindow.url;
    refreshing = typeof url === 'string' && url.indexOf('p_event=refresh') >= 0;
  } catch (e) {
    refreshing = false;
  }
  if (!refreshing && !demo.retry) {
    setStatus('bad', 'The data channel closed; reconnecting\u2026');
    reconnectSoon();
  }
}

function reconnectSoon() {
  clearTimeout(demo.retry);
  demo.retry = setTimeout(connect, RETRY_DELAY);
}

function watchdog() {
  var silence = Date.now() - demo.lastSeen;
  if (demo.retry) {
    return;
  }
  if (silence > SILENCE_LIMIT) {
    setStatus('bad', 'Nothing received for ' + SILENCE_LIMIT / 1000 + ' s; reconnecting\u2026');
    connect();
  } else if (silence > SILENCE_WARNING && demo.sessionId) {
    setStatus('wait', 'Session ' + demo.sessionId + ': nothing received for ' +
              Math.round(silence / 1000) + ' s\u2026');
  }
}

/* A control request over XHR; `query` is already URL-encoded. */
function request(eventName, sessionId, query, done) {
  var xhr = new XMLHttpRequest();
  xhr.open('GET', 'pushlet.srv?p_event=' + eventName + '&p_id=' + encodeURIComponent(sessionId) + query, true);
  xhr.onload = function () { if (done) { done(xhr.status, xhr.responseText); } };
  xhr.onerror = function () { if (done) { done(0, ''); } };
  xhr.send();
}

/* -- publishing ---------------------------------------------------------- */

function setFormEnabled(enabled) {
  document.getElementById('chat-form').querySelector('button').disabled = !enabled;
}

function publish(form) {
  var subject = form.elements.subject.value;
  var message = form.elements.text.value;
  if (!demo.sessionId || !subject || !message) {
    return;
  }
  var query = '&p_subject=' + encodeURIComponent(subject) + '&text=' + encodeURIComponent(message);
  request('publish', demo.sessionId, query, function (status, body) {
    if (status === 200 && body.indexOf('publish-ack') >= 0) {
      form.elements.text.value = '';
      text('chat-error', '');
    } else {
      text('chat-error', status ? 'Publish refused (HTTP ' + status + ')' : 'Publish failed: no connection');
    }
  });
}

document.getElementById('chat-form').onsubmit = function (event) {
  event.preventDefault();
  publish(this);
};

window.addEventListener('pagehide', function () {
  if (demo.sessionId && navigator.sendBeacon) {
    navigator.sendBeacon('pushlet.srv?p_event=leave&p_id=' + encodeURIComponent(demo.sessionId));
  }
});

/* Start after the page has loaded, so a stream does not keep the page "loading". */
if (document.readyState === 'complete') {
  connect();
} else {
  window.addEventListener('load', connect);
}
setInterval(watchdog, 5000);
