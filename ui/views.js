// Detail pages: run, lumisection (all thumbnails), histogram (large plot, overlays), the run
// view of one ME (lumisection × bin heatmap, entries trend) and the DQM-GUI-like browser.
import * as api from "./api.js";
import { h, link, href, note, table, navigate, thumbGrid, meName, parseList } from "./dom.js";
import { plot1D, plot2D, series1D, thumb1D, thumb2D, edges, stats, fmt, COLORS } from "./plot.js";
import { histPath, datasets } from "./pages.js";

/** The API's 404 in words a shifter understands. */
async function orNotFound(promise, what) {
  try {
    return await promise;
  } catch (e) {
    if (e.status === 404) e.message = `${what} is not in workspace ${new URLSearchParams(location.search).get("ws") || "(default)"}. ${e.message}`;
    throw e;
  }
}

const lumisOf = (ds, run) => api.all("lumisection/", { dataset_id: ds, run_number: run });

/** Histogram rows of a filter: one Arrow request (`?fmt=json` in the page URL: JSON pages of 500). */
function rowsOf(dim, filters) {
  return new URLSearchParams(location.search).get("fmt") === "json" ? api.all(`th${dim}/`, filters) : api.bulk(`th${dim}/`, filters);
}

function crumbs(...parts) {
  return h("nav", { class: "crumbs" }, parts.filter(Boolean).map((p, i) => [i ? " › " : "", p]));
}

async function datasetName(ds) {
  const d = (await datasets()).find((x) => String(x.dataset_id) === String(ds));
  return d ? d.dataset : `dataset ${ds}`;
}

export async function run(main, [ds, runNo], ctx) {
  const [r, lumis, mes] = await Promise.all([
    orNotFound(api.get(`run/${ds}/${runNo}/`), `Run ${runNo} of dataset id ${ds}`),
    lumisOf(ds, runNo),
    api.get(`mes/${ds}/${runNo}/`).catch(() => []),
  ]);
  if (!ctx.alive()) return;
  main.append(crumbs(link("/runs", {}, "Runs"), link("/runs", { dataset: r.dataset }, r.dataset), `Run ${runNo}`),
    h("h1", {}, `Run ${runNo}`),
    h("p", { class: "muted" }, r.dataset, ` · ${r.ls_count} lumisections · `,
      h("a", { href: `https://cmsoms.cern.ch/cms/runs/report?cms_run=${runNo}`, target: "_blank", rel: "noopener" }, "OMS run report"), " · ",
      link("/browser", { dataset_id: ds, run: runNo }, "browse MEs")));
  // The run view of one ME: pick it here.
  if (mes.length) {
    mes.sort((a, b) => (a.me < b.me ? -1 : 1));
    const sel = h("select", { name: "me" }, mes.map((m) => h("option", { value: m.me_id }, `${m.me} (${m.dim}D)`)));
    const form = h("form", { class: "filters" }, h("label", { class: "field wide" }, h("span", {}, "Run view of an ME (lumisection × bin, entries per LS)"), sel),
      h("div", { class: "buttons" }, h("button", { type: "submit" }, "Show")));
    form.addEventListener("submit", (e) => { e.preventDefault(); navigate(href(`/runs/${ds}/${runNo}/me/${sel.value}`)); });
    main.append(form);
  }
  main.append(h("h2", {}, "Lumisections"), lumis.length ? table([
    { label: "LS", get: (l) => link(`/lumisections/${ds}/${runNo}/${l.ls_number}`, {}, l.ls_number), class: "num" },
    { label: "TH1", get: (l) => l.th1_count, class: "num" },
    { label: "TH2", get: (l) => l.th2_count, class: "num" },
  ], lumis, { "data-resource": "lumisection/", class: "grid narrow" }) : note("No lumisections."));
}

/** Previous/next lumisection links for a path builder. */
function neighbours(lumis, ls, to) {
  const list = lumis.map((l) => l.ls_number);
  const i = list.indexOf(+ls);
  const prev = i > 0 ? list[i - 1] : null, next = i >= 0 && i < list.length - 1 ? list[i + 1] : null;
  return h("span", { class: "prevnext" },
    prev != null ? link(to(prev), {}, `← LS ${prev}`) : h("span", { class: "muted" }, "← first"), " ",
    next != null ? link(to(next), {}, `LS ${next} →`) : h("span", { class: "muted" }, "last →"));
}

