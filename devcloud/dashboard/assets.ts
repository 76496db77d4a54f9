/**
 * The dashboard page, its stylesheet and its script, as strings served by `dashboard.ts`.
 * Kept as TypeScript modules so a compiled devcloud needs no read grant on its sources.
 *
 * The script builds every element with `textContent` (never `innerHTML`): unit ids, titles and
 * error messages are untrusted. It draws the charts on a `<canvas>` itself.
 * @module
 */

/** `GET /`. */
export const INDEX_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>AosCore devcloud</title>
<link rel="stylesheet" href="/style.css">
</head>
<body>
<header>
  <h1>AosCore devcloud</h1>
  <span id="live" class="badge wait">connecting</span>
  <span id="updated" class="muted"></span>
</header>
<main>
  <section id="empty" class="card notice" hidden></section>
  <section class="card">
    <h2>Deployed services</h2>
    <div id="services"><p class="muted">Loading…</p></div>
  </section>
  <div id="units"></div>
  <section class="card">
    <h2>Recent alerts <span class="muted small">newest first</span></h2>
    <div id="alerts"><p class="muted">Loading…</p></div>
  </section>
</main>
<noscript><p class="card">This page needs JavaScript; the data is at <a href="/api/state">/api/state</a>.</p></noscript>
<script src="/app.js" defer></script>
</body>
</html>
`;

/** `GET /style.css`. */
export const STYLE_CSS = `:root {
  --bg: #f4f6f8; --card: #fff; --ink: #1d2733; --muted: #6b7785; --line: #e2e6ea;
  --ok: #1e8e3e; --bad: #c5221f; --warn: #b06000; --info: #1a73e8; --cpu: #1a73e8; --ram: #e8710a;
}
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); background: var(--bg); }
header { display: flex; align-items: center; gap: 12px; padding: 10px 20px; background: #1d2733;
  color: #fff; position: sticky; top: 0; z-index: 1; }
header h1 { font-size: 18px; margin: 0; font-weight: 600; }
header .muted { color: #b8c2cc; }
main { padding: 16px 20px; max-width: 1400px; margin: 0 auto; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 12px 16px; margin-bottom: 16px; }
.notice { border-left: 4px solid var(--info); font-size: 15px; }
h2 { font-size: 16px; margin: 0 0 8px; display: flex; align-items: center; gap: 8px;
  flex-wrap: wrap; }
h3 { font-size: 14px; margin: 14px 0 6px; color: #3c4650; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; overflow-wrap: anywhere; }
th { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; }
tbody.group th { text-transform: none; color: var(--ink); background: #f8f9fa; font-size: 13px; }
.muted { color: var(--muted); }
.small { font-size: 12px; font-weight: normal; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
  font-weight: 600; background: #e8eaed; color: #3c4043; }
.badge.ok { background: #e6f4ea; color: var(--ok); }
.badge.bad { background: #fce8e6; color: var(--bad); }
.badge.warn, .badge.wait { background: #fef7e0; color: var(--warn); }
.err { color: var(--bad); }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 12px;
  margin-top: 10px; }
.chart { border: 1px solid var(--line); border-radius: 6px; padding: 6px 8px; }
.chart canvas { width: 100%; height: 150px; display: block; }
.legend { display: flex; gap: 14px; font-size: 12px; align-items: center; flex-wrap: wrap; }
.legend .cpu::before, .legend .ram::before { content: ""; display: inline-block; width: 10px;
  height: 3px; margin-right: 4px; vertical-align: middle; }
.legend .cpu::before { background: var(--cpu); }
.legend .ram::before { background: var(--ram); }
`;

/** `GET /app.js`. Plain ES5-ish script: no build step, no framework. */
export const APP_JS = String.raw`"use strict";
(function () {
  var POLL_MS = 5000;
  var live = false;
  var lastState = null;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }
  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }
  function fmtTime(v) {
    var d = new Date(v);
    if (isNaN(d.getTime())) return String(v);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  function fmtClock(ms) {
    var d = new Date(ms);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  function fmtBytes(n) {
    if (typeof n !== "number") return "–";
    if (n >= 1073741824) return (n / 1073741824).toFixed(1) + " GiB";
    if (n >= 1048576) return (n / 1048576).toFixed(0) + " MiB";
    if (n >= 1024) return (n / 1024).toFixed(0) + " KiB";
    return n + " B";
  }
  function stateClass(s) {
    if (s === "active" || s === "installed" || s === "provisioned" || s === "finished") return "ok";
    if (s === "failed" || s === "error") return "bad";
    if (s === "inactive" || s === "removing" || s === "paused" || s === "absent") return "";
    return "warn";
  }
  function badge(text, cls) {
    return el("span", "badge " + (cls === undefined ? stateClass(text) : cls), text);
  }
  // A table from headers and rows; a cell is a string/number or a ready element.
  function table(headers, rows) {
    var t = el("table");
    t.appendChild(head(headers));
    var tbody = el("tbody");
    rows.forEach(function (r) { tbody.appendChild(row(r)); });
    t.appendChild(tbody);
    return t;
  }
  function head(headers) {
    var thead = el("thead");
    var tr = el("tr");
    headers.forEach(function (h) { tr.appendChild(el("th", null, h)); });
    thead.appendChild(tr);
    return thead;
  }
  function row(cells) {
    var tr = el("tr");
    cells.forEach(function (c) {
      var td = el("td");
      if (c instanceof Node) td.appendChild(c);
      else td.textContent = c === undefined || c === null ? "" : String(c);
      tr.appendChild(td);
    });
    return tr;
  }
  function errCell(text) {
    return text ? el("span", "err", text) : "";
  }

  function renderServices(s) {
    var box = document.getElementById("services");
    clear(box);
    if (s.services.length === 0) {
      box.appendChild(el("p", "muted", "Nothing deployed yet (devcloud deploy <service>)."));
      return;
    }
    box.appendChild(table(["Service", "Item", "Version", "Wanted", "Progress per unit"],
      s.services.map(function (svc) {
        var prog = el("div");
        if (svc.units.length === 0) prog.appendChild(el("span", "muted", "no unit"));
        svc.units.forEach(function (u) {
          var line = el("div");
          line.appendChild(el("span", "mono", u.systemId + " "));
          line.appendChild(badge(u.itemState));
          line.appendChild(el("span", null, " " + u.active + "/" + svc.instances + " active "));
          if (u.failed) line.appendChild(badge("failed", "bad"));
          else if (u.done) line.appendChild(badge("done", "ok"));
          prog.appendChild(line);
        });
        return [svc.name, el("span", "mono", svc.id), svc.version, svc.instances, prog];
      })));
  }

  function renderNodes(unit, card) {
    card.appendChild(el("h3", null, "Nodes"));
    if (unit.nodes.length === 0) {
      card.appendChild(el("p", "muted", "No node reported yet."));
      return;
    }
    card.appendChild(table(["Node", "Title", "State", "Connected", "CPU", "RAM", "Runtimes"],
      unit.nodes.map(function (n) {
        var state = el("div");
        state.appendChild(badge(n.state));
        if (n.error) state.appendChild(el("div", "err", n.error));
        var ram = n.ram === undefined ? "–" :
          fmtBytes(n.ram) + " / " + fmtBytes(n.totalRam) +
            (n.totalRam > 0 ? " (" + Math.round(100 * n.ram / n.totalRam) + " %)" : "");
        return [
          el("span", "mono", n.id),
          n.title,
          state,
          badge(n.connected ? "yes" : "no", n.connected ? "ok" : "bad"),
          n.cpu === undefined ? "–" : n.cpu + " %",
          ram,
          n.runtimes.map(function (r) { return r.id + " (" + r.type + ")"; }).join(", ") || "–",
        ];
      })));
    var charts = el("div", "charts");
    card.appendChild(charts);
    unit.nodes.forEach(function (n) {
      var box = el("div", "chart");
      var legend = el("div", "legend");
      legend.appendChild(el("strong", null, n.title));
      legend.appendChild(el("span", "cpu", "CPU %"));
      legend.appendChild(el("span", "ram", "RAM % of " + fmtBytes(n.totalRam)));
      legend.appendChild(el("span", "muted", n.history.length + " samples"));
      box.appendChild(legend);
      var canvas = el("canvas");
      canvas.setAttribute("aria-label", "CPU and RAM of node " + n.id);
      box.appendChild(canvas);
      charts.appendChild(box);
      drawChart(canvas, n);
    });
  }

  // Two lines on one canvas: CPU in percent and RAM in percent of the node's total.
  function drawChart(canvas, node) {
    var ratio = window.devicePixelRatio || 1;
    var w = canvas.clientWidth || 480;
    var h = canvas.clientHeight || 150;
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
    var g = canvas.getContext("2d");
    if (!g) return;
    g.scale(ratio, ratio);
    var css = getComputedStyle(document.documentElement);
    var left = 36, right = 8, top = 8, bottom = 20;
    var pw = w - left - right, ph = h - top - bottom;
    var pts = node.history;
    var max = 100;
    pts.forEach(function (p) { if (p.cpu > max) max = Math.ceil(p.cpu / 100) * 100; });
    g.font = "11px system-ui, sans-serif";
    g.strokeStyle = "#e2e6ea";
    g.fillStyle = "#6b7785";
    g.lineWidth = 1;
    for (var i = 0; i <= 4; i++) {
      var y = top + ph - (ph * i) / 4;
      g.beginPath();
      g.moveTo(left, Math.round(y) + 0.5);
      g.lineTo(left + pw, Math.round(y) + 0.5);
      g.stroke();
      g.fillText(String(Math.round((max * i) / 4)), 4, y + 4);
    }
    if (pts.length === 0) {
      g.fillText("no monitoring data yet", left + 10, top + ph / 2);
      return;
    }
    var t0 = pts[0].t, t1 = pts[pts.length - 1].t;
    var span = Math.max(t1 - t0, 1);
    function x(p) { return pts.length === 1 ? left + pw : left + (pw * (p.t - t0)) / span; }
    function line(value, color) {
      g.strokeStyle = color;
      g.lineWidth = 2;
      g.beginPath();
      pts.forEach(function (p, k) {
        var v = Math.max(0, Math.min(max, value(p)));
        var yy = top + ph - (ph * v) / max;
        if (k === 0) g.moveTo(x(p), yy); else g.lineTo(x(p), yy);
      });
      if (pts.length === 1) g.arc(x(pts[0]), top + ph - (ph * Math.min(max, value(pts[0]))) / max, 2, 0, 7);
      g.stroke();
    }
    line(function (p) { return p.cpu; }, css.getPropertyValue("--cpu").trim() || "#1a73e8");
    if (node.totalRam > 0) {
      line(function (p) { return (100 * p.ram) / node.totalRam; },
        css.getPropertyValue("--ram").trim() || "#e8710a");
    }
    g.fillStyle = "#6b7785";
    g.fillText(fmtClock(t0), left, h - 5);
    var end = fmtClock(t1);
    g.fillText(end, left + pw - g.measureText(end).width, h - 5);
  }

  function renderUnit(unit) {
    var card = el("section", "card unit");
    var h = el("h2");
    h.appendChild(el("span", null, "Unit"));
    h.appendChild(el("span", "mono", unit.systemId));
    h.appendChild(badge(unit.connected ? "connected" : "offline", unit.connected ? "ok" : "bad"));
    h.appendChild(el("span", "muted small", "last message " + fmtTime(unit.lastSeen)));
    unit.unitConfig.forEach(function (c) {
      h.appendChild(el("span", "muted small", "unit config " + (c.version || "–")));
      h.appendChild(badge(c.state));
      if (c.error) h.appendChild(el("span", "err small", c.error));
    });
    card.appendChild(h);
    renderNodes(unit, card);

    card.appendChild(el("h3", null, "Update items"));
    if (unit.items.length === 0) card.appendChild(el("p", "muted", "No item installed."));
    else {
      card.appendChild(table(["Item", "Type", "Version", "State", "Error"],
        unit.items.map(function (i) {
          return [el("span", "mono", i.id), i.type || "", i.version, badge(i.state), errCell(i.error)];
        })));
    }

    card.appendChild(el("h3", null, "Instances"));
    if (unit.instanceGroups.length === 0) {
      card.appendChild(el("p", "muted", "No instance reported."));
      return card;
    }
    var t = el("table", "instances");
    t.appendChild(head(["#", "Node", "Runtime", "State", "Error"]));
    unit.instanceGroups.forEach(function (g) {
      var body = el("tbody", "group");
      var tr = el("tr");
      var th = el("th");
      th.colSpan = 5;
      th.appendChild(el("span", null, g.service ? g.service + " " : ""));
      th.appendChild(el("span", "mono", g.item));
      th.appendChild(el("span", "muted", " · subject "));
      th.appendChild(el("span", "mono", g.subject));
      th.appendChild(el("span", "muted", " · version " + g.version + " · " +
        g.instances.length + " instance" + (g.instances.length === 1 ? "" : "s")));
      tr.appendChild(th);
      body.appendChild(tr);
      t.appendChild(body);
      var rows = el("tbody", "instance-rows");
      g.instances.forEach(function (i) {
        var r = row([i.instance, el("span", "mono", i.node), el("span", "mono", i.runtime),
          badge(i.state), errCell(i.error)]);
        r.className = "instance";
        rows.appendChild(r);
      });
      t.appendChild(rows);
    });
    card.appendChild(t);
    return card;
  }

  function renderAlerts(s) {
    var box = document.getElementById("alerts");
    clear(box);
    if (s.alerts.length === 0) {
      box.appendChild(el("p", "muted", "No alert received."));
      return;
    }
    box.appendChild(table(["Time", "Unit", "Kind", "Source", "Message"],
      s.alerts.map(function (a) {
        return [fmtTime(a.time), el("span", "mono", a.systemId), badge(a.kind, ""),
          el("span", "mono", a.source), a.message];
      })));
  }

  function render(s) {
    lastState = s;
    var connected = s.units.filter(function (u) { return u.connected; }).length;
    var empty = document.getElementById("empty");
    if (connected === 0) {
      empty.hidden = false;
      empty.textContent = s.units.length === 0
        ? "No unit connected yet. Point a unit's service discovery URL at this devcloud."
        : "No unit connected now (" + s.units.length + " known, shown as offline).";
    } else {
      empty.hidden = true;
    }
    renderServices(s);
    var units = document.getElementById("units");
    clear(units);
    s.units.forEach(function (u) { units.appendChild(renderUnit(u)); });
    renderAlerts(s);
    document.getElementById("updated").textContent = "updated " + fmtTime(s.generatedAt);
  }

  function setLive(text, cls) {
    var b = document.getElementById("live");
    b.textContent = text;
    b.className = "badge " + cls;
  }

  function poll() {
    return fetch("/api/state", { cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(render)
      .catch(function () { if (!live) setLive("devcloud unreachable", "bad"); });
  }

  function connect() {
    if (typeof EventSource !== "function") {
      setLive("polling", "warn");
      return;
    }
    var es = new EventSource("/api/events");
    es.addEventListener("open", function () {
      live = true;
      setLive("live", "ok");
    });
    es.addEventListener("state", function (e) {
      try {
        render(JSON.parse(e.data));
      } catch (err) {
        console.error("bad state event", err);
      }
    });
    es.addEventListener("error", function () {
      live = false;
      setLive("reconnecting (polling)", "warn");
    });
  }

  // Charts follow the width of the page.
  var resizeTimer = 0;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () { if (lastState) render(lastState); }, 150);
  });

  poll();
  // "?live=0" keeps to polling: for clients (and headless runs) that cannot hold a stream open.
  if (new URLSearchParams(location.search).get("live") === "0") setLive("polling", "warn");
  else connect();
  setInterval(function () { if (!live) poll(); }, POLL_MS);
})();
`;
