// Histogram drawing on canvas: real axes (x_min/x_max/x_bin or variable edges), log scale,
// under/overflow, overlays, zoom and hover. No library: thumbnails by the thousand must be cheap.

const VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"]
  .map((c) => [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16)));
/** Viridis as 256 [r, g, b]. */
const LUT = Array.from({ length: 256 }, (_, i) => {
  const t = (i / 255) * (VIRIDIS.length - 1);
  const k = Math.min(Math.floor(t), VIRIDIS.length - 2);
  const f = t - k;
  return VIRIDIS[k].map((a, j) => Math.round(a + f * (VIRIDIS[k + 1][j] - a)));
});
export const COLORS = ["#1f5fa8", "#d9480f", "#2b8a3e", "#ae3ec9", "#e8590c", "#0b7285", "#c2255c", "#5c940d"];

/** Bin edges of an axis: the stored variable edges, else `n` equal bins from `min` to `max`. */
export function edges(min, max, n, stored) {
  if (stored && stored.length === n + 1) return Array.from(stored);
  const e = new Array(n + 1);
  for (let i = 0; i <= n; i++) e[i] = min + ((max - min) * i) / n;
  e[n] = max;
  return e;
}

/** A 1D series from a th1 row. */
export function series1D(h, label, color) {
  return {
    label: label || h.me,
    edges: edges(h.x_min, h.x_max, h.x_bin, h.x_edges),
    values: Array.from(h.data),
    underflow: h.underflow ?? null,
    overflow: h.overflow ?? null,
    entries: h.entries,
    color,
  };
}

/** Integral, mean and RMS of a 1D series from its bin centres (flow bins excluded, as ROOT's defaults). */
export function stats(s) {
  let w = 0, m = 0;
  s.values.forEach((v, i) => { const c = (s.edges[i] + s.edges[i + 1]) / 2; w += v; m += v * c; });
  const mean = w ? m / w : NaN;
  let q = 0;
  s.values.forEach((v, i) => { const c = (s.edges[i] + s.edges[i + 1]) / 2; q += v * (c - mean) ** 2; });
  return { integral: w, mean, rms: w ? Math.sqrt(Math.max(0, q / w)) : NaN };
}

/** A number for an axis label (short). */
export function fmt(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(2).replace(/\.?0+e/, "e");
  return String(parseFloat(v.toPrecision(4)));
}

/** Nice tick positions between a and b. */
export function ticks(a, b, n = 6) {
  if (!(b > a)) return [a];
  const raw = (b - a) / n;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) || 10 * p;
  const out = [];
  for (let t = Math.ceil(a / step) * step; t <= b + step * 1e-9; t += step) out.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  return out;
}

function logTicks(a, b) {
  const out = [];
  for (let e = Math.ceil(Math.log10(a)); e <= Math.floor(Math.log10(b)); e++) out.push(Math.pow(10, e));
  return out.length >= 2 ? out : ticks(Math.log10(a), Math.log10(b), 4).map((t) => Math.pow(10, t));
}

/** A canvas sized to its CSS box at device resolution; returns its 2D context in CSS pixels. */
function fit(canvas, w, h) {
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  canvas.style.width = w + "px";
  canvas.style.height = h + "px";
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}

function scaleY(lo, hi, log, top, bottom) {
  if (log) {
    const a = Math.log10(lo), b = Math.log10(hi);
    return (v) => (v > 0 ? bottom - ((Math.log10(v) - a) / (b - a)) * (bottom - top) : bottom + 1);
  }
  return (v) => bottom - ((v - lo) / (hi - lo)) * (bottom - top);
}

function yRange(all, log) {
  all = all.filter(Number.isFinite);
  if (!all.length) all = [0];
  if (log) {
    const pos = all.filter((v) => v > 0);
    if (!pos.length) return [0.1, 10];
    const lo = Math.min(...pos), hi = Math.max(...pos);
    return [lo / 2, hi * (hi === lo ? 10 : 2)];
  }
  let lo = Math.min(0, ...all), hi = Math.max(0, ...all);
  if (hi === lo) hi = lo + 1;
  return [lo, hi + (hi - lo) * 0.05];
}