export async function lumisection(main, [ds, runNo, ls], ctx) {
  const t0 = performance.now();
  const filters = { dataset_id: ds, run_number: runNo, ls_number: ls };
  // The run's lumisection list says whether this one exists and gives its neighbours; the rows of
  // both tables come in one bulk request each, in parallel.
  const rows = Promise.all([rowsOf(1, filters), rowsOf(2, filters)]);
  rows.catch(() => {});
  const lumis = await lumisOf(ds, runNo);
  const l = lumis.find((x) => x.ls_number === +ls);
  if (!l) throw new api.ApiError(404, `Lumisection ${ls} of run ${runNo} (dataset id ${ds}) is not in workspace ${ctx.params.get("ws") || "(default)"}.`);
  const [th1, th2] = await rows;
  if (!ctx.alive()) return;
  const tData = performance.now();
  const byName = (a, b) => (a.me < b.me ? -1 : a.me > b.me ? 1 : a.file_id - b.file_id);
  th1.sort(byName);
  th2.sort(byName);
  const to = (n) => `/lumisections/${ds}/${runNo}/${n}`;
  main.append(crumbs(link("/runs", {}, "Runs"), link(`/runs/${ds}/${runNo}`, {}, `Run ${runNo}`), `LS ${ls}`),
    h("h1", {}, `Run ${runNo}, lumisection ${ls}`, " ", neighbours(lumis, ls, to)),
    h("p", { class: "muted" }, l.dataset, ` · ${l.th1_count} TH1 · ${l.th2_count} TH2`));
  const q = ctx.params.get("q") || "";
  const input = h("input", { type: "search", placeholder: "filter MEs (regex)", value: q, size: 40 });
  const count = h("span", { class: "muted" });
  const body = h("div");
  main.append(h("div", { class: "toolbar" }, input, count), body);
  const timing = { data_ms: Math.round(tData - t0) };
  const draw = () => {
    let re;
    try { re = new RegExp(input.value, "i"); } catch (_) { re = null; }
    const keep = (r) => !re || re.test(r.me);
    const card = (d) => (r) => {
      const [name, folder] = meName(r.me);
      return { title: name, tooltip: r.me, me: r.me, sub: `${folder} · ${r.entries} entries`, href: href(histPath(d, r)), draw: (c) => (d === 1 ? thumb1D : thumb2D)(c, r) };
    };
    const one = th1.filter(keep).map(card(1)), two = th2.filter(keep).map(card(2));
    count.textContent = ` ${one.length} of ${th1.length} 1D, ${two.length} of ${th2.length} 2D`;
    body.querySelectorAll(".thumbs").forEach((g) => g.observer.disconnect());
    const onDrawn = (n) => {
      if (n === 1 && !timing.first_thumb_ms) {
        timing.first_thumb_ms = Math.round(performance.now() - t0);
        timing.since_navigation_ms = Math.round(performance.now());
        requestAnimationFrame(() => { timing.page_ms = Math.round(performance.now() - t0); main.dataset.timing = JSON.stringify(timing); });
      }
    };
    body.replaceChildren(
      h("h2", {}, `1D (${one.length})`), one.length ? thumbGrid(one, { onDrawn }) : note("No 1D histograms."),
      h("h2", {}, `2D (${two.length})`), two.length ? thumbGrid(two, { onDrawn }) : note("No 2D histograms."));
  };
  input.addEventListener("input", () => { history.replaceState(null, "", href(location.pathname, { q: input.value })); draw(); });
  draw();
}

/** "380310:2" → {run, ls}; "380310:*" → the whole run (bins summed over its lumisections). */
function parseCmp(s) {
  return (s || "").split(",").map((x) => x.trim()).filter(Boolean).map((x) => {
    const [run, ls] = x.split(":");
    return { run: +run, ls: ls === "*" ? "*" : +ls, key: x };
  }).filter((c) => c.run > 0 && (c.ls === "*" || c.ls >= 0));
}

