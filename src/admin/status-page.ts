import { createHash } from 'node:crypto';

// The status page (GET / on --admin): one self-contained document, no external resource at all
// (an air-gapped LAN has no CDN), no framework. Its script renders the model that /events streams
// (see status-model.ts) by patching the DOM in place, so focus, open <details> and scroll survive
// the updates; everything from the network goes in as text, never as markup. Kept as strings in
// this module: the package ships dist/ only, and nothing has to be copied at build time.

const STYLE = String.raw`
:root{color-scheme:light dark;--bg:#f6f7f9;--card:#fff;--fg:#1b1f24;--muted:#5b6470;--line:#d5d9df;
--ok:#1a7f37;--bad:#c62828;--warn:#9a6700;--info:#0b5cad;--okbg:#e6f4ea;--badbg:#fdecea;--warnbg:#fff4d6;--infobg:#e7f0fb;--spark:#0b5cad;--sparkbad:#c62828}
@media (prefers-color-scheme:dark){:root{--bg:#0f1216;--card:#171b21;--fg:#e6e9ed;--muted:#9aa4b1;--line:#2c333c;
--ok:#4ac26b;--bad:#ff7b72;--warn:#e3b341;--info:#6cb6ff;--okbg:#12261a;--badbg:#2d1414;--warnbg:#2b230f;--infobg:#102238;--spark:#6cb6ff;--sparkbad:#ff7b72}}
*{box-sizing:border-box}
html{font-size:clamp(14px,.35vw + 11px,22px)}
body{margin:0;background:var(--bg);color:var(--fg);font:1rem/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;overflow-wrap:anywhere}
a{color:var(--info)}
:focus-visible{outline:3px solid var(--info);outline-offset:2px}
.skip{position:absolute;left:.5rem;top:-3rem;background:var(--card);padding:.4rem .7rem;border:1px solid var(--line);z-index:2}
.skip:focus{top:.5rem}
header.top{position:sticky;top:0;z-index:1;background:var(--card);border-bottom:1px solid var(--line);padding:.5rem 1rem;display:flex;flex-wrap:wrap;gap:.3rem 1rem;align-items:baseline}
h1{font-size:1.15rem;margin:0}
h2{font-size:1.05rem;margin:1.2rem 0 .5rem}
h3{font-size:1rem;margin:0 0 .3rem}
nav.sections{display:flex;flex-wrap:wrap;gap:.2rem .8rem;font-size:.9rem}
main{padding:0 1rem 2rem}
.live{margin:0;font-size:.9rem}
.grid{display:grid;gap:.8rem;grid-template-columns:repeat(auto-fill,minmax(min(100%,26rem),1fr))}
.card{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.7rem .8rem;min-width:0}
.stale main{opacity:.55}
.banner{margin:.6rem 1rem 0;padding:.5rem .8rem;border-radius:6px;border:1px solid var(--bad);background:var(--badbg);color:var(--fg)}
.banner[hidden]{display:none}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:.15rem .8rem;margin:.3rem 0}
dl.kv dt{color:var(--muted)}
dl.kv dd{margin:0;min-width:0}
.muted{color:var(--muted)}
.small{font-size:.85rem}
.badge{display:inline-block;padding:0 .45rem;border-radius:999px;border:1px solid currentColor;font-weight:600;font-size:.85rem;white-space:nowrap}
.s-ok{color:var(--ok);background:var(--okbg)}
.s-bad{color:var(--bad);background:var(--badbg)}
.s-warn{color:var(--warn);background:var(--warnbg)}
.s-info{color:var(--info);background:var(--infobg)}
ul.plain{list-style:none;margin:0;padding:0}
ul.eps{display:grid;gap:.6rem;grid-template-columns:repeat(auto-fill,minmax(min(100%,24rem),1fr));margin:.5rem 0}
li.ep{border:1px solid var(--line);border-radius:6px;padding:.5rem .6rem;min-width:0}
.listeners{display:grid;gap:.8rem}
.row{display:flex;flex-wrap:wrap;gap:.2rem .6rem;align-items:baseline}
.spark{display:flex;gap:.5rem;align-items:center;margin:.2rem 0}
.spark svg{flex:1 1 8rem;height:1.6rem;min-width:5rem;border-bottom:1px solid var(--line)}
.spark .lbl{flex:0 0 auto;font-size:.8rem;color:var(--muted);min-width:8.5rem}
polyline{fill:none;stroke:var(--spark);stroke-width:1.5}
polyline.bad{stroke:var(--sparkbad)}
details{margin-top:.3rem}
summary{cursor:pointer;color:var(--info)}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.2rem .4rem;border-top:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600}
code{font:.9em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
@media (max-width:30rem){main{padding:0 .5rem 1rem}header.top{padding:.5rem}dl.kv{grid-template-columns:1fr}dl.kv dt{margin-top:.2rem}}
`;