function norm(s, on) {
  if (!on) return s;
  const sum = s.values.reduce((a, v) => a + v, 0) || 1;
  return { ...s, values: s.values.map((v) => v / sum), underflow: s.underflow == null ? null : s.underflow / sum, overflow: s.overflow == null ? null : s.overflow / sum };
}

/** A small static 1D plot: bars at the real bin positions, no text. */
export function thumb1D(canvas, h, w = 220, ht = 120) {
  const ctx = fit(canvas, w, ht);
  const s = series1D(h);
  const [lo, hi] = yRange(s.values, false);
  const x0 = s.edges[0], x1 = s.edges[s.edges.length - 1];
  const X = (x) => 2 + ((x - x0) / (x1 - x0 || 1)) * (w - 4);
  const Y = scaleY(lo, hi, false, 4, ht - 2);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, w, ht);
  ctx.fillStyle = "#1f5fa8";
  for (let i = 0; i < s.values.length; i++) {
    const a = X(s.edges[i]), b = X(s.edges[i + 1]);
    const y = Y(s.values[i]), y0 = Y(0);
    ctx.fillRect(a, Math.min(y, y0), Math.max(b - a, 0.5), Math.abs(y0 - y));
  }
  ctx.strokeStyle = "#999";
  ctx.beginPath();
  ctx.moveTo(0, Y(0) + 0.5);
  ctx.lineTo(w, Y(0) + 0.5);
  ctx.stroke();
}

/** A small static 2D plot (viridis, zero bins blank). */
export function thumb2D(canvas, h, w = 220, ht = 120) {
  const ctx = fit(canvas, w, ht);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, w, ht);
  const xe = edges(h.x_min, h.x_max, h.x_bin, h.x_edges), ye = edges(h.y_min, h.y_max, h.y_bin, h.y_edges);
  heat(ctx, h.data, xe, ye, { x: [xe[0], xe[xe.length - 1]], y: [ye[0], ye[ye.length - 1]] }, { left: 1, top: 1, right: w - 1, bottom: ht - 1 }, false);
}

function colorRange(data, log) {
  let lo = Infinity, hi = -Infinity;
  for (const row of data) for (const v of row) if (v !== 0 && (!log || v > 0)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (lo === Infinity) return [0, 1];
  if (lo === hi) return log ? [lo / 10, hi] : [Math.min(0, lo), hi || 1];
  return [lo, hi];
}

function heat(ctx, data, xe, ye, view, box, log, range) {
  const [lo, hi] = range || colorRange(data, log);
  const X = (x) => box.left + ((x - view.x[0]) / (view.x[1] - view.x[0])) * (box.right - box.left);
  const Y = (y) => box.bottom - ((y - view.y[0]) / (view.y[1] - view.y[0])) * (box.bottom - box.top);
  const t = (v) => (log ? (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo) || 1) : (v - lo) / (hi - lo || 1));
  ctx.save();
  ctx.beginPath();
  ctx.rect(box.left, box.top, box.right - box.left, box.bottom - box.top);
  ctx.clip();
  for (let j = 0; j < data.length; j++) {
    const row = data[j];
    const ya = Y(ye[j + 1]), yb = Y(ye[j]);
    if (yb < box.top || ya > box.bottom) continue;
    for (let i = 0; i < row.length; i++) {
      const v = row[i];
      if (v === 0 || (log && v <= 0)) continue;
      const xa = X(xe[i]), xb = X(xe[i + 1]);
      if (xb < box.left || xa > box.right) continue;
      const c = LUT[Math.max(0, Math.min(255, Math.round(t(v) * 255)))];
      ctx.fillStyle = `rgb(${c[0]},${c[1]},${c[2]})`;
      ctx.fillRect(xa, ya, xb - xa + 0.4, yb - ya + 0.4);
    }
  }
  ctx.restore();
  return [lo, hi];
}