/** One ME summed over a run's lumisections (one file per lumisection). */
async function runTotal(dim, ds, run, me) {
  const rows = await rowsOf(dim, { dataset_id: ds, run_number: run, me_id: me });
  const seen = new Set();
  let sum = null;
  for (const r of rows) {
    if (seen.has(r.ls_number)) continue;
    seen.add(r.ls_number);
    if (!sum) sum = { ...r, data: Array.from(r.data), underflow: r.underflow ?? null, overflow: r.overflow ?? null, entries: 0 };
    else {
      r.data.forEach((v, i) => { sum.data[i] += v; });
      if (sum.underflow != null) { sum.underflow += r.underflow; sum.overflow += r.overflow; }
    }
    sum.entries += r.entries;
  }
  if (!sum) throw Object.assign(new Error(`Run ${run} has no such ME`), { status: 404 });
  return sum;
}

export async function histogram(main, [dim, ds, runNo, ls, me], ctx) {
  const d = +dim;
  const p = ctx.params;
  const [hist, lumis] = await Promise.all([
    orNotFound(api.get(`th${d}/${ds}/${runNo}/${ls}/${me}/`), `Histogram ${me} in run ${runNo}, LS ${ls} (dataset id ${ds})`),
    lumisOf(ds, runNo),
  ]);
  if (!ctx.alive()) return;
  const to = (n) => `/histograms-${d}d/${ds}/${runNo}/${n}/${me}`;
  main.append(crumbs(link("/runs", {}, "Runs"), link(`/runs/${ds}/${runNo}`, {}, `Run ${runNo}`), link(`/lumisections/${ds}/${runNo}/${ls}`, {}, `LS ${ls}`), meName(hist.me)[0]),
    h("h1", { class: "me" }, `${hist.me} – ${hist.entries} entries`),
    h("p", { class: "muted" }, hist.dataset, ` · run ${runNo} · LS ${ls} · file ${hist.file_id} · `, neighbours(lumis, ls, to), " · ",
      link(`/runs/${ds}/${runNo}/me/${me}`, {}, "run view of this ME")));
  const opt = (name, def) => (p.has(name) ? p.get(name) === "1" : def);
  const state = { log: opt("log", false), flow: opt("flow", true), norm: opt("norm", false), cmp: p.get("cmp") || "" };
  const setUrl = () => history.replaceState(null, "", href(location.pathname, { log: state.log ? 1 : null, flow: state.flow ? null : 0, norm: state.norm ? 1 : null, cmp: state.cmp || null }));
  const box = h("div", { class: "plotbox", id: "plot" });
  const check = (key, label) => h("label", { class: "check" }, h("input", { type: "checkbox", name: key, checked: state[key], onchange: (e) => { state[key] = e.target.checked; setUrl(); draw(); } }), label);
  const tools = h("div", { class: "toolbar" }, check("log", d === 1 ? "log y" : "log colour"),
    d === 1 ? check("flow", "under/overflow") : null, d === 1 ? check("norm", "normalise") : null,
    h("button", { onclick: () => box.plot?.reset() }, "Reset zoom"), h("span", { class: "muted" }, "drag to zoom, double-click to reset"));
  if (d === 1) {
    const st = stats(series1D(hist));
    main.append(h("p", { class: "stats-line", id: "stats" }, `integral ${fmt(st.integral)} · mean ${fmt(st.mean)} · RMS ${fmt(st.rms)} · underflow ${hist.underflow ?? "–"} · overflow ${hist.overflow ?? "–"}${hist.x_edges ? " · variable bin widths" : ""}`));
  }
  main.append(tools, box);
  let overlays = [];
  const msg = h("div");
  const draw = () => {
    if (d === 2) { plot2D(box, hist, { log: state.log }); return; }
    const list = [series1D(hist, `run ${runNo} LS ${ls}`, COLORS[0]), ...overlays.map((o, k) => series1D(o.h, o.label, COLORS[(k + 1) % COLORS.length]))];
    plot1D(box, list, { log: state.log, flow: state.flow, normalise: state.norm });
  };
  draw();
  window.addEventListener("resize", () => { if (ctx.alive()) draw(); }, { once: true });
  if (d === 1) {
    // Overlay: same ME, other lumisections or whole runs.
    const input = h("input", { name: "cmp", value: state.cmp, placeholder: "e.g. 380310:2, 380311:1, 380311:*", size: 40 });
    const apply = async () => {
      state.cmp = input.value.trim();
      setUrl();
      msg.replaceChildren();
      const specs = parseCmp(state.cmp).slice(0, COLORS.length - 1);
      const got = await Promise.all(specs.map(async (c) => {
        try {
          const o = c.ls === "*" ? await runTotal(1, ds, c.run, me) : await api.get(`th1/${ds}/${c.run}/${c.ls}/${me}/`);
          return { h: o, label: c.ls === "*" ? `run ${c.run} (all LS)` : `run ${c.run} LS ${c.ls}` };
        } catch (e) {
          msg.append(h("div", { class: "error" }, `${c.key}: ${e.message}`));
          return null;
        }
      }));
      if (!ctx.alive()) return;
      overlays = got.filter(Boolean);
      draw();
    };
    const near = () => {
      const list = lumis.map((l) => l.ls_number).filter((n) => n !== +ls);
      input.value = list.filter((n) => Math.abs(n - ls) <= 3).slice(0, 6).map((n) => `${runNo}:${n}`).join(", ");
      apply();
    };
    const form = h("form", { class: "filters" }, h("label", { class: "field wide" }, h("span", {}, "Overlay (run:LS or run:* for the whole run, comma-separated)"), input),
      h("div", { class: "buttons" }, h("button", { type: "submit" }, "Overlay"), h("button", { type: "button", onclick: near }, "± 3 LS"), h("button", { type: "button", onclick: () => { input.value = ""; apply(); } }, "Clear")));
    form.addEventListener("submit", (e) => { e.preventDefault(); apply(); });
    main.append(form, msg);
    if (state.cmp) await apply();
    const s = series1D(hist);
    main.append(h("details", { class: "bins" }, h("summary", {}, `Bin contents (${s.values.length} bins)`),
      table([{ label: "Bin", get: (r) => r.i, class: "num" }, { label: "Low edge", get: (r) => r.lo, class: "num" }, { label: "High edge", get: (r) => r.hi, class: "num" }, { label: "Content", get: (r) => r.v, class: "num" }],
        [{ i: "underflow", lo: "", hi: s.edges[0], v: hist.underflow ?? "" }, ...s.values.map((v, i) => ({ i: i + 1, lo: s.edges[i], hi: s.edges[i + 1], v })), { i: "overflow", lo: s.edges[s.edges.length - 1], hi: "", v: hist.overflow ?? "" }], { id: "bins" })));
  }
}

