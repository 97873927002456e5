// rayplane console: confirmations for destructive forms and live updates of
// the cluster page. No framework, no inline script (the CSP forbids it), and
// text is only ever set with textContent, never parsed as HTML.
"use strict";

document.addEventListener("submit", function (ev) {
  var msg = ev.target.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) {
    ev.preventDefault();
  }
});

(function () {
  var root = document.getElementById("cluster");
  if (!root) {
    return;
  }
  var url = root.getAttribute("data-live");
  var transitional = root.getAttribute("data-transitional") === "true";
  var samples = [];
  var maxSamples = 120;
  var note = document.getElementById("live-note");

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) {
      e.textContent = text;
    }
    if (cls) {
      e.className = cls;
    }
    return e;
  }

  function badge(status) {
    return el("span", status, "badge s-" + String(status).toLowerCase());
  }

  function setText(id, text) {
    var e = document.getElementById(id);
    if (e && e.textContent !== text) {
      e.textContent = text;
    }
  }

  function renderNodes(nodes) {
    var body = document.querySelector("#nodes tbody");
    var rows = [];
    nodes.forEach(function (n) {
      var tr = el("tr");
      tr.appendChild(el("td", n.id));
      tr.appendChild(el("td", n.group));
      tr.appendChild(el("td", n.instance_type));
      var st = el("td");
      st.appendChild(badge(n.status));
      if (n.status_reason) {
        st.appendChild(el("div", n.status_reason, "reason"));
      }
      tr.appendChild(st);
      tr.appendChild(el("td", n.runtime_state));
      tr.appendChild(el("td", n.heartbeat));
      tr.appendChild(el("td", n.resources));
      tr.appendChild(el("td", n.usage));
      rows.push(tr);
    });
    if (rows.length === 0) {
      var tr = el("tr", null, "none");
      var td = el("td", "No nodes.");
      td.colSpan = 8;
      tr.appendChild(td);
      rows.push(tr);
    }
    body.replaceChildren.apply(body, rows);
  }

  function renderEvents(events) {
    var list = document.getElementById("events");
    var items = events.map(function (e) {
      var li = el("li");
      li.appendChild(el("time", e.time));
      li.appendChild(document.createTextNode(" "));
      li.appendChild(el("span", e.kind, "kind"));
      li.appendChild(document.createTextNode(" "));
      li.appendChild(el("span", e.message, "msg"));
      return li;
    });
    if (items.length === 0) {
      items.push(el("li", "No events yet.", "none"));
    }
    list.replaceChildren.apply(list, items);
  }

  function renderConditions(conds) {
    var body = document.querySelector("#conditions tbody");
    if (!body) {
      return;
    }
    body.replaceChildren.apply(body, (conds || []).map(function (c) {
      var tr = el("tr");
      [c.type, c.status, c.reason, c.message || "", String(c.last_transition_time).replace("T", " ").replace(/\.\d+/, "")].forEach(function (t) {
        tr.appendChild(el("td", t));
      });
      return tr;
    }));
  }

  // The chart: CPUs in use and CPU capacity over the samples this page took.
  var svgNS = "http://www.w3.org/2000/svg";
  function drawChart() {
    var svg = document.getElementById("usage-chart");
    if (!svg) {
      return;
    }
    var w = 600, h = 160, pad = 24;
    var top = 1;
    samples.forEach(function (s) { top = Math.max(top, s.cap, s.used); });
    function x(i) { return pad + (w - 2 * pad) * (samples.length < 2 ? 0 : i / (samples.length - 1)); }
    function y(v) { return h - pad - (h - 2 * pad) * v / top; }
    function line(key, cls) {
      var p = document.createElementNS(svgNS, "polyline");
      p.setAttribute("points", samples.map(function (s, i) { return x(i).toFixed(1) + "," + y(s[key]).toFixed(1); }).join(" "));
      p.setAttribute("class", cls);
      p.setAttribute("fill", "none");
      return p;
    }
    var axis = document.createElementNS(svgNS, "line");
    axis.setAttribute("x1", pad); axis.setAttribute("x2", w - pad);
    axis.setAttribute("y1", h - pad); axis.setAttribute("y2", h - pad);
    axis.setAttribute("class", "axis");
    var label = document.createElementNS(svgNS, "text");
    label.setAttribute("x", pad); label.setAttribute("y", 14);
    label.setAttribute("class", "label");
    label.textContent = top + " CPU";
    var kids = [axis, label];
    if (samples.length > 0) {
      kids.push(line("cap", "capacity"), line("used", "used"));
    }
    svg.replaceChildren.apply(svg, kids);
  }

  function apply(s) {
    var st = document.getElementById("status");
    if (st.textContent !== s.status) {
      st.textContent = s.status;
      st.className = "badge s-" + s.status.toLowerCase();
    }
    setText("status-reason", s.status_reason || "");
    setText("desired", s.desired_state);
    setText("node-count", s.nodes_running + "/" + s.nodes_total);
    setText("cost", s.hourly_cost);
    if (s.usage_text) {
      setText("usage-caption", s.usage_text);
    }
    renderNodes(s.nodes);
    renderEvents(s.events);
    renderConditions(s.conditions);
    var used = (s.used && s.used.CPU) || 0, cap = (s.capacity && s.capacity.CPU) || 0;
    samples.push({ used: used, cap: cap });
    if (samples.length > maxSamples) {
      samples.shift();
    }
    drawChart();
    transitional = s.transitional;
  }

  var timer = null;
  function schedule() {
    // Fast while the cluster is on its way somewhere, slow when it rests.
    timer = window.setTimeout(poll, transitional ? 1000 : 5000);
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" }, cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) {
          window.location.assign("/ui/sign-in?ended=1");
          throw new Error("signed out");
        }
        if (!r.ok) {
          throw new Error("HTTP " + r.status);
        }
        return r.json();
      })
      .then(function (s) {
        apply(s);
        note.textContent = "Updated " + new Date().toLocaleTimeString();
        schedule();
      })
      .catch(function (err) {
        if (String(err.message) === "signed out") {
          return;
        }
        note.textContent = "Live updates paused (" + err.message + "); retrying.";
        timer = window.setTimeout(poll, 5000);
      });
  }

  drawChart();
  poll();
})();