function axes(ctx, box, xv, yv, yLog, xTickFmt, xInt) {
  ctx.strokeStyle = "#333";
  ctx.fillStyle = "#222";
  ctx.lineWidth = 1;
  ctx.font = "11px system-ui, sans-serif";
  ctx.strokeRect(box.left + 0.5, box.top + 0.5, box.right - box.left, box.bottom - box.top);
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  const X = (x) => box.left + ((x - xv[0]) / (xv[1] - xv[0])) * (box.right - box.left);
  let xt = ticks(xv[0], xv[1], Math.max(2, Math.floor((box.right - box.left) / 80)));
  if (xInt) {
    // Lumisection axes: whole numbers only.
    xt = xt.filter(Number.isInteger);
    if (xt.length < 2) xt = Array.from({ length: Math.min(20, Math.floor(xv[1]) - Math.ceil(xv[0]) + 1) }, (_, k) => Math.ceil(xv[0]) + k);
  }
  for (const t of xt) {
    const x = Math.round(X(t)) + 0.5;
    ctx.beginPath(); ctx.moveTo(x, box.bottom); ctx.lineTo(x, box.bottom + 4); ctx.stroke();
    ctx.fillText((xTickFmt || fmt)(t), x, box.bottom + 6);
  }
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  const Y = scaleY(yv[0], yv[1], yLog, box.top, box.bottom);
  for (const t of yLog ? logTicks(yv[0], yv[1]) : ticks(yv[0], yv[1], Math.max(2, Math.floor((box.bottom - box.top) / 40)))) {
    const y = Math.round(Y(t)) + 0.5;
    ctx.beginPath(); ctx.moveTo(box.left - 4, y); ctx.lineTo(box.left, y); ctx.stroke();
    ctx.fillText(fmt(t), box.left - 6, y);
  }
}

function tooltip(container) {
  let tip = container.querySelector(".tip");
  if (!tip) {
    tip = document.createElement("div");
    tip.className = "tip";
    tip.hidden = true;
    container.appendChild(tip);
  }
  return tip;
}

function showTip(tip, canvas, ev, html) {
  tip.innerHTML = html;
  tip.hidden = false;
  const r = canvas.getBoundingClientRect();
  const x = ev.clientX - r.left, y = ev.clientY - r.top;
  tip.style.left = Math.min(x + 14, r.width - tip.offsetWidth - 4) + "px";
  tip.style.top = Math.max(0, y - tip.offsetHeight - 8) + "px";
}

const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

/** Drag-to-zoom on a canvas: calls done(x0, x1, y0, y1) in CSS pixels; double click resets. */
function dragZoom(canvas, redraw, done, reset) {
  let start = null;
  canvas.addEventListener("pointerdown", (e) => { start = [e.offsetX, e.offsetY]; canvas.setPointerCapture(e.pointerId); });
  canvas.addEventListener("pointermove", (e) => {
    if (!start) return;
    redraw();
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "rgba(31,95,168,0.15)";
    ctx.fillRect(Math.min(start[0], e.offsetX), Math.min(start[1], e.offsetY), Math.abs(e.offsetX - start[0]), Math.abs(e.offsetY - start[1]));
  });
  canvas.addEventListener("pointerup", (e) => {
    if (!start) return;
    const s = start;
    start = null;
    if (Math.abs(e.offsetX - s[0]) > 4) done(Math.min(s[0], e.offsetX), Math.max(s[0], e.offsetX), Math.min(s[1], e.offsetY), Math.max(s[1], e.offsetY));
    else redraw();
  });
  canvas.addEventListener("dblclick", reset);
}

/** A fresh canvas in the container (listeners of an older plot go with the old one). */
function freshCanvas(container) {
  container.querySelector("canvas")?.remove();
  const canvas = document.createElement("canvas");
  container.prepend(canvas);
  return canvas;
}

/**
 * The large interactive 1D plot. `list`: series (first drawn as bars when alone, overlays as steps).
 * opts: {log, normalise, flow, width, height, xLabel, yLabel, xTickFmt, tipLabel(i, s)}.
 * Exposes `container.plot = {series, view, full}` and data-x-min/max attributes (for tests).
 */