/** How one ME evolves across a run: lumisection × bin heatmap and per-LS entries. */
export async function runView(main, [ds, runNo, me], ctx) {
  const m = await orNotFound(api.get(`mes/${me}/`), `ME ${me}`);
  const rows = await rowsOf(m.dim, { dataset_id: ds, run_number: runNo, me_id: me });
  if (!ctx.alive()) return;
  main.append(crumbs(link("/runs", {}, "Runs"), link(`/runs/${ds}/${runNo}`, {}, `Run ${runNo}`), `${meName(m.me)[0]} across the run`),
    h("h1", { class: "me" }, `${m.me} — run ${runNo}`));
  if (!rows.length) { main.append(note(`Run ${runNo} has no lumisection of this ME in this workspace.`)); return; }
  const byLs = new Map();
  for (const r of rows) if (!byLs.has(r.ls_number)) byLs.set(r.ls_number, r);
  const lsList = [...byLs.keys()].sort((a, b) => a - b);
  const lo = lsList[0], hi = lsList[lsList.length - 1];
  const n = Math.min(hi - lo + 1, 10000);
  const first = byLs.get(lo);
  const p = ctx.params;
  const state = { log: p.get("log") === "1", norm: p.get("norm") === "1" };
  const goLs = (l) => navigate(href(histPath(m.dim, { ...first, ls_number: l })));
  main.append(h("p", { class: "muted" }, `${byLs.size} lumisections (${lo}–${hi}). `, m.dim === 1 ? "Each row of the heatmap is one lumisection's histogram; click a row to open it." : "2D ME: entries per lumisection and the run total."));
  const heatBox = h("div", { class: "plotbox", id: "heat" });
  const trendBox = h("div", { class: "plotbox", id: "trend" });
  const check = (key, label) => h("label", { class: "check" }, h("input", { type: "checkbox", checked: state[key], onchange: (e) => { state[key] = e.target.checked; history.replaceState(null, "", href(location.pathname, { log: state.log ? 1 : null, norm: state.norm ? 1 : null })); draw(); } }), label);
  const meanBox = h("div", { class: "plotbox", id: "mean" });
  main.append(h("div", { class: "toolbar" }, check("log", "log colour"), m.dim === 1 ? check("norm", "normalise each lumisection") : null), heatBox, h("h2", {}, "Entries per lumisection"), trendBox);
  if (m.dim === 1) main.append(h("h2", {}, "Mean per lumisection"), meanBox);
  const trend = { label: "entries", edges: edges(lo - 0.5, hi + 0.5, n), values: Array.from({ length: n }, (_, k) => byLs.get(lo + k)?.entries ?? 0), underflow: null, overflow: null };
  const draw = () => {
    if (m.dim === 1) {
      const data = Array.from({ length: n }, (_, k) => {
        const r = byLs.get(lo + k);
        if (!r) return new Array(first.x_bin).fill(0);
        const row = Array.from(r.data);
        if (state.norm) { const s = row.reduce((a, v) => a + v, 0) || 1; return row.map((v) => v / s); }
        return row;
      });
      plot2D(heatBox, { data, xe: edges(first.x_min, first.x_max, first.x_bin, first.x_edges), ye: edges(lo - 0.5, hi + 0.5, n) }, {
        log: state.log, height: Math.min(700, 200 + 4 * n),
        tipLabel: (i, j) => `LS ${lo + j} · bin ${i + 1}: [${heatBox.plot.xe[i]}, ${heatBox.plot.xe[i + 1]})`,
      });
      heatBox.querySelector("canvas").addEventListener("click", (e) => {
        if (e.detail !== 1) return;
        const pl = heatBox.plot, c = e.target, bottom = c.clientHeight - 36, top = 12;
        const y = pl.view.y[0] + ((bottom - e.offsetY) / (bottom - top)) * (pl.view.y[1] - pl.view.y[0]);
        const l = Math.round(y);
        if (byLs.has(l) && e.offsetX > 70 && e.offsetX < c.clientWidth - 80) goLs(l);
      });
    } else {
      const sum = first.data.map((row) => Array.from(row).fill(0));
      for (const r of byLs.values()) r.data.forEach((row, j) => row.forEach((v, i) => { sum[j][i] += v; }));
      plot2D(heatBox, { ...first, data: sum }, { log: state.log });
    }
    plot1D(trendBox, [trend], { height: 260, xInt: true, tipLabel: (i) => `LS ${lo + i}` });
    if (m.dim === 1) {
      const means = Array.from({ length: n }, (_, k) => { const r = byLs.get(lo + k); return r ? stats(series1D(r)).mean : NaN; });
      plot1D(meanBox, [{ label: "mean", edges: trend.edges, values: means, underflow: null, overflow: null }], { height: 220, points: true, xInt: true, tipLabel: (i) => `LS ${lo + i}` });
    }
  };
  draw();
}

