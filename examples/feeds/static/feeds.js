/*
 * The live-feeds page: a ticker subscribed to a /stocks prefix chosen in the Watch menu,
 * and tiles fed by /system.  Everything from the server goes in with textContent.
 * window.feeds holds what arrived (the tests read it).
 */
(function () {
  'use strict';

  var MARKETS = {
    aex: ['asml', 'shell', 'ing', 'philips', 'heineken', 'kpn'],
    nasdaq: ['aapl', 'msft', 'nvda', 'amzn', 'goog', 'intc']
  };
  var TRANSPORTS = ['websocket', 'sse', 'xhr', 'iframe', 'longpoll', 'poll'];
  var TAPE_LENGTH = 10;
  var CPU_POINTS = 60;

  var feeds = window.feeds = {
    watch: null,       // the prefix the ticker is subscribed to
    ticks: [],         // subjects of the stock events received since the last change of watch
    system: 0,         // /system events received
    state: 'connecting'
  };
  var rows = {};       // subject -> {row, cells}
  var cpuHistory = [];
  var lastDelivered = null;

  function $(id) {
    return document.getElementById(id);
  }

  function param(name) {
    var match = new RegExp('[?&]' + name + '=([^&#]*)').exec(window.location.search);
    return match ? decodeURIComponent(match[1].replace(/\+/g, ' ')) : null;
  }

  function setText(id, text) {
    $(id).textContent = text;
  }

  function setStatus(text, kind) {
    var status = $('status');
    status.textContent = text;
    status.className = kind || '';
  }

  /* ---------------------------------------------------------------- the Watch menu */

  function fillWatchMenu() {
    var select = $('watch'), market, i, option;
    for (market in MARKETS) {
      if (Object.prototype.hasOwnProperty.call(MARKETS, market)) {
        option = document.createElement('option');
        option.value = '/stocks/' + market;
        option.textContent = market.toUpperCase() + ' (/stocks/' + market + ')';
        select.appendChild(option);
        for (i = 0; i < MARKETS[market].length; i++) {
          option = document.createElement('option');
          option.value = '/stocks/' + market + '/' + MARKETS[market][i];
          option.textContent = '\u00a0\u00a0' + MARKETS[market][i].toUpperCase() + ' (' + option.value + ')';
          select.appendChild(option);
        }
      }
    }
  }

  function validWatch(value) {
    var select = $('watch'), i;
    for (i = 0; i < select.options.length; i++) {
      if (select.options[i].value === value) {
        return true;
      }
    }
    return false;
  }

  /* ---------------------------------------------------------------- the ticker */

  function onStock(fields, event) {
    var entry = rows[event.subject], up = fields.change && fields.change.charAt(0) !== '-';
    if (!fields.symbol || !fields.price) {
      return;  // someone else's event under the prefix: not a price
    }
    feeds.ticks.push(event.subject);
    if (!entry) {
      entry = rows[event.subject] = makeRow();
      entry.cells[0].insertBefore(document.createTextNode((fields.symbol || '').toUpperCase() + ' '),
                                  entry.name);
      entry.name.textContent = fields.name || '';
      entry.cells[1].textContent = (fields.market || '').toUpperCase();
      entry.row.setAttribute('data-subject', event.subject);
      insertSorted(entry.row, event.subject);
    }
    entry.ticks += 1;
    entry.cells[2].textContent = fields.price || '';
    entry.cells[3].textContent = fields.change || '';
    entry.cells[4].textContent = fields.percent || '';
    entry.cells[5].textContent = String(entry.ticks);
    entry.cells[3].className = entry.cells[4].className = 'num ' + (up ? 'up' : 'down');
    flash(entry.row, up ? 'flash-up' : 'flash-down');
    addToTape(fields, up);
  }

  function makeRow() {
    var row = document.createElement('tr'), cells = [], name = document.createElement('span'), i, cell;
    for (i = 0; i < 6; i++) {
      cell = document.createElement('td');
      if (i >= 2) {
        cell.className = 'num';
      }
      row.appendChild(cell);
      cells.push(cell);
    }
    name.className = 'muted';
    cells[0].appendChild(name);
    return {row: row, cells: cells, name: name, ticks: 0};
  }

  function insertSorted(row, subject) {
    var body = $('stocks'), i, other;
    for (i = 0; i < body.rows.length; i++) {
      other = body.rows[i].getAttribute('data-subject');
      if (other > subject) {
        body.insertBefore(row, body.rows[i]);
        return;
      }
    }
    body.appendChild(row);
  }

  function flash(row, name) {
    row.className = name;
    setTimeout(function () {
      if (row.className === name) {
        row.className = '';
      }
    }, 120);
  }

  function addToTape(fields, up) {
    var tape = $('tape'), item = document.createElement('span');
    item.className = up ? 'up' : 'down';
    item.textContent = (fields.symbol || '').toUpperCase() + ' ' + (fields.price || '') + ' ' +
      (up ? '\u25b2' : '\u25bc') + (fields.percent || '') + '%';
    tape.insertBefore(item, tape.firstChild);
    while (tape.childNodes.length > TAPE_LENGTH) {
      tape.removeChild(tape.lastChild);
    }
  }

  function watch(client, prefix) {
    var subject;
    if (feeds.watch) {
      client.unsubscribe(feeds.watch, onStock);
    }
    for (subject in rows) {
      if (Object.prototype.hasOwnProperty.call(rows, subject)) {
        rows[subject].row.parentNode.removeChild(rows[subject].row);
      }
    }
    rows = {};
    feeds.ticks = [];
    $('tape').textContent = '';
    feeds.watch = prefix;
    $('watch').value = prefix;
    setText('watching', 'subscribed to ' + prefix);
    if (window.history && window.history.replaceState) {
      window.history.replaceState(null, '', '?watch=' + encodeURIComponent(prefix) +
        (param('transport') ? '&transport=' + encodeURIComponent(param('transport')) : ''));
    }
    client.subscribe(prefix, onStock);
  }

  /* ---------------------------------------------------------------- the dashboard */

  function onHost(fields) {
    var used;
    feeds.system += 1;
    if (fields.cpu != null) {
      setText('cpu', fields.cpu + ' %');
      $('cpu-bar').style.width = Math.min(100, parseFloat(fields.cpu) || 0) + '%';
      cpuHistory.push(parseFloat(fields.cpu) || 0);
      if (cpuHistory.length > CPU_POINTS) {
        cpuHistory.shift();
      }
      drawCpu();
    }
    if (fields.load1 != null) {
      setText('load', fields.load1 + ' / ' + fields.load5 + ' / ' + fields.load15);
    }
    if (fields.memTotal && fields.memAvailable) {
      used = 100 * (fields.memTotal - fields.memAvailable) / fields.memTotal;
      setText('memory', used.toFixed(0) + ' %');
      setText('memory-label', 'memory used of ' + (fields.memTotal / 1024).toFixed(1) + ' GiB');
      $('memory-bar').style.width = used.toFixed(1) + '%';
    }
  }

  function onServer(fields) {
    var delivered = parseInt(fields.delivered, 10), uptime = parseInt(fields.uptime, 10), now = new Date().getTime();
    feeds.system += 1;
    setText('sessions', fields.sessions);
    if (lastDelivered) {
      setText('rate', Math.max(0, (delivered - lastDelivered.count) /
        Math.max(0.001, (now - lastDelivered.time) / 1000)).toFixed(0));
    }
    lastDelivered = {count: delivered, time: now};
    setText('uptime', Math.floor(uptime / 60) + ' min ' + (uptime % 60) + ' s');
  }

  function drawCpu() {
    var canvas = $('cpu-chart'), g = canvas.getContext && canvas.getContext('2d'), i, x, y, step;
    if (!g) {
      return;
    }
    g.clearRect(0, 0, canvas.width, canvas.height);
    g.strokeStyle = '#4a7bd0';
    g.lineWidth = 2;
    g.beginPath();
    step = canvas.width / (CPU_POINTS - 1);
    for (i = 0; i < cpuHistory.length; i++) {
      x = (CPU_POINTS - cpuHistory.length + i) * step;
      y = canvas.height - 2 - (canvas.height - 4) * Math.min(100, cpuHistory[i]) / 100;
      if (i === 0) {
        g.moveTo(x, y);
      } else {
        g.lineTo(x, y);
      }
    }
    g.stroke();
  }

  /* ---------------------------------------------------------------- start */

  function start() {
    var options = {}, transport = param('transport'), wanted = param('watch') || '/stocks', client;
    fillWatchMenu();
    if (transport && TRANSPORTS.indexOf(transport) >= 0) {
      options.transport = transport;
    }
    client = feeds.client = pushpy.connect(options);
    client.on('open', function () {
      feeds.state = 'open';
      setStatus('Live, over ' + client.transport, 'ok');
    });
    client.on('close', function () {
      feeds.state = 'closed';
      setStatus('Disconnected, reconnecting\u2026', 'bad');
    });
    client.subscribe('/system/host', onHost);
    client.subscribe('/system/server', onServer);
    watch(client, validWatch(wanted) ? wanted : '/stocks');
    $('watch').onchange = function () {
      watch(client, this.value);
    };
  }

  start();
}());
