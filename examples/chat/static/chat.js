/*
 * The chat page: plain ES5 on pushpy.js, over any transport (?transport=iframe
 * forces one).  Messages and typing notices are published through pushpy; the
 * sender shown is the event's p_user, which the server sets to the publisher's
 * user.  The app's JSON API (/api/...) logs in and makes rooms and groups.
 * Everything other users wrote is shown with textContent, never parsed as HTML.
 */
(function (window, document) {
  'use strict';

  var TYPING_EVERY = 2000;   // ms between our typing notices while typing
  var TYPING_SHOWN = 4000;   // ms a typing notice is shown
  var HISTORY = 50;          // messages shown when joining a room or group
  var state = {
    user: null, client: null, rooms: [], conversations: {}, current: null,
    online: {}, onlineLoaded: false, onlineBuffer: [], lastTyping: 0
  };
  window.chat = state;  // for the curious (and the tests)

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text != null) {
      node.textContent = text;
    }
    return node;
  }

  function api(method, name, body, callback) {
    var xhr = new XMLHttpRequest();
    xhr.open(method, '/api/' + name, true);
    if (body) {
      xhr.setRequestHeader('Content-Type', 'application/json');
    }
    xhr.onreadystatechange = function () {
      var answer = null;
      if (xhr.readyState !== 4) {
        return;
      }
      try {
        answer = JSON.parse(xhr.responseText);
      } catch (e) {
        answer = {error: 'no answer (HTTP ' + xhr.status + ')'};
      }
      if (callback) {
        callback(xhr.status === 200 ? null : (answer && answer.error) || 'failed', answer);
      }
    };
    xhr.send(body ? JSON.stringify(body) : null);
  }

  function showError(text) {
    $('error').textContent = text || '';
  }

  function param(name) {
    var match = new RegExp('[?&]' + name + '=([^&#]*)').exec(window.location.search);
    return match ? decodeURIComponent(match[1]) : null;
  }

  /* ---------------------------------------------------------- conversations
   * key: 'room:NAME', 'group:ID' or 'user:NAME' (private).  Rooms and groups are
   * the subjects <base>/msg and <base>/typing; private messages come to every
   * session of a user, without a subscription (pushpy's user events).
   */
  function conversation(key, title) {
    var conv = state.conversations[key];
    if (!conv) {
      conv = state.conversations[key] = {
        key: key, kind: key.split(':')[0], name: key.substring(key.indexOf(':') + 1),
        title: title || key, messages: [], ids: {}, unread: 0, joined: false,
        loaded: false, early: [], typing: {}
      };
      if (conv.kind !== 'user') {
        conv.base = '/chat/' + conv.kind + '/' + conv.name;
      } else {
        conv.loaded = true;  // private messages have no history here
      }
    }
    return conv;
  }

  function join(conv) {
    if (conv.joined) {
      return;
    }
    conv.joined = true;
    conv.loaded = conv.kind === 'user';
    if (conv.base) {
      // Events sent to this user carry no id and any subject label: only published ones count here.
      state.client.subscribe(conv.base + '/msg', function (fields, event) {
        if (event.id) {
          received(conv, fields, event.id);
        }
      });
      state.client.subscribe(conv.base + '/typing', function (fields, event) {
        if (event.id) {
          typing(conv, fields.p_user);
        }
      });
      // Asked after the subscribe, answered after it (the server keeps a client's order): the
      // history overlaps what the subscription delivers, and duplicates are dropped by id.
      state.client.history(conv.base + '/msg', HISTORY, function (error, events) {
        var early = conv.early, i;
        if (error) {
          showError(error.message);
          return;
        }
        conv.loaded = true;
        conv.early = [];
        for (i = 0; i < events.length; i++) {
          received(conv, events[i].fields, events[i].id, true);
        }
        for (i = 0; i < early.length; i++) {
          received(conv, early[i].fields, early[i].id);
        }
        render();
      });
    }
    render();
  }

  function leave(conv) {
    if (!conv.joined || !conv.base) {
      return;
    }
    conv.joined = false;
    state.client.unsubscribe(conv.base + '/msg');
    state.client.unsubscribe(conv.base + '/typing');
    conv.messages = [];
    conv.ids = {};
    if (state.current === conv.key) {
      state.current = null;
    }
    render();
  }

  function open(key, title) {
    var conv = conversation(key, title);
    join(conv);
    state.current = key;
    conv.unread = 0;
    render();
    $('text').focus();
  }

  /* A message (live or from history) of `conv`; duplicates (by event id) are dropped. */
  function received(conv, fields, id, old) {
    if (!conv.loaded) {
      conv.early.push({fields: fields, id: id});
      return;
    }
    if (id) {
      if (conv.ids[id]) {
        return;
      }
      conv.ids[id] = true;
    }
    conv.messages.push({from: fields.p_user, text: fields.text, id: id});
    if (conv.messages.length > 500) {
      conv.messages.shift();
    }
    delete conv.typing[fields.p_user];
    if (!old && state.current !== conv.key && fields.p_user !== state.user) {
      conv.unread += 1;
    }
    render();
  }

  function typing(conv, from) {
    if (!from || from === state.user) {
      return;
    }
    conv.typing[from] = new Date().getTime() + TYPING_SHOWN;
    renderTyping();
    setTimeout(renderTyping, TYPING_SHOWN + 50);
  }

  /*
   * An event sent to this user (every tab): private messages and typing from a
   * user (p_user says who; our own messages come back with `to`), new groups
   * from the app (the server's events have no p_user).
   */
  function personal(fields, event) {
    var other, conv;
    if (event.to !== 'user' || !event.subject) {
      return;  // published on a subject, not sent to this user
    }
    if (event.subject === '/chat/private' && fields.p_user) {
      other = fields.p_user === state.user ? fields.to : fields.p_user;
      if (!other) {
        return;
      }
      conv = conversation('user:' + other, other);
      conv.joined = true;
      if (fields.kind === 'typing') {
        typing(conv, fields.p_user);
      } else {
        received(conv, fields, null);
      }
    } else if (event.subject === '/chat/groups' && !fields.p_user && fields.kind === 'group') {
      join(conversation('group:' + fields.group, fields.name));
    }
  }

  /* Publish a message in `conv`: on its subject, or to the other user and then to our own tabs. */
  function send(conv, text) {
    var fields = {text: text, to: conv.name};
    function failed(error) {
      showError(error ? error.message.replace(/^pushpy: /, '') : '');
      return !!error;
    }
    if (conv.kind !== 'user') {
      state.client.publish(conv.base + '/msg', {text: text}, failed);
    } else if (conv.name === state.user) {
      state.client.publish('/chat/private', fields, {user: state.user}, failed);
    } else {
      state.client.publish('/chat/private', fields, {user: conv.name}, function (error) {
        if (!failed(error)) {
          state.client.publish('/chat/private', fields, {user: state.user}, failed);
        }
      });
    }
  }

  function notifyTyping(conv) {
    if (conv.kind !== 'user') {
      state.client.publish(conv.base + '/typing', {});
    } else if (conv.name !== state.user) {
      state.client.publish('/chat/private', {kind: 'typing', to: conv.name}, {user: conv.name});
    }
  }

  /* ---------------------------------------------------------- who is online */

  function presence(fields) {
    if (!state.onlineLoaded) {
      state.onlineBuffer.push(fields);
      return;
    }
    if (fields.action === 'join') {
      state.online[fields.user] = true;
    } else if (fields.action === 'leave') {
      delete state.online[fields.user];
    }
    render();
  }

  /* Who is online now (pushpy's presence of '/online'); join/leave events that came meanwhile follow. */
  function loadOnline() {
    state.client.presence('/online', function (error, users) {
      var buffered = state.onlineBuffer, name, i;
      if (error) {
        showError(error.message);
        return;
      }
      state.online = {};
      for (name in users) {
        if (users.hasOwnProperty(name)) {
          state.online[name] = true;
        }
      }
      state.onlineLoaded = true;
      state.onlineBuffer = [];
      for (i = 0; i < buffered.length; i++) {
        presence(buffered[i]);
      }
      render();
    });
  }

  /* ---------------------------------------------------------- rendering */

  function item(list, key, label, extra) {
    var conv = state.conversations[key], li = el('li'), button = el('button', null, label);
    button.type = 'button';
    li.setAttribute('data-key', key);
    if (conv && conv.joined) {
      li.className = 'joined';
    }
    if (state.current === key) {
      li.className += ' current';
    }
    button.onclick = function () {
      open(key, label);
    };
    li.appendChild(button);
    if (conv && conv.unread) {
      li.appendChild(el('span', 'unread', String(conv.unread)));
    }
    if (extra) {
      li.appendChild(el('small', null, ' ' + extra));
    }
    list.appendChild(li);
  }

  function clear(node) {
    while (node.firstChild) {
      node.removeChild(node.firstChild);
    }
  }

  function render() {
    var rooms = $('rooms'), groups = $('groups'), online = $('online'), messages = $('messages'),
        conv = state.current && state.conversations[state.current], names = [], key, i, li;
    clear(rooms);
    for (i = 0; i < state.rooms.length; i++) {
      item(rooms, 'room:' + state.rooms[i], '#' + state.rooms[i]);
    }
    clear(groups);
    for (key in state.conversations) {
      if (state.conversations.hasOwnProperty(key) && state.conversations[key].kind === 'group') {
        item(groups, key, state.conversations[key].title);
      }
    }
    clear(online);
    for (key in state.online) {
      if (state.online.hasOwnProperty(key)) {
        names.push(key);
      }
    }
    names.sort();
    for (i = 0; i < names.length; i++) {
      if (names[i] === state.user) {
        li = el('li', 'self', names[i] + ' (you)');
        li.setAttribute('data-key', 'user:' + names[i]);
        online.appendChild(li);
      } else {
        item(online, 'user:' + names[i], names[i]);
      }
    }
    $('title').textContent = conv ? conv.title : 'Pick a room';
    $('leave').hidden = !conv || conv.kind !== 'room';
    $('say-form').hidden = !conv;
    clear(messages);
    if (conv) {
      for (i = 0; i < conv.messages.length; i++) {
        li = el('li', 'message' + (conv.messages[i].from === state.user ? ' mine' : ''));
        li.appendChild(el('span', 'from', conv.messages[i].from));
        li.appendChild(el('span', 'text', conv.messages[i].text));
        messages.appendChild(li);
      }
      messages.scrollTop = messages.scrollHeight;
    }
    renderTyping();
  }

  function renderTyping() {
    var conv = state.current && state.conversations[state.current], now = new Date().getTime(), who = [], name;
    if (conv) {
      for (name in conv.typing) {
        if (conv.typing.hasOwnProperty(name)) {
          if (conv.typing[name] > now) {
            who.push(name);
          } else {
            delete conv.typing[name];
          }
        }
      }
    }
    $('typing').textContent = who.length ? who.sort().join(', ') + (who.length > 1 ? ' are' : ' is') +
      ' typing\u2026' : '';
  }

  /* ---------------------------------------------------------- start */

  function connect(me) {
    var client, forced = param('transport');
    state.user = me.user;
    state.rooms = me.rooms;
    $('login').hidden = true;
    $('main').hidden = false;
    $('me').textContent = me.user;
    client = state.client = pushpy.connect(forced ? {transport: forced} : {});
    client.on('open', function (info) {
      $('status').textContent = 'connected (' + info.transport + ')';
      state.transport = info.transport;
      state.onlineLoaded = false;
      loadOnline();
    });
    client.on('close', function (info) {
      if (info.reconnecting) {
        $('status').textContent = 'reconnecting';
      }
    });
    client.on('gap', function () {
      showError('some messages may be missing: reload the page');
    });
    client.on('event', personal);
    client.subscribe('/presence/online', presence);
    client.subscribe('/chat/rooms', function (fields) {
      if (fields.kind === 'room' && state.rooms.indexOf(fields.room) < 0) {
        state.rooms.push(fields.room);
        render();
      }
    });
    for (var i = 0; i < me.groups.length; i++) {
      join(conversation('group:' + me.groups[i].id, me.groups[i].name));
    }
    open('room:general', '#general');
  }

  function start() {
    $('login-form').onsubmit = function (e) {
      e.preventDefault();
      api('POST', 'login', {name: $('login-name').value}, function (error) {
        if (error) {
          $('login-error').textContent = error;
          return;
        }
        api('GET', 'me', null, function (error, me) {
          if (!error) {
            connect(me);
          }
        });
      });
    };
    $('logout').onclick = function () {
      // Leave pushpy at once (the online list updates now, not after the session timeout).
      state.client.leave();
      api('POST', 'logout', {}, function () {
        window.location.reload();
      });
    };
    $('say-form').onsubmit = function (e) {
      var text = $('text').value;
      e.preventDefault();
      if (!state.current || !/\S/.test(text)) {
        return;
      }
      send(state.conversations[state.current], text);
      $('text').value = '';
      state.lastTyping = 0;
    };
    $('text').oninput = function () {
      var now = new Date().getTime();
      if (state.current && now - state.lastTyping > TYPING_EVERY) {
        state.lastTyping = now;
        notifyTyping(state.conversations[state.current]);
      }
    };
    $('leave').onclick = function () {
      if (state.current) {
        leave(state.conversations[state.current]);
      }
    };
    $('room-form').onsubmit = function (e) {
      e.preventDefault();
      api('POST', 'rooms', {name: $('room-name').value}, function (error, answer) {
        showError(error);
        if (!error) {
          $('room-name').value = '';
          if (state.rooms.indexOf(answer.room) < 0) {
            state.rooms.push(answer.room);
          }
          open('room:' + answer.room, '#' + answer.room);
        }
      });
    };
    $('group-form').onsubmit = function (e) {
      var members = $('group-members').value.split(','), list = [], i;
      e.preventDefault();
      for (i = 0; i < members.length; i++) {
        if (/\S/.test(members[i])) {
          list.push(members[i].replace(/^\s+|\s+$/g, ''));
        }
      }
      api('POST', 'groups', {name: $('group-name').value, members: list}, function (error, answer) {
        showError(error);
        if (!error) {
          $('group-name').value = $('group-members').value = '';
          open('group:' + answer.group.id, answer.group.name);
        }
      });
    };
    api('GET', 'me', null, function (error, me) {
      if (!error) {
        connect(me);  // still logged in (the token cookie)
      }
    });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
}(window, document));