const SCRIPT = String.raw`
(function () {
  'use strict';
  var SVG_NS = 'http://www.w3.org/2000/svg';
  var SVG_TAGS = { svg: 1, polyline: 1 };
  var root = document.getElementById('app');
  var live = document.getElementById('live');
  var banner = document.getElementById('banner');
  var title = document.getElementById('title');
  var model = null;
  var offset = 0;
  var lastMessage = 0;
  var lostSince = 0;
  var seq = 0;
  var keep = 180;
  var rings = {};
  var source = null;

  // ---- a small DOM patcher: builds nothing twice, keeps focus and open <details>
  function h(tag, attrs) {
    var kids = [];
    for (var i = 2; i < arguments.length; i++) add(kids, arguments[i]);
    return { t: tag, a: attrs || {}, c: kids };
  }
  function add(list, x) {
    if (x === null || x === undefined || x === false) return;
    if (Array.isArray(x)) { for (var i = 0; i < x.length; i++) add(list, x[i]); return; }
    list.push(typeof x === 'object' ? x : String(x));
  }
  function create(v) {
    if (typeof v === 'string') return document.createTextNode(v);
    var el = SVG_TAGS[v.t] ? document.createElementNS(SVG_NS, v.t) : document.createElement(v.t);
    for (var k in v.a) if (v.a[k] !== null && v.a[k] !== undefined) el.setAttribute(k, String(v.a[k]));
    patch(el, v.c);
    return el;
  }
  function update(el, v) {
    for (var k in v.a) {
      if (k === 'open') continue; // the reader's choice, not the model's
      var val = v.a[k];
      if (val === null || val === undefined) { if (el.hasAttribute(k)) el.removeAttribute(k); }
      else if (el.getAttribute(k) !== String(val)) el.setAttribute(k, String(val));
    }
    for (var i = el.attributes.length - 1; i >= 0; i--) {
      var name = el.attributes[i].name;
      if (name !== 'open' && !(name in v.a)) el.removeAttribute(name);
    }
    patch(el, v.c);
  }
  function patch(parent, vs) {
    var keyed = null;
    for (var i = 0; i < vs.length; i++) {
      var v = vs[i];
      var cur = parent.childNodes[i] || null;
      var match = null;
      if (typeof v === 'string') {
        if (cur && cur.nodeType === 3) { if (cur.nodeValue !== v) cur.nodeValue = v; continue; }
        match = document.createTextNode(v);
      } else {
        var key = v.a['data-key'];
        if (key !== undefined) {
          if (!keyed) {
            keyed = {};
            for (var n = parent.firstChild; n; n = n.nextSibling) {
              if (n.nodeType === 1 && n.hasAttribute('data-key')) keyed[n.localName + ' ' + n.getAttribute('data-key')] = n;
            }
          }
          match = keyed[v.t + ' ' + key] || null;
          keyed[v.t + ' ' + key] = null; // a key given twice gets a second element
        } else if (cur && cur.nodeType === 1 && cur.localName === v.t && !cur.hasAttribute('data-key')) {
          match = cur;
        }
        if (match) update(match, v); else match = create(v);
      }
      if (match !== cur) parent.insertBefore(match, cur);
    }
    while (parent.childNodes.length > vs.length) parent.removeChild(parent.lastChild);
  }

  // ---- words
  function serverNow() { return Date.now() + offset; }
  function pad(n) { return n < 10 ? '0' + n : String(n); }
  function clock(ms) { var d = new Date(ms); return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds()); }
  function span(ms) {
    var s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + ' s';
    var m = Math.floor(s / 60);
    if (m < 60) return m + ' min ' + (s % 60) + ' s';
    var hr = Math.floor(m / 60);
    if (hr < 48) return hr + ' h ' + (m % 60) + ' min';
    return Math.floor(hr / 24) + ' d ' + (hr % 24) + ' h';
  }
  function since(iso) {
    if (!iso) return '';
    var t = Date.parse(iso);
    return 'since ' + clock(t) + ' (' + span(serverNow() - t) + ')';
  }
  function ago(iso) {
    if (!iso) return 'never';
    var t = Date.parse(iso);
    return clock(t) + ' (' + span(serverNow() - t) + ' ago)';
  }
  function pct(x) { return x === null || x === undefined ? 'n/a' : (Math.round(x * 1000) / 10) + ' %'; }
  function limit(n) { return n === null ? 'no limit' : String(n); }
  function bytes(n) {
    if (n < 1024) return n + ' B';
    var u = ['KiB', 'MiB', 'GiB', 'TiB'], i = -1;
    do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
    return (Math.round(n * 10) / 10) + ' ' + u[i];
  }
  var WHY = {
    goodbye: 'its advertiser said goodbye (withdrawn)',
    'source-check': 'its ambassador says the service stopped accepting',
    'host-probe': 'its host stopped answering host probes',
    'health-check': 'our own health checks fail',
    outlier: 'connects to it failed (ejected for a while)',
    removed: 'no longer announced (record expired or source dropped it)'
  };
  function badge(kind, symbol, word, title) {
    return h('span', { 'class': 'badge s-' + kind, title: title || null }, symbol + ' ' + word);
  }
  function stateBadge(state) {
    if (state === 'up' || state === 'ok' || state === 'announced' || state === 'connected') return badge('ok', '\u2713', state);
    if (state === 'probing' || state === 'connecting' || state === 'starting') return badge('info', '\u2026', state);
    if (state === 'waiting-for-target' || state === 'no-ambassador' || state === 'draining' || state === 'stopped') return badge('warn', '\u26A0', state);
    return badge('bad', '\u2717', state);
  }
  function txt(t) {
    var keys = Object.keys(t || {});
    if (!keys.length) return h('span', { 'class': 'muted' }, 'none');
    return keys.map(function (k, i) { return [i ? ' ' : '', h('code', null, k + '=' + t[k])]; });
  }
  function kv(pairs) {
    var out = [];
    for (var i = 0; i < pairs.length; i++) if (pairs[i]) out.push(h('dt', null, pairs[i][0]), h('dd', null, pairs[i][1]));
    return h('dl', { 'class': 'kv' }, out);
  }

  // ---- sparklines from the per-second rings
  function ring(key) { return rings[key] || (rings[key] = { c: [], f: [] }); }
  function pushRing(r, c, f) {
    r.c.push(c); r.f.push(f);
    if (r.c.length > keep) { r.c.splice(0, r.c.length - keep); r.f.splice(0, r.f.length - keep); }
  }
  function spark(values, label, bad) {
    var max = 0, now = values.length ? values[values.length - 1] : 0;
    for (var i = 0; i < values.length; i++) if (values[i] > max) max = values[i];
    var pts = [];
    var n = values.length, w = keep - 1, y0 = 22;
    for (var j = 0; j < n; j++) pts.push((w - (n - 1 - j)) + ',' + (y0 - (max ? values[j] / max * 20 : 0)).toFixed(1));
    var words = label + ': now ' + now + '/s, peak ' + max + '/s over ' + span(n * 1000);
    return h('div', { 'class': 'spark' },
      h('span', { 'class': 'lbl' }, label + ' ' + now + '/s (peak ' + max + ')'),
      h('svg', { viewBox: '0 0 ' + w + ' 24', preserveAspectRatio: 'none', role: 'img', 'aria-label': words },
        n > 1 ? h('polyline', { points: pts.join(' '), 'class': bad ? 'bad' : null, 'vector-effect': 'non-scaling-stroke' }) : null));
  }

  // ---- sections
  function self(m) {
    var a = m.ambassador, net = m.network, hp = m.hostProbes;
    var ifaces = null;
    if (net) {
      ifaces = net.interfaces.length
        ? h('ul', { 'class': 'plain' }, net.interfaces.map(function (i) {
          return h('li', { 'data-key': i.name }, h('code', null, i.name), ' ' + i.addresses.join(', ') + ' ', h('span', { 'class': 'muted small' }, since(i.since)));
        }))
        : [badge('bad', '\u2717', 'no interface'), ' ' + since(net.noInterfaceSince)];
    }
    var reg = m.registry;
    return h('section', { 'aria-labelledby': 'h-self' },
      h('h2', { id: 'h-self' }, 'This ambassador'),
      h('div', { 'class': 'card' }, kv([
        ['Host', m.host || h('span', { 'class': 'muted' }, 'no mDNS')],
        ['Health', [stateBadge(a.health.status), a.health.refusing.length ? ' refusing clients at: ' + a.health.refusing.join(', ') : '']],
        ['Up', span(serverNow() - Date.parse(a.startedAt)) + ' (since ' + new Date(Date.parse(a.startedAt)).toLocaleString() + ')'],
        ['Version', a.version + ' \u00b7 Node ' + a.node + ' \u00b7 pid ' + a.pid],
        net ? ['Interfaces', ifaces] : ['Interfaces', h('span', { 'class': 'muted' }, 'none used (no multicast needed)')],
        reg ? ['Registry', [stateBadge(reg.state), ' ' + reg.kind + ' ', h('code', null, reg.url), ' ' + since(reg.since), reg.reason ? ' \u2014 ' + reg.reason : '',
          reg.authenticated === null ? '' : reg.authenticated ? ' \u00b7 authenticated' : ' \u00b7 not authenticated']] : null,
        hp.sent ? ['Host probes sent', hp.sent.probesSent + ' (replies ' + hp.sent.repliesReceived + ', misses ' + hp.sent.misses + ')'] : null,
        hp.answered ? ['Host probes answered', hp.answered.replies + ' on UDP port ' + hp.answered.port] : null,
        m.draining ? ['Draining', badge('warn', '\u26A0', 'draining')] : null
      ])));
  }

  function evidence(ep) {
    var hh = ep.health, rows = [['Judged by', hh.from]];
    if (hh.sourceCheck) rows.push(['Source check', [stateBadge(hh.sourceCheck), ' its ambassador checks the service']]);
    var p = hh.hostProbe;
    if (p) rows.push(['Host probe', [stateBadge(p.state), ' ' + p.host + (p.downCode ? ' ' + p.downCode : '') +
      ' \u00b7 RTT ' + (p.rttMs === null ? 'n/a' : p.rttMs + ' ms') + ' \u00b7 loss ' + pct(p.lossRate) +
      ' \u00b7 last reply ' + ago(p.lastReplyAt) + ' \u00b7 ' + p.missesToConvict + ' misses convict']]);
    var o = hh.ownCheck;
    if (o) rows.push(['Own check', [stateBadge(o.state), ' ' + o.kind + ' \u00b7 loss ' + pct(o.lossRate) +
      ' \u00b7 last ' + (o.last ? ago(o.last.at) + (o.last.ok ? ' ok' : ' failed ' + (o.last.code || '')) : 'none yet')]]);
    rows.push(['Connects', ep.connections + ' made, ' + ep.connectFailures + ' failed (' + hh.outlier.consecutiveFailures + ' in a row)' +
      (hh.outlier.ejected ? ', ejected for ' + span(ep.ejectedForMs) : '') + (hh.flaps ? ', ' + hh.flaps + ' flaps' : '')]);
    rows.push(['Bytes', bytes(ep.bytesToEndpoint) + ' sent, ' + bytes(ep.bytesFromEndpoint) + ' received']);
    rows.push(['TXT', txt(ep.txt)]);
    rows.push(['Record', (ep.ttlLeft === null ? 'no TTL' : ep.ttlLeft + ' s of TTL left') + ', priority ' + ep.priority + ', weight ' + ep.weight]);
    return kv(rows);
  }

  function endpoint(ep) {
    var r = ring(ep.historyKey);
    var down = ep.state !== 'up';
    return h('li', { 'class': 'ep', 'data-key': ep.historyKey },
      h('div', { 'class': 'row' },
        stateBadge(ep.state),
        h('strong', null, ep.label),
        down ? h('span', null, ep.downReason + ': ' + (WHY[ep.downReason] || '')) : null,
        h('span', { 'class': 'muted small' }, since(ep.stateSince))),
      h('div', { 'class': 'row small' },
        h('span', null, ep.addresses.join(', ') + ' port ' + ep.port),
        h('span', { 'class': 'muted' }, 'from ' + ep.source),
        h('span', null, ep.activeConnections + ' open')),
      spark(r.c, 'conn/s', false),
      spark(r.f, 'failed/s', true),
      h('details', null, h('summary', null, 'Evidence for ' + ep.label), evidence(ep)));
  }

  function listener(c) {
    var up = 0;
    for (var i = 0; i < c.endpoints.length; i++) if (c.endpoints[i].state === 'up') up++;
    var acc = ring('listener ' + c.historyKey);
    var l = c.limits;
    var aside = [];
    c.filteredOut.forEach(function (f) { aside.push(h('li', { 'data-key': 'f ' + f.label }, badge('warn', '\u2298', 'filtered'), ' ' + f.label + ' ' + f.address + ':' + f.port + ' \u2014 ' + f.why)); });
    c.refused.forEach(function (f) { aside.push(h('li', { 'data-key': 'r ' + f.label }, badge('bad', '\u26D4', 'refused'), ' ' + f.label + ' ' + f.address + ':' + f.port + ' \u2014 ' + f.why)); });
    c.departed.slice().reverse().forEach(function (d) {
      aside.push(h('li', { 'data-key': 'd ' + d.label + ' ' + d.goneAt }, badge('warn', '\u2190', 'gone'), ' ' + d.label + ' ' + d.address + ' \u2014 ' + d.reason + ': ' + (WHY[d.reason] || '') + ', gone ' + ago(d.goneAt)));
    });
    return h('article', { 'class': 'card', 'data-key': c.historyKey, 'aria-labelledby': 'l-' + idOf(c.historyKey) },
      h('h3', { id: 'l-' + idOf(c.historyKey) }, c.name + ' \u2192 listening on ' + (c.listen || c.historyKey)),
      h('div', { 'class': 'row' },
        c.panic ? badge('bad', '\u26A0', 'panic mode', 'every endpoint looks down; those down only on evidence are tried anyway') : null,
        c.refusing ? badge('bad', '\u26D4', 'refusing clients') : null,
        h('span', null, up + ' of ' + c.endpoints.length + ' endpoints up')),
      kv([
        ['Balance', c.balance + (Object.keys(c.where).length ? ' \u00b7 where ' + Object.keys(c.where).map(function (k) { return k + '=' + c.where[k]; }).join(' ') : '')],
        ['Sources', c.sources.join(', ')],
        ['Data plane', c.dataPlane.kind + (c.dataPlane.state ? ' (' + c.dataPlane.state + (c.dataPlane.reason ? ': ' + c.dataPlane.reason : '') + ')' : '')],
        ['Limits', limit(l.maxConnections) + ' connections, ' + limit(l.maxPending) + ' pending, ' + limit(l.maxPerEndpoint) + ' per endpoint'],
        ['Clients', c.acceptedConnections + ' accepted, ' + c.pendingConnections + ' waiting now'],
        c.credentials ? ['Credentials', 'injected (' + c.credentials + ')'] : null
      ]),
      spark(acc.c, 'accepted/s', false),
      c.warnings.map(function (w, i) { return h('p', { 'class': 'small', 'data-key': 'w' + i }, badge('warn', '\u26A0', 'warning'), ' ' + w); }),
      c.endpoints.length ? h('ul', { 'class': 'plain eps' }, c.endpoints.map(endpoint)) : h('p', { 'class': 'muted' }, 'No endpoint known yet.'),
      aside.length ? h('ul', { 'class': 'plain small' }, aside) : null);
  }

  function advertisement(a) {
    var tc = a.targetCheck;
    return h('article', { 'class': 'card', 'data-key': a.service + ' ' + a.target },
      h('div', { 'class': 'row' }, stateBadge(a.state), h('strong', null, a.instance || a.service), h('span', { 'class': 'muted small' }, since(a.since))),
      h('p', { 'class': 'small' }, a.reason),
      kv([
        ['Service', '_' + a.service + '._tcp'],
        ['Target', a.target + (a.announcedPort !== null ? ' \u00b7 announced port ' + a.announcedPort : '') + (a.relay ? ' \u00b7 relay :' + a.relay.port + ' (' + a.relay.activeConnections + ' open)' : '')],
        ['Check', [a.check + ' ', stateBadge(tc.state), ' last ' + (tc.last ? ago(tc.last.at) + (tc.last.ok ? ' ok' : ' failed ' + (tc.last.code || '')) : 'none yet')]],
        ['TXT', txt(a.txt)]
      ]));
  }

  function peers(m) {
    var byKey = {}, order = [];
    function get(key, address) {
      if (!byKey[key]) { byKey[key] = { key: key, address: address, announces: [], probe: null }; order.push(key); }
      return byKey[key];
    }
    m.clusters.forEach(function (c) {
      c.endpoints.forEach(function (ep) {
        if (ep.source === 'static' || ep.source === 'srv') return;
        var hp = ep.txt.hostprobe;
        get(hp ? ep.address + ':' + hp : ep.address, ep.address).announces.push(ep);
      });
    });
    m.hostProbes.hosts.forEach(function (hh) { get(hh.host, hh.host).probe = hh; });
    var rows = order.map(function (k) {
      var p = byKey[k], pr = p.probe;
      return h('tr', { 'data-key': k },
        h('td', null, h('code', null, p.key)),
        h('td', null, pr ? [stateBadge(pr.state), ' loss ' + pct(pr.lossRate) + (pr.downCode ? ' ' + pr.downCode : '')] : h('span', { 'class': 'muted' }, 'not probed')),
        h('td', null, p.announces.length ? p.announces.map(function (ep, i) { return [i ? ', ' : '', ep.label + ' (port ' + ep.port + ', ' + ep.state + ')']; }) : h('span', { 'class': 'muted' }, 'nothing we use')));
    });
    var dir = m.ambassadorListeners;
    return h('section', { 'aria-labelledby': 'h-peers' },
      h('h2', { id: 'h-peers' }, 'Peers'),
      h('div', { 'class': 'card' },
        rows.length
          ? h('table', null, h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Peer (host probe port)'), h('th', { scope: 'col' }, 'Host probe'), h('th', { scope: 'col' }, 'Announces'))), h('tbody', null, rows))
          : h('p', { 'class': 'muted' }, 'No peer announces anything this ambassador connects to.'),
        dir.length ? [h('h3', null, 'Ambassadors\u2019 listeners on the network'), h('ul', { 'class': 'plain small' }, dir.map(function (l) {
          return h('li', { 'data-key': l.instance }, l.service + ' on ' + l.host + ' port ' + l.port + ' (' + l.addresses.join(', ') + ')');
        }))] : null));
  }

  function idOf(s) { return String(s).replace(/[^A-Za-z0-9_-]/g, '_'); }

  function render() {
    var m = model;
    if (!m) return;
    var heading = 'ambassador ' + (m.host || 'on :' + location.port);
    document.title = (m.ambassador.health.ok ? '' : '\u2717 ') + heading + ' \u2014 status';
    if (title.textContent !== heading) title.textContent = heading;
    patch(root, [
      self(m),
      h('section', { 'aria-labelledby': 'h-listeners' }, h('h2', { id: 'h-listeners' }, 'Listeners (--connect)'),
        m.clusters.length ? h('div', { 'class': 'listeners' }, m.clusters.map(listener)) : h('p', { 'class': 'muted' }, 'None.')),
      h('section', { 'aria-labelledby': 'h-ads' }, h('h2', { id: 'h-ads' }, 'Advertisements (--advertise)'),
        m.advertisements.length ? h('div', { 'class': 'grid' }, m.advertisements.map(advertisement)) : h('p', { 'class': 'muted' }, 'None.')),
      peers(m)
    ]);
    showLive();
  }

  function showLive() {
    var now = Date.now();
    var stale = lostSince || (lastMessage && now - lastMessage > 3000 ? lastMessage : 0);
    document.body.classList.toggle('stale', !!stale);
    if (stale) {
      banner.hidden = false;
      banner.textContent = '\u2717 The ambassador stopped answering at ' + clock(stale) + ' (' + span(now - stale) +
        ' ago). What you see is what it said last; this page reconnects by itself.';
      live.textContent = '\u2717 not answering';
    } else {
      banner.hidden = true;
      live.textContent = lastMessage ? '\u25CF live \u00b7 updated ' + clock(lastMessage) : '\u2026 connecting';
    }
  }

  function onModel(m) {
    lastMessage = Date.now();
    lostSince = 0;
    offset = m.now - lastMessage;
    keep = m.history.samples;
    var keys = {};
    m.clusters.forEach(function (c) {
      keys['listener ' + c.historyKey] = 1;
      if (c.acceptedRates) rings['listener ' + c.historyKey] = { c: c.acceptedRates.slice(), f: [] };
      c.endpoints.forEach(function (ep) {
        keys[ep.historyKey] = 1;
        if (ep.rates) rings[ep.historyKey] = { c: ep.rates.connections.slice(), f: ep.rates.failures.slice() };
      });
    });
    if (m.history.withRates) seq = m.history.seq;
    for (var k in rings) if (!keys[k]) delete rings[k];
    model = m;
    render();
  }

  function onSample(s) {
    lastMessage = Date.now();
    if (s.seq <= seq) return;
    var gap = Math.min(s.seq - seq - 1, keep);
    seq = s.seq;
    for (var k in rings) {
      var r = rings[k];
      for (var g = 0; g < gap; g++) pushRing(r, 0, 0);
      if (k.indexOf('listener ') === 0) pushRing(r, s.listeners[k.slice(9)] || 0, 0);
      else { var e = s.endpoints[k] || [0, 0]; pushRing(r, e[0], e[1]); }
    }
  }

  function connect() {
    if (source) source.close();
    source = new EventSource('events');
    source.addEventListener('model', function (e) { onModel(JSON.parse(e.data)); });
    source.addEventListener('sample', function (e) { onSample(JSON.parse(e.data)); });
    source.onerror = function () {
      if (!lostSince) lostSince = lastMessage || Date.now();
      showLive();
      // A refusal (503, too many pages) ends an EventSource for good: try again later.
      if (source.readyState === 2) setTimeout(connect, 5000);
    };
  }

  setInterval(function () { if (model) render(); else showLive(); }, 1000);
  connect();
})();
`;

const BODY = `<a class="skip" href="#h-listeners">Skip to the listeners</a>
<header class="top">
<h1 id="title">ambassador status</h1>
<nav class="sections" aria-label="Sections"><a href="#h-self">This ambassador</a><a href="#h-listeners">Listeners</a><a href="#h-ads">Advertisements</a><a href="#h-peers">Peers</a></nav>
<p class="live" id="live" role="status" aria-live="polite">\u2026 connecting</p>
</header>
<div class="banner" id="banner" role="alert" hidden></div>
<main id="app"><noscript><p>This page needs JavaScript. The same data is at <a href="status">/status</a> (JSON).</p></noscript></main>`;

/** The whole document, as served. */
export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>ambassador \u2014 status</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
${BODY}
<script>${SCRIPT}</script>
</body>
</html>
`;

const sha256 = (text: string) => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;

/**
 * The page may run its own script and style and talk to its own origin, nothing else: no other
 * script, frame, form or fetch, even if a peer's TXT record tried to inject markup.
 */
export const STATUS_PAGE_CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** The page's script alone (a unit test parses it). */
export const STATUS_PAGE_SCRIPT = SCRIPT;
