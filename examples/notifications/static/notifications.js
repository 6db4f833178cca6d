/*
 * The notifications page: sign in, then receive this user's notifications (user events on
 * /notifications) in every open tab.  A notification is shown with the browser's Notification
 * API when the user allowed it, else as an in-page toast; the inbox and unread count come from
 * the server (api/inbox) and follow /notifications/read events, so every tab agrees.
 * Everything from the server goes in with textContent.  window.notifications holds what
 * happened (the tests read it).
 */
(function () {
  'use strict';

  var SUBJECT = '/notifications';
  var READ_SUBJECT = '/notifications/read';
  var TOAST_MS = 6000;

  var state = window.notifications = {
    user: null,
    unread: 0,
    received: [],     // fields of the notifications pushed to this page
    desktop: [],      // titles shown with the Notification API
    toasts: [],       // titles shown as toasts
    refreshes: 0,     // inbox loads
    client: null
  };

  function $(id) {
    return document.getElementById(id);
  }

  function api(method, name, body, callback) {
    var xhr = new XMLHttpRequest();
    xhr.open(method, 'api/' + name, true);
    if (body) {
      xhr.setRequestHeader('Content-Type', 'application/json');
    }
    xhr.onload = function () {
      var answer = null;
      try {
        answer = JSON.parse(xhr.responseText);
      } catch (e) {}
      callback(xhr.status === 200 ? null : (answer && answer.error) || 'HTTP ' + xhr.status, answer, xhr.status);
    };
    xhr.onerror = function () {
      callback('network error', null, 0);
    };
    xhr.send(body ? JSON.stringify(body) : null);
  }

  /* ---------------------------------------------------------------- showing */

  function desktopAllowed() {
    return !!window.Notification && window.Notification.permission === 'granted';
  }

  function show(fields) {
    var title = fields.title || fields.body || 'Notification', body = fields.body || '';
    if (fields.from) {
      body = (body ? body + '\n' : '') + '\u2014 ' + fields.from;
    }
    if (desktopAllowed()) {
      try {
        new window.Notification(title, {body: body, tag: 'pushpy-' + state.received.length});
        state.desktop.push(title);
        return;
      } catch (e) {
        // Some browsers allow notifications only from a service worker: fall back to a toast.
      }
    }
    toast(title, body);
  }

  function toast(title, body) {
    var box = document.createElement('div'), head = document.createElement('div'),
        text = document.createElement('div');
    box.className = 'toast';
    box.setAttribute('role', 'status');
    head.className = 'title';
    head.textContent = title;
    text.className = 'body';
    text.textContent = body;
    box.appendChild(head);
    box.appendChild(text);
    box.onclick = function () {
      remove(box);
    };
    $('toasts').appendChild(box);
    state.toasts.push(title);
    setTimeout(function () { remove(box); }, TOAST_MS);
  }

  function remove(node) {
    if (node.parentNode) {
      node.parentNode.removeChild(node);
    }
  }

  function showMode() {
    var button = $('desktop');
    if (!window.Notification) {
      $('mode').textContent = 'This browser has no desktop notifications: showing them in the page.';
    } else if (window.Notification.permission === 'granted') {
      $('mode').textContent = 'Desktop notifications are on.';
    } else if (window.Notification.permission === 'denied') {
      $('mode').textContent = 'Desktop notifications are blocked: showing them in the page.';
    } else {
      $('mode').textContent = '';
    }
    button.hidden = !window.Notification || window.Notification.permission !== 'default';
  }

  /* ---------------------------------------------------------------- the inbox */

  function refresh() {
    api('GET', 'inbox', null, function (error, answer, status) {
      if (status === 401) {
        signedOut();
        return;
      }
      if (!error) {
        state.refreshes += 1;
        render(answer);
      }
    });
  }

  function setUnread(count) {
    var badge = $('badge');
    state.unread = count;
    badge.textContent = String(count);
    badge.className = count ? '' : 'zero';
    document.title = (count ? '(' + count + ') ' : '') + 'Notifications';
  }

  function render(answer) {
    var list = $('items'), i, item;
    setUnread(answer.unread);
    while (list.firstChild) {
      list.removeChild(list.firstChild);
    }
    for (i = 0; i < answer.items.length; i++) {
      item = answer.items[i];
      list.appendChild(renderItem(item));
    }
    $('empty').hidden = answer.items.length > 0;
  }

  function renderItem(item) {
    var li = document.createElement('li'), text = document.createElement('div'),
        title = document.createElement('div'), body = document.createElement('div'),
        meta = document.createElement('span'), button;
    li.className = item.read ? 'read' : 'unread';
    li.setAttribute('data-id', item.id);
    text.className = 'text';
    title.className = 'title';
    title.textContent = item.title;
    body.className = 'body';
    body.textContent = item.body;
    meta.className = 'muted';
    meta.textContent = (item.sender ? 'from ' + item.sender + ', ' : '') +
      new Date(item.time * 1000).toLocaleTimeString();
    text.appendChild(title);
    if (item.body) {
      text.appendChild(body);
    }
    li.appendChild(text);
    li.appendChild(meta);
    if (!item.read) {
      button = document.createElement('button');
      button.type = 'button';
      button.className = 'mark-read';
      button.textContent = 'Mark read';
      button.onclick = function () {
        markRead({ids: [item.id]});
      };
      li.appendChild(button);
    }
    return li;
  }

  function markRead(body) {
    api('POST', 'read', body, function (error, answer) {
      if (!error) {
        setUnread(answer.unread);
      }
      refresh();
    });
  }

  /* ---------------------------------------------------------------- connection */

  function connect() {
    var client = state.client = pushpy.connect();
    client.on('open', function (info) {
      $('status').textContent = 'Live, over ' + info.transport;
      $('status').className = 'ok';
      refresh();  // catches up with whatever came while disconnected
    });
    client.on('close', function () {
      $('status').textContent = 'Disconnected, reconnecting\u2026';
      $('status').className = 'bad';
    });
    client.on('error', function (info) {
      if (info && /token|authentication|not signed/i.test(info.reason || '')) {
        client.close();
        signedOut();
      }
    });
    // Notifications are user events: they need no subscription and reach every tab of the user.
    client.on('event', function (fields, event) {
      if (event.subject === SUBJECT) {
        state.received.push(fields);
        show(fields);
        setUnread(state.unread + 1);
        refresh();
      } else if (event.subject === READ_SUBJECT) {
        setUnread(parseInt(fields.unread, 10) || 0);
        refresh();
      }
    });
  }

  /* ---------------------------------------------------------------- sign-in */

  function signedIn(user) {
    state.user = user;
    $('me').textContent = user;
    $('example-user').textContent = user;
    $('signin').hidden = true;
    $('app').hidden = false;
    showMode();
    connect();
  }

  function signedOut() {
    if (state.client) {
      state.client.close();
      state.client = null;
    }
    state.user = null;
    setUnread(0);
    $('app').hidden = true;
    $('signin').hidden = false;
  }

  function start() {
    $('signin-form').onsubmit = function (e) {
      var name = this.elements.user.value;
      e.preventDefault();
      api('POST', 'login', {user: name}, function (error, answer) {
        $('signin-error').textContent = error || '';
        if (!error) {
          signedIn(answer.user);
        }
      });
    };
    $('signout').onclick = function () {
      api('POST', 'logout', {}, function () {
        signedOut();
      });
    };
    $('read-all').onclick = function () {
      markRead({all: true});
    };
    $('desktop').onclick = function () {
      var asked = window.Notification.requestPermission(showMode);
      if (asked && asked.then) {
        asked.then(showMode);
      }
    };
    $('send-form').onsubmit = function (e) {
      var form = this;
      e.preventDefault();
      api('POST', 'send', {to: form.elements.to.value, title: form.elements.title.value,
                           body: form.elements.body.value}, function (error) {
        $('send-error').textContent = error || '';
        if (!error) {
          form.elements.title.value = form.elements.body.value = '';
        }
      });
    };
    api('GET', 'inbox', null, function (error, answer, status) {
      if (status === 401) {
        signedOut();
      } else if (!error) {
        signedIn(answer.user);
        render(answer);
      }
    });
  }

  start();
}());
