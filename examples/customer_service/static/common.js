/*
 * What the visitor's and the agent's pages share: the JSON API, and a
 * transcript: one conversation subject shown from pushpy's history, then live.
 * Plain ES5; everything people wrote is shown with textContent.
 */
(function (window, document) {
  'use strict';

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

  /* method, API name, body (null for GET), callback(error, answer). */
  function api(method, name, body, callback) {
    var xhr = new XMLHttpRequest();
    xhr.open(method, '/api/' + name, true);
    if (body) {
      xhr.setRequestHeader('Content-Type', 'application/json');
    }
    xhr.onreadystatechange = function () {
      var answer;
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

  function param(name) {
    var match = new RegExp('[?&]' + name + '=([^&#]*)').exec(window.location.search);
    return match ? decodeURIComponent(match[1]) : null;
  }

  /* A pushpy client; ?transport=NAME on the page's URL forces a transport. */
  function connect() {
    var forced = param('transport');
    return pushpy.connect(forced ? {transport: forced} : {});
  }

  /**
   * Show the conversation of `visitor` (subject `subject`) in the list `list`:
   * subscribes, then loads the history once the subscription is in place (the
   * server answers a client's messages in order, so the heartbeat's ack comes
   * after the subscribe's); live messages that arrive meanwhile wait, and
   * duplicates are dropped by event id.
   */
  function Transcript(client, visitor, subject, list, onError) {
    var self = this;
    this.client = client;
    this.subject = subject;
    this.list = list;
    this.ids = {};
    this.loaded = false;
    this.early = [];
    this.handler = function (fields, event) {
      self.add(fields, event.id);
    };
    client.subscribe(subject, this.handler);
    client.send({type: 'hb'}, function () {
      api('GET', 'history?visitor=' + encodeURIComponent(visitor), null, function (error, answer) {
        var early = self.early, i;
        if (error) {
          onError(error);
          return;
        }
        self.loaded = true;
        self.early = [];
        for (i = 0; i < answer.messages.length; i++) {
          self.add(answer.messages[i], answer.messages[i].id);
        }
        for (i = 0; i < early.length; i++) {
          self.add(early[i].fields, early[i].id);
        }
      });
    });
  }

  Transcript.prototype.add = function (fields, id) {
    var li;
    if (!this.loaded) {
      this.early.push({fields: fields, id: id});
      return;
    }
    if (id) {
      if (this.ids[id]) {
        return;
      }
      this.ids[id] = true;
    }
    li = el('li', 'message ' + (fields.role || ''));
    if (fields.from) {
      li.appendChild(el('span', 'from', fields.from));
    }
    li.appendChild(el('span', 'text', fields.text));
    this.list.appendChild(li);
    this.list.scrollTop = this.list.scrollHeight;
  };

  Transcript.prototype.stop = function () {
    this.client.unsubscribe(this.subject, this.handler);
  };

  window.cs = {el: el, api: api, param: param, connect: connect, Transcript: Transcript};
}(window, document));