export function plot1D(container, list, opts = {}) {
  container.classList.add("plot");
  const canvas = freshCanvas(container);
  const tip = tooltip(container);
  const width = opts.width || Math.max(320, (container.clientWidth || 812) - 12);
  const height = opts.height || 420;
  const flow = opts.flow && list.some((s) => s.underflow != null);
  const box = { left: 64 + (flow ? 26 : 0), right: width - 12 - (flow ? 26 : 0), top: 12, bottom: height - 36 };
  const data = list.map((s) => norm(s, opts.normalise));
  const full = [Math.min(...data.map((s) => s.edges[0])), Math.max(...data.map((s) => s.edges[s.edges.length - 1]))];
  let view = full.slice();
  const state = { series: data, full, get view() { return view; } };
  container.plot = state;

  function yr() {
    const vals = [];
    for (const s of data) {
      for (let i = 0; i < s.values.length; i++) if (s.edges[i + 1] > view[0] && s.edges[i] < view[1]) vals.push(s.values[i]);
      if (flow) { if (s.underflow != null) vals.push(s.underflow); if (s.overflow != null) vals.push(s.overflow); }
    }
    if (opts.points) {
      const f = vals.filter(Number.isFinite);
      if (f.length) {
        const a = Math.min(...f), b = Math.max(...f), pad = (b - a) * 0.1 || Math.abs(a) * 0.1 || 1;
        return [a - pad, b + pad];
      }
    }
    return yRange(vals.length ? vals : [0], opts.log);
  }
  function draw() {
    const ctx = fit(canvas, width, height);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, width, height);
    const yv = yr();
    const X = (x) => box.left + ((x - view[0]) / (view[1] - view[0])) * (box.right - box.left);
    const Y = scaleY(yv[0], yv[1], opts.log, box.top, box.bottom);
    const base = opts.log ? box.bottom : Y(0);
    ctx.save();
    ctx.beginPath();
    ctx.rect(box.left, box.top, box.right - box.left, box.bottom - box.top);
    ctx.clip();
    data.forEach((s, k) => {
      const color = s.color || COLORS[k % COLORS.length];
      if (opts.points) {
        ctx.fillStyle = color;
        for (let i = 0; i < s.values.length; i++) {
          if (!Number.isFinite(s.values[i])) continue;
          const x = X((s.edges[i] + s.edges[i + 1]) / 2), y = Y(s.values[i]);
          ctx.fillRect(x - 2.5, y - 2.5, 5, 5);
        }
      } else if (data.length === 1) {
        ctx.fillStyle = color + "cc";
        for (let i = 0; i < s.values.length; i++) {
          if (!Number.isFinite(s.values[i])) continue;
          const a = X(s.edges[i]), b = X(s.edges[i + 1]), y = Y(s.values[i]);
          ctx.fillRect(a, Math.min(y, base), Math.max(b - a - (b - a > 4 ? 1 : 0), 0.5), Math.abs(base - y));
        }
      } else {
        ctx.strokeStyle = color;
        ctx.lineWidth = 1.5;
        ctx.beginPath();
        ctx.moveTo(X(s.edges[0]), base);
        for (let i = 0; i < s.values.length; i++) {
          const y = Math.min(Y(s.values[i]), box.bottom + 1);
          ctx.lineTo(X(s.edges[i]), y);
          ctx.lineTo(X(s.edges[i + 1]), y);
        }
        ctx.lineTo(X(s.edges[s.edges.length - 1]), base);
        ctx.stroke();
      }
    });
    ctx.restore();
    if (flow) {
      ctx.font = "10px system-ui, sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      data.forEach((s, k) => {
        const color = s.color || COLORS[k % COLORS.length];
        const w = 18 / data.length;
        for (const [v, x] of [[s.underflow, box.left - 24 + k * w], [s.overflow, box.right + 6 + k * w]]) {
          if (v == null) continue;
          const y = Math.max(Y(v), box.top);
          ctx.fillStyle = color + "99";
          ctx.fillRect(x, Math.min(y, base), w, Math.abs(base - y));
        }
      });
      ctx.fillStyle = "#666";
      ctx.fillText("UF", box.left - 15, box.bottom + 22);
      ctx.fillText("OF", box.right + 15, box.bottom + 22);
      ctx.strokeStyle = "#bbb";
      ctx.strokeRect(box.left - 24.5, box.top + 0.5, 18, box.bottom - box.top);
      ctx.strokeRect(box.right + 6.5, box.top + 0.5, 18, box.bottom - box.top);
    }
    axes(ctx, box, view, yv, opts.log, opts.xTickFmt, opts.xInt);
    if (data.length > 1) legend(ctx, data, box);
    container.dataset.xMin = view[0];
    container.dataset.xMax = view[1];
  }
  function binAt(s, x) {
    let lo = 0, hi = s.edges.length - 1;
    if (x < s.edges[0] || x >= s.edges[hi]) return -1;
    while (hi - lo > 1) { const m = (lo + hi) >> 1; if (s.edges[m] <= x) lo = m; else hi = m; }
    return lo;
  }
  canvas.onmousemove = (e) => {
    const px = e.offsetX;
    let html = "";
    if (flow && px < box.left && px > box.left - 26) html = data.map((s) => `${esc(s.label)}: underflow <b>${s.underflow}</b>`).join("<br>");
    else if (flow && px > box.right && px < box.right + 26) html = data.map((s) => `${esc(s.label)}: overflow <b>${s.overflow}</b>`).join("<br>");
    else if (px >= box.left && px <= box.right) {
      const x = view[0] + ((px - box.left) / (box.right - box.left)) * (view[1] - view[0]);
      const s0 = data[0];
      const i = binAt(s0, x);
      if (i >= 0) {
        const head = opts.tipLabel ? opts.tipLabel(i, s0) : `bin ${i + 1}: [${s0.edges[i]}, ${s0.edges[i + 1]})`;
        html = `${head}<br>` + data.map((s) => { const j = binAt(s, x); return `${data.length > 1 ? esc(s.label) + ": " : "content "}<b>${j >= 0 ? s.values[j] : "–"}</b>`; }).join("<br>");
      }
    }
    if (html) showTip(tip, canvas, e, html); else tip.hidden = true;
  };
  canvas.onmouseleave = () => { tip.hidden = true; };
  dragZoom(canvas, draw, (a, b) => {
    const f = (p) => view[0] + ((Math.max(box.left, Math.min(box.right, p)) - box.left) / (box.right - box.left)) * (view[1] - view[0]);
    if (f(b) > f(a)) { view = [f(a), f(b)]; draw(); }
  }, () => { view = full.slice(); draw(); });
  state.reset = () => { view = full.slice(); draw(); };
  state.zoom = (a, b) => { view = [a, b]; draw(); };
  draw();
  return state;
}

