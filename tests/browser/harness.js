/* Test helpers loaded by /test/page.html after pushpy.js: records what each client sees. */
window.H = {
  clients: [],

  /* Connect a client subscribed to `subjects`; returns its index. */
  start: function (options, subjects) {
    var rec = {got: [], all: [], opens: [], closes: [], errors: [], gaps: [], transports: [], revoked: []};
    var c = pushpy.connect(options || {});
    rec.client = c;
    (subjects || []).forEach(function (subject) { H.subscribe(rec, subject); });
    c.on('open', function (info) { rec.opens.push(info); });
    c.on('close', function (info) { rec.closes.push(info); });
    c.on('error', function (info) { rec.errors.push(info.reason); });
    c.on('gap', function (info) { rec.gaps.push(info); });
    c.on('unsubscribed', function (info) { rec.revoked.push(info); });
    c.on('transport', function (info) { rec.transports.push(info.to); });
    c.on('event', function (fields, event) { rec.all.push({subject: event.subject, id: event.id, fields: fields}); });
    H.clients.push(rec);
    return H.clients.length - 1;
  },

  subscribe: function (rec, subject) {
    if (typeof rec === 'number') { rec = H.clients[rec]; }
    rec.client.subscribe(subject, function (fields, event) {
      rec.got.push({subject: event.subject, id: event.id, fields: fields, via: subject});
    });
  },

  /* Publish from the page (to one session with `to`); resolves with [error message or null, ack]. */
  publish: function (index, subject, fields, to) {
    return new Promise(function (resolve) {
      H.clients[index].client.publish(subject, fields, to ? {to: to} : null, function (error, ack) {
        resolve([error ? error.message : null, ack]);
      });
    });
  },

  /* The fields' `n` values received on subjects starting with `prefix`, in order. */
  numbers: function (index, prefix) {
    return H.clients[index].got.filter(function (e) {
      return e.subject.indexOf(prefix) === 0;
    }).map(function (e) { return Number(e.fields.n); });
  },

  state: function (index) {
    var rec = H.clients[index], c = rec.client;
    return {state: c.state, transport: c.transport, session: c.session, lastEventId: c.lastEventId,
            opens: rec.opens.length, closes: rec.closes.length, errors: rec.errors, gaps: rec.gaps,
            transports: rec.transports, received: rec.got.length, url: c.url};
  }
};
