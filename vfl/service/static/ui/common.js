// What every dashboard page shares: calls to this service's REST API with the session cookie, building
// elements (everything from the server goes in as text, never as HTML), times, and small SVG charts.
// Served by the package itself: no external script, font or stylesheet.
"use strict";

window.vfl = (() => {
  const SVG = "http://www.w3.org/2000/svg";
  const FINAL = new Set(["succeeded", "failed", "cancelled", "damaged"]);

  // Every call says it comes from this page (the server requires it with the cookie for changes).
  async function api(method, path, payload) {
    const init = { method, credentials: "same-origin", headers: { "X-VFL-UI": "1" } };
    if (payload !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    const response = await fetch(path, init);
    if (response.status === 401) {
      window.location.assign("/ui/login");
      throw new Error("session expired");
    }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = typeof data.detail === "string" ? data.detail
        : Array.isArray(data.detail) ? data.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ")
        : `${response.status} ${response.statusText}`;
      throw new Error(detail);
    }
    return data;
  }

  function el(tag, attributes = {}, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (value !== undefined && value !== null) node.setAttribute(key, value);
    }
    if (text instanceof Node) node.append(text);
    else if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attributes = {}, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  const pad = (n) => String(n).padStart(2, "0");
  // Local date and time, "2026-12-06 12:03:11" (a bank's operator compares it with its own logs).
  function when(seconds) {
    if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "";
    const d = new Date(seconds * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  const clock = (seconds) => when(seconds).slice(11);

  // "3.2 s", "4 min 05 s", "1 h 02 min".
  function duration(seconds) {
    if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) return "";
    if (seconds < 10) return `${seconds.toFixed(1)} s`;
    if (seconds < 60) return `${Math.round(seconds)} s`;
    const s = Math.round(seconds);
    if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
    return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} min`;
  }

  const number = (x, digits = 4) => (typeof x === "number" && Number.isFinite(x) ? x.toFixed(digits) : "");
  const last = (list) => (Array.isArray(list) && list.length ? list[list.length - 1] : undefined);

  // "waiting for party-a (unreachable since 12:03:11; the job fails at 12:05:11 unless it comes back)"
  function waitingText(w) {
    return `waiting for ${w.peer} (${w.state || "unreachable"} since ${clock(w.since)}; ` +
      `the job fails at ${clock(w.fails_at)} unless it comes back)`;
  }

  // A job's end: when it stopped (finished jobs) and how long it ran (or runs).
  function finishedAt(job) {
    return FINAL.has(job.state) ? job.stopped_at || job.updated_at : undefined;
  }
  function ranFor(job) {
    const end = finishedAt(job) || Date.now() / 1000;
    return typeof job.created_at === "number" ? end - job.created_at : undefined;
  }

  // A line chart: series = [{name, values (index = epoch - 1), cls}], or points [[x, y], ...] with xy = true.
  function lineChart({ series, xLabel, yLabel, width = 460, height = 240, xy = false, diagonal = false, id }) {
    const m = { left: 56, right: 12, top: 12, bottom: 40 };
    const w = width - m.left - m.right;
    const h = height - m.top - m.bottom;
    const points = series.map((s) => (xy ? s.points : s.values.map((v, i) => [i + 1, v]))
      .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)));
    const all = points.flat();
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", class: "chart" });
    if (id) root.setAttribute("id", id);
    root.append(svg("title", {}, `${yLabel} against ${xLabel}`));
    if (!all.length) return root;
    let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
    let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
    if (xy) [x0, x1, y0, y1] = [0, 1, 0, 1];
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
    const span = y1 - y0;
    if (!xy) { y0 -= span * 0.05; y1 += span * 0.05; }
    const X = (x) => m.left + ((x - x0) / (x1 - x0)) * w;
    const Y = (y) => m.top + h - ((y - y0) / (y1 - y0)) * h;
    const axes = svg("g", { class: "axes" });
    axes.append(svg("line", { x1: m.left, y1: m.top + h, x2: m.left + w, y2: m.top + h }));
    axes.append(svg("line", { x1: m.left, y1: m.top, x2: m.left, y2: m.top + h }));
    for (let i = 0; i <= 4; i++) {
      const y = y0 + ((y1 - y0) * i) / 4;
      axes.append(svg("line", { x1: m.left, y1: Y(y), x2: m.left + w, y2: Y(y), class: "grid" }));
      axes.append(svg("text", { x: m.left - 6, y: Y(y) + 4, "text-anchor": "end" }, y.toFixed(xy ? 2 : 3)));
    }
    const xticks = xy ? [0, 0.25, 0.5, 0.75, 1] : ticks(x0, x1);
    for (const x of xticks) {
      axes.append(svg("text", { x: X(x), y: m.top + h + 16, "text-anchor": "middle" }, xy ? x.toFixed(2) : x));
    }
    axes.append(svg("text", { x: m.left + w / 2, y: height - 6, "text-anchor": "middle", class: "label" }, xLabel));
    axes.append(svg("text", { x: 12, y: m.top + h / 2, "text-anchor": "middle", class: "label",
                              transform: `rotate(-90 12 ${m.top + h / 2})` }, yLabel));
    root.append(axes);
    if (diagonal) {
      root.append(svg("line", { x1: X(0), y1: Y(0), x2: X(1), y2: Y(1), class: "diagonal" }));
    }
    series.forEach((s, k) => {
      const d = points[k].map(([x, y], i) => `${i ? "L" : "M"}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join("");
      const g = svg("g", { class: `series ${s.cls || `series-${k}`}`, "data-series": s.name });
      g.append(svg("path", { d }));
      if (!xy && points[k].length <= 60) {
        for (const [x, y] of points[k]) {
          const dot = svg("circle", { cx: X(x).toFixed(1), cy: Y(y).toFixed(1), r: 2.5 });
          dot.append(svg("title", {}, `${s.name}, epoch ${x}: ${y.toFixed(6)}`));
          g.append(dot);
        }
      }
      root.append(g);
    });
    const legend = svg("g", { class: "legend" });
    series.forEach((s, k) => {
      // A ROC curve fills the top left: its legend goes bottom right.
      const y = xy ? m.top + h - 10 - (series.length - 1 - k) * 16 : m.top + 10 + k * 16;
      const g = svg("g", { class: `series ${s.cls || `series-${k}`}` });
      g.append(svg("line", { x1: m.left + w - 150, y1: y - 4, x2: m.left + w - 130, y2: y - 4 }));
      g.append(svg("text", { x: m.left + w - 124, y }, s.name));
      legend.append(g);
    });
    root.append(legend);
    return root;
  }

  function ticks(x0, x1) {
    const step = Math.max(1, Math.ceil((x1 - x0) / 8));
    const out = [];
    for (let x = Math.ceil(x0); x <= x1; x += step) out.push(x);
    return out;
  }

  function table(headers, rows, attributes = {}) {
    const t = el("table", attributes);
    const head = el("tr");
    for (const h of headers) head.append(el("th", {}, h));
    const thead = el("thead");
    thead.append(head);
    t.append(thead);
    const body = el("tbody");
    for (const row of rows) {
      const tr = el("tr");
      for (const cell of row) {
        const td = el("td");
        if (cell instanceof Node) td.append(cell); else td.textContent = cell === undefined || cell === null ? "" : String(cell);
        tr.append(td);
      }
      body.append(tr);
    }
    t.append(body);
    return t;
  }

  return { FINAL, api, el, svg, when, clock, duration, number, last, waitingText, finishedAt, ranFor, lineChart, table };
})();
