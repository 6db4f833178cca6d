/*
 * What the visitor's and the agent's pages share: the JSON API, and a
 * transcript: one conversation subject shown from pushpy's history, then live.
 * Plain ES5; everything people wrote is shown with textContent.
 */
(function (window, document) {
  'use strict';

  var HISTORY = 100;  // messages of a conversation shown when it opens

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
   * Show the conversation on `subject` in the list `list`: subscribes, then asks
   * pushpy for the subject's history, which the server answers after the
   * subscribe (it keeps a client's order), so the two overlap; live messages
   * that arrive meanwhile wait, and duplicates are dropped by event id.
   */
  function Transcript(client, subject, list, onError) {
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
    client.history(subject, HISTORY, function (error, events) {
      var early = self.early, i;
      if (error) {
        onError(error.message);
        return;
      }
      self.loaded = true;
      self.early = [];
      for (i = 0; i < events.length; i++) {
        self.add(events[i].fields, events[i].id);
      }
      for (i = 0; i < early.length; i++) {
        self.add(early[i].fields, early[i].id);
      }
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