function escapeRe(s) { return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"); }

/** The DQM-GUI-like browser: dataset → run → lumisection, then ME folders and plots. */
export async function browser(main, _m, ctx) {
  const p = ctx.params;
  main.append(h("h1", {}, "Browser"));
  const ds = await datasets();
  if (!ds.length) { main.append(note("No datasets in this workspace yet.")); return; }
  const dsId = p.get("dataset_id") || String(ds[0].dataset_id);
  const runs = await api.all("run/", { dataset_id: dsId });
  if (!ctx.alive()) return;
  if (!runs.length) { main.append(note("This dataset has no runs in this workspace.")); return; }
  const runNo = p.get("run") || String(runs[runs.length - 1].run_number);
  const lumis = await lumisOf(dsId, runNo);
  if (!ctx.alive()) return;
  const ls = p.get("ls") || String(lumis.find((l) => l.th1_count + l.th2_count > 0)?.ls_number ?? lumis[0]?.ls_number ?? "");
  const path = (p.get("path") || "").replace(/^\/+|\/+$/g, "");
  const go = (chg) => navigate(href("/browser", { dataset_id: dsId, run: runNo, ls, path, ...chg }));
  const pick = (label, value, options, onchange) => h("label", { class: "field" + (label === "Dataset" ? " wide" : "") }, h("span", {}, label),
    h("select", { name: label.toLowerCase(), onchange: (e) => onchange(e.target.value) }, options.map(([v, t]) => h("option", { value: v, selected: String(v) === String(value) }, t))));
  main.append(h("div", { class: "filters" },
    pick("Dataset", dsId, ds.map((d) => [d.dataset_id, d.dataset]), (v) => go({ dataset_id: v, run: null, ls: null })),
    pick("Run", runNo, runs.map((r) => [r.run_number, `${r.run_number} (${r.ls_count} LS)`]), (v) => go({ run: v, ls: null })),
    pick("Lumisection", ls, lumis.map((l) => [l.ls_number, `${l.ls_number} (${l.th1_count + l.th2_count} MEs)`]), (v) => go({ ls: v })),
    h("div", { class: "buttons" }, neighbours(lumis, ls, (n) => "/browser?" + new URLSearchParams({ dataset_id: dsId, run: runNo, ls: n, path, ws: p.get("ws") || "" })))));
  const mes = await orNotFound(api.get(`mes/${dsId}/${runNo}/`), `Run ${runNo}`);
  if (!ctx.alive()) return;
  const prefix = path ? path + "/" : "";
  const folders = new Map();
  const leaves = [];
  for (const m of mes) {
    if (!m.me.startsWith(prefix)) continue;
    const rest = m.me.slice(prefix.length);
    const i = rest.indexOf("/");
    if (i < 0) leaves.push(m);
    else folders.set(rest.slice(0, i), (folders.get(rest.slice(0, i)) || 0) + 1);
  }
  const parts = path ? path.split("/") : [];
  main.append(h("nav", { class: "crumbs tree" }, link("/browser", { dataset_id: dsId, run: runNo, ls }, "(top)"),
    parts.map((part, i) => [" / ", link("/browser", { dataset_id: dsId, run: runNo, ls, path: parts.slice(0, i + 1).join("/") }, part)])));
  if (!folders.size && !leaves.length) { main.append(note(path ? `No ME under ${path} in this run.` : "No MEs in this run.")); return; }
  if (folders.size) {
    main.append(h("div", { class: "folders" }, [...folders.entries()].sort().map(([f, n]) =>
      link("/browser", { dataset_id: dsId, run: runNo, ls, path: prefix + f }, h("b", {}, f), h("span", {}, `${n} ME${n === 1 ? "" : "s"}`)))));
  }
  if (leaves.length && ls !== "") {
    const filt = { dataset_id: dsId, run_number: runNo, ls_number: ls, me__regex: `^${escapeRe(prefix)}[^/]+$` };
    const want = new Set(leaves.map((m) => m.me));
    const [t1, t2] = await Promise.all([leaves.some((m) => m.dim === 1) ? rowsOf(1, filt) : [], leaves.some((m) => m.dim === 2) ? rowsOf(2, filt) : []]);
    if (!ctx.alive()) return;
    const seen = new Set();
    const items = [];
    for (const [d, rows] of [[1, t1], [2, t2]]) for (const r of [...rows].sort((a, b) => (a.me < b.me ? -1 : 1))) {
      if (!want.has(r.me) || seen.has(r.me)) continue;
      seen.add(r.me);
      items.push({ title: meName(r.me)[0], tooltip: r.me, me: r.me, sub: `${r.entries} entries`, href: href(histPath(d, r)), draw: (c) => (d === 1 ? thumb1D : thumb2D)(c, r) });
    }
    const missing = leaves.filter((m) => !seen.has(m.me));
    if (items.length) main.append(thumbGrid(items));
    if (missing.length) main.append(note(`${missing.length} ME${missing.length === 1 ? "" : "s"} of this folder have no histogram in LS ${ls}: ${missing.map((m) => meName(m.me)[0]).join(", ")}`));
  }
}

export { parseList };
