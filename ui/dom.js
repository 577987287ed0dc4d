// DOM helpers shared by the pages: elements, links that keep ?ws=, tables, forms, errors,
// and the lazily drawn thumbnail grid.

/** Creates an element: h("a", {href: "/"}, "text", child, ...). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

let ws = "";
let go = () => {};
/** The workspace in the URL (kept on every link). */
export function setWs(w) { ws = w || ""; }
export function getWs() { return ws; }
/** Installs the router's navigate function. */
export function setNavigate(fn) { go = fn; }
/** Goes to a path inside the app (history entry, no reload). */
export function navigate(url, replace) { go(url, replace); }

/** `path?params&ws=` (empty values dropped). */
export function href(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  if (ws) q.set("ws", ws);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/** An in-app link. */
export function link(path, params, ...children) {
  return h("a", { href: href(path, params) }, ...children);
}

/** The message of a failed page (API down, unknown run, bad filter...). */
export function errorBox(e) {
  const status = e.status ? ` (HTTP ${e.status})` : "";
  return h("div", { class: "error", role: "alert" }, h("strong", {}, e.status === 404 ? "Not found" : e.status === 0 ? "API unreachable" : "Error"), status, ": ", e.message || String(e));
}

/** A note (empty results and the like). */
export function note(text) {
  return h("p", { class: "note" }, text);
}

/** A table from column specs {label, get(row) -> text|Node, class}. */
export function table(columns, rows, attrs) {
  return h("table", { class: "grid", ...attrs },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.class }, c.label)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, columns.map((c) => h("td", { class: c.class }, c.get(r)))))));
}

/**
 * A filter form whose fields are URL (and API) parameters. fields: {name, label, type, options, placeholder}.
 * Submitting navigates to `path` with the non-empty values.
 */
export function filterForm(path, fields, params) {
  const inputs = fields.map((f) => {
    const value = params.get(f.name) || "";
    const input = f.options
      ? h("select", { name: f.name }, h("option", { value: "" }, f.any || "any"), f.options.map(([v, t]) => h("option", { value: v, selected: String(v) === value }, t)))
      : h("input", { name: f.name, type: f.type || "text", value, placeholder: f.placeholder || "", step: f.type === "number" ? "any" : null, size: f.size || null });
    return h("label", { class: "field" + (f.wide ? " wide" : "") }, h("span", {}, f.label), input);
  });
  const form = h("form", { class: "filters" }, inputs,
    h("div", { class: "buttons" }, h("button", { type: "submit" }, "Search"), link(path, {}, "Clear")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const out = {};
    for (const f of fields) {
      const v = form.elements[f.name].value.trim();
      if (v) out[f.name] = v;
    }
    navigate(href(path, out));
  });
  return form;
}

/** Human file size. */
export function size(n) {
  if (n == null) return "";
  const u = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

/** The last path component of an ME and its folder. */
export function meName(me) {
  const i = me.lastIndexOf("/");
  return [me.slice(i + 1), me.slice(0, i)];
}

/**
 * A grid of thumbnail cards for many histograms. Only cards near the viewport hold a canvas:
 * it is created and drawn when a card comes into view and dropped when it leaves (memory stays
 * flat with thousands of cards; scrolling stays smooth).
 * items: [{title, sub, href, draw(canvas)}].
 */
export function thumbGrid(items, { onDrawn } = {}) {
  const grid = h("div", { class: "thumbs" });
  let drawn = 0;
  const io = new IntersectionObserver((entries) => {
    for (const en of entries) {
      const card = en.target;
      const item = items[card.dataset.i];
      const slot = card.querySelector(".slot");
      if (en.isIntersecting && !slot.firstChild) {
        const c = document.createElement("canvas");
        slot.append(c);
        item.draw(c);
        if (!card.dataset.drawn) { card.dataset.drawn = "1"; drawn++; onDrawn?.(drawn, items.length); }
      } else if (!en.isIntersecting && slot.firstChild) {
        slot.replaceChildren();
      }
    }
  }, { rootMargin: "400px 0px" });
  items.forEach((it, i) => {
    const card = h("a", { class: "card", href: it.href, title: it.tooltip || it.title, dataset: { i, me: it.me || "" } },
      h("div", { class: "slot" }), h("div", { class: "ttl" }, it.title), it.sub ? h("div", { class: "sub" }, it.sub) : null);
    grid.append(card);
    io.observe(card);
  });
  grid.observer = io;
  return grid;
}

/** "1,3,5-7" → [1,3,5,6,7]. */
export function parseList(s) {
  const out = [];
  for (const part of (s || "").split(/[ ,]+/).filter(Boolean)) {
    const m = part.match(/^(\d+)-(\d+)$/);
    if (m) for (let i = +m[1]; i <= +m[2] && out.length < 1000; i++) out.push(i);
    else if (/^\d+$/.test(part)) out.push(+part);
  }
  return out;
}