function legend(ctx, data, box) {
  ctx.font = "11px system-ui, sans-serif";
  const w = Math.max(...data.map((s) => ctx.measureText(s.label).width)) + 30;
  const x = box.right - w - 6, y = box.top + 6;
  ctx.fillStyle = "rgba(255,255,255,0.9)";
  ctx.fillRect(x, y, w, data.length * 16 + 6);
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  data.forEach((s, k) => {
    ctx.fillStyle = s.color || COLORS[k % COLORS.length];
    ctx.fillRect(x + 6, y + 9 + k * 16, 14, 3);
    ctx.fillStyle = "#222";
    ctx.fillText(s.label, x + 24, y + 11 + k * 16);
  });
}

/**
 * The large interactive 2D plot: {data[y][x], xe, ye} heatmap with a colour bar.
 * opts: {log, width, height, yTickFmt, tipLabel(i, j)}.
 */
export function plot2D(container, h, opts = {}) {
  container.classList.add("plot");
  const canvas = freshCanvas(container);
  const tip = tooltip(container);
  const width = opts.width || Math.max(320, (container.clientWidth || 812) - 12);
  const height = opts.height || 480;
  const xe = h.xe || edges(h.x_min, h.x_max, h.x_bin, h.x_edges);
  const ye = h.ye || edges(h.y_min, h.y_max, h.y_bin, h.y_edges);
  const box = { left: 70, right: width - 80, top: 12, bottom: height - 36 };
  const full = { x: [xe[0], xe[xe.length - 1]], y: [ye[0], ye[ye.length - 1]] };
  let view = { x: full.x.slice(), y: full.y.slice() };
  const state = { full, get view() { return view; }, xe, ye, data: h.data };
  container.plot = state;
  function draw() {
    const ctx = fit(canvas, width, height);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, width, height);
    const range = colorRange(h.data, opts.log);
    heat(ctx, h.data, xe, ye, view, box, opts.log, range);
    axes(ctx, box, view.x, view.y, false, opts.xTickFmt);
    if (opts.yTickFmt) { /* y ticks are already numbers; custom labels not needed */ }
    // Colour bar.
    const cb = { left: box.right + 14, right: box.right + 28, top: box.top, bottom: box.bottom };
    for (let k = 0; k < 256; k++) {
      const c = LUT[k];
      ctx.fillStyle = `rgb(${c[0]},${c[1]},${c[2]})`;
      const y0 = cb.bottom - ((k + 1) / 256) * (cb.bottom - cb.top);
      ctx.fillRect(cb.left, y0, cb.right - cb.left, (cb.bottom - cb.top) / 256 + 0.5);
    }
    ctx.strokeStyle = "#333";
    ctx.strokeRect(cb.left + 0.5, cb.top + 0.5, cb.right - cb.left, cb.bottom - cb.top);
    ctx.fillStyle = "#222";
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    const Y = scaleY(range[0], range[1], opts.log, cb.top, cb.bottom);
    for (const t of opts.log ? logTicks(range[0], range[1]) : ticks(range[0], range[1], 5)) ctx.fillText(fmt(t), cb.right + 4, Y(t));
    container.dataset.xMin = view.x[0];
    container.dataset.xMax = view.x[1];
    container.dataset.yMin = view.y[0];
    container.dataset.yMax = view.y[1];
  }
  const find = (e, v) => {
    let lo = 0, hi = e.length - 1;
    if (v < e[0] || v >= e[hi]) return -1;
    while (hi - lo > 1) { const m = (lo + hi) >> 1; if (e[m] <= v) lo = m; else hi = m; }
    return lo;
  };
  const toX = (px) => view.x[0] + ((px - box.left) / (box.right - box.left)) * (view.x[1] - view.x[0]);
  const toY = (py) => view.y[0] + ((box.bottom - py) / (box.bottom - box.top)) * (view.y[1] - view.y[0]);
  canvas.onmousemove = (e) => {
    const i = find(xe, toX(e.offsetX)), j = find(ye, toY(e.offsetY));
    if (e.offsetX < box.left || e.offsetX > box.right || i < 0 || j < 0) { tip.hidden = true; return; }
    const head = opts.tipLabel ? opts.tipLabel(i, j) : `x bin ${i + 1}: [${xe[i]}, ${xe[i + 1]})<br>y bin ${j + 1}: [${ye[j]}, ${ye[j + 1]})`;
    showTip(tip, canvas, e, `${head}<br>content <b>${h.data[j][i]}</b>`);
  };
  canvas.onmouseleave = () => { tip.hidden = true; };
  dragZoom(canvas, draw, (a, b, c, d) => {
    const cl = (p, lo, hi) => Math.max(lo, Math.min(hi, p));
    const x0 = toX(cl(a, box.left, box.right)), x1 = toX(cl(b, box.left, box.right));
    let y0 = toY(cl(d, box.top, box.bottom)), y1 = toY(cl(c, box.top, box.bottom));
    if (Math.abs(d - c) < 5) { y0 = view.y[0]; y1 = view.y[1]; }
    if (x1 > x0 && y1 > y0) { view = { x: [x0, x1], y: [y0, y1] }; draw(); }
  }, () => { view = { x: full.x.slice(), y: full.y.slice() }; draw(); });
  state.reset = () => { view = { x: full.x.slice(), y: full.y.slice() }; draw(); };
  draw();
  return state;
}
