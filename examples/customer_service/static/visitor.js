/* The shop page's chat widget: a visitor talks to an agent.  Plain ES5 on pushpy.js. */
(function (window, document) {
  'use strict';

  var state = {visitor: null, client: null, transcript: null, status: ''};
  window.visitor = state;  // for the curious (and the tests)

  function $(id) {
    return document.getElementById(id);
  }

  function error(text) {
    $('error').textContent = text || '';
  }

  function showStatus(agent, position) {
    state.status = agent ? 'You are talking to ' + agent :
      position ? 'Waiting for an agent (you are number ' + position + ')' : '';
    $('status').textContent = state.status;
  }

  function begin(info) {
    var client;
    state.visitor = info.visitor;
    $('widget').hidden = false;
    $('start-form').hidden = true;
    $('chat').hidden = false;
    showStatus(info.agent, info.position);
    if (state.client) {
      return;
    }
    client = state.client = cs.connect();
    client.on('open', function (opened) {
      state.transport = opened.transport;
    });
    client.on('event', function (fields, event) {
      if (event.subject === '/cs/status') {
        showStatus(fields.agent, fields.position);
      }
    });
    state.transcript = new cs.Transcript(client, info.subject, $('messages'), error);
  }

  function end() {
    if (state.transcript) {
      state.transcript.stop();
    }
    if (state.client) {
      state.client.close();
    }
    state.client = state.transcript = null;
    while ($('messages').firstChild) {
      $('messages').removeChild($('messages').firstChild);
    }
    $('chat').hidden = true;
    $('start-form').hidden = false;
    showStatus('', '');
  }

  function start() {
    $('open-chat').onclick = function () {
      $('widget').hidden = false;
    };
    $('start-form').onsubmit = function (e) {
      e.preventDefault();
      cs.api('POST', 'visitor/open', {name: $('visitor-name').value}, function (failed, info) {
        error(failed);
        if (!failed) {
          begin(info);
        }
      });
    };
    $('say-form').onsubmit = function (e) {
      var text = $('text').value;
      e.preventDefault();
      if (/\S/.test(text)) {
        cs.api('POST', 'visitor/say', {text: text}, function (failed) {
          error(failed);
        });
        $('text').value = '';
      }
    };
    $('end-chat').onclick = function () {
      cs.api('POST', 'visitor/close', {}, function (failed) {
        error(failed);
        end();
      });
    };
    // Who we are (a cookie keeps it across reloads); an open chat comes back.
    cs.api('GET', 'visitor', null, function (failed, info) {
      error(failed);
      if (!failed) {
        state.visitor = info.visitor;
        if (info.open) {
          begin(info);
        }
      }
    });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
}(window, document));
