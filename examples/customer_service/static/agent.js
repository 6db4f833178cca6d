/*
 * The agents' page: one panel per visitor served, each answerable and
 * transferable.  Plain ES5 on pushpy.js: desk news comes as events sent to
 * every session of this agent, conversations by subscription.
 */
(function (window, document) {
  'use strict';

  var state = {agent: null, client: null, panels: {}, agents: [], opened: 0};
  window.agent = state;  // for the curious (and the tests)

  function $(id) {
    return document.getElementById(id);
  }

  function error(text) {
    $('error').textContent = text || '';
  }

  function fillAgents(select) {
    var keep = select.value, i, option;
    while (select.firstChild) {
      select.removeChild(select.firstChild);
    }
    for (i = 0; i < state.agents.length; i++) {
      if (state.agents[i] !== state.agent) {
        option = cs.el('option', null, state.agents[i]);
        option.value = state.agents[i];
        select.appendChild(option);
      }
    }
    if (!select.firstChild) {
      option = cs.el('option', null, 'no other agent available');
      option.value = '';
      select.appendChild(option);
    }
    select.value = keep;
    if (select.selectedIndex < 0) {
      select.selectedIndex = 0;
    }
  }

  function addPanel(info) {
    var panel, list, form, input, transfer, select, button;
    if (state.panels[info.visitor]) {
      return;
    }
    panel = cs.el('div', 'panel');
    panel.setAttribute('data-visitor', info.visitor);
    panel.appendChild(cs.el('h2', null, info.name));
    list = cs.el('ol', 'messages');
    panel.appendChild(list);
    form = cs.el('form', 'answer');
    input = cs.el('input', 'answer-text');
    input.maxLength = 2000;
    input.placeholder = 'Answer';
    button = cs.el('button', 'send', 'Send');
    button.type = 'submit';
    form.appendChild(input);
    form.appendChild(button);
    form.onsubmit = function (e) {
      var text = input.value;
      e.preventDefault();
      if (/\S/.test(text)) {
        cs.api('POST', 'agent/say', {visitor: info.visitor, text: text}, function (failed) {
          error(failed);
        });
        input.value = '';
      }
    };
    panel.appendChild(form);
    transfer = cs.el('form', 'transfer');
    select = cs.el('select', 'to');
    button = cs.el('button', null, 'Transfer');
    button.type = 'submit';
    transfer.appendChild(select);
    transfer.appendChild(button);
    transfer.onsubmit = function (e) {
      e.preventDefault();
      if (select.value) {
        cs.api('POST', 'agent/transfer', {visitor: info.visitor, to: select.value}, function (failed) {
          error(failed);
        });
      }
    };
    panel.appendChild(transfer);
    fillAgents(select);
    $('panels').appendChild(panel);
    state.panels[info.visitor] = {
      element: panel, select: select,
      transcript: new cs.Transcript(state.client, info.subject, list, error)
    };
    $('empty').hidden = true;
  }

  function removePanel(visitor) {
    var panel = state.panels[visitor];
    if (!panel) {
      return;
    }
    panel.transcript.stop();
    panel.element.parentNode.removeChild(panel.element);
    delete state.panels[visitor];
    $('empty').hidden = !!$('panels').firstChild;
  }

  function setAgents(names) {
    var visitor;
    state.agents = names;
    for (visitor in state.panels) {
      if (state.panels.hasOwnProperty(visitor)) {
        fillAgents(state.panels[visitor].select);
      }
    }
  }

  /* The desk's view of this agent (after login, a reconnect or a change of availability). */
  function sync(info) {
    var served = {}, visitor, i;
    $('available').checked = info.available;
    $('queue').textContent = info.queue ? info.queue + ' waiting' : '';
    setAgents(info.agents);
    for (i = 0; i < info.visitors.length; i++) {
      served[info.visitors[i].visitor] = true;
      addPanel(info.visitors[i]);
    }
    for (visitor in state.panels) {
      if (state.panels.hasOwnProperty(visitor) && !served[visitor]) {
        removePanel(visitor);
      }
    }
  }

  function begin(info) {
    var client;
    state.agent = info.agent;
    $('login').hidden = true;
    $('desk').hidden = false;
    $('me').textContent = info.agent;
    client = state.client = cs.connect();
    client.on('open', function (opened) {
      state.transport = opened.transport;
      $('status').textContent = 'connected (' + opened.transport + ')';
      state.opened += 1;
      if (state.opened === 1) {
        // Ready as soon as connected: the desk sends visitors from now on.
        cs.api('POST', 'agent/available', {available: true}, function (failed, answer) {
          error(failed);
          if (!failed) {
            sync(answer);
          }
        });
      } else {
        cs.api('GET', 'agent', null, function (failed, answer) {
          if (!failed) {
            sync(answer);
          }
        });
      }
    });
    client.on('event', function (fields, event) {
      if (event.subject !== '/cs/desk') {
        return;
      }
      if (fields.kind === 'assigned') {
        addPanel(fields);
      } else if (fields.kind === 'removed') {
        removePanel(fields.visitor);
      }
    });
    client.subscribe('/cs/agents', function (fields) {
      setAgents(fields.agents ? fields.agents.split('\n') : []);
    });
  }

  function start() {
    $('login-form').onsubmit = function (e) {
      e.preventDefault();
      cs.api('POST', 'agent/login', {name: $('agent-name').value}, function (failed, info) {
        $('login-error').textContent = failed || '';
        if (!failed) {
          begin(info);
        }
      });
    };
    $('available').onchange = function () {
      cs.api('POST', 'agent/available', {available: $('available').checked}, function (failed, answer) {
        error(failed);
        if (!failed) {
          sync(answer);
        }
      });
    };
    cs.api('GET', 'agent', null, function (failed, info) {
      if (!failed) {
        begin(info);  // still logged in (the token cookie)
      }
    });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
}(window, document));
