// List pages (DIALS's Data Explorer), the overview, the home page and predictions.
import * as api from "./api.js";
import { h, link, href, note, errorBox, table, filterForm, size, navigate, thumbGrid } from "./dom.js";
import { thumb1D, thumb2D } from "./plot.js";

/** Datasets as select options [[name, name]] (cached per workspace). */
const datasetCache = new Map();
export async function datasets() {
  const key = (new URLSearchParams(location.search)).get("ws") || "";
  if (!datasetCache.has(key)) datasetCache.set(key, api.all("dataset-index/", {}));
  try {
    return await datasetCache.get(key);
  } catch (e) {
    datasetCache.delete(key);
    throw e;
  }
}

const datasetField = (ds) => ({ name: "dataset", label: "Dataset", options: ds.map((d) => [d.dataset, d.dataset]) });

/**
 * A DIALS list page: filters in the URL (same names as the API's), one page of rows with
 * Previous/Next by cursor, a count where the API has one.
 */
async function listPage(main, ctx, spec) {
  const p = ctx.params;
  main.append(h("h1", {}, spec.title), ...(spec.intro ? [spec.intro] : []), filterForm(location.pathname, spec.fields, p));
  const filters = {};
  for (const f of spec.fields) if (p.get(f.name)) filters[f.name] = p.get(f.name);
  const apiFilters = spec.toApi ? spec.toApi(filters) : filters;
  const size = +p.get("page_size") || spec.pageSize || 20;
  const box = h("div", { class: "results" }, h("p", { class: "muted" }, "Loading…"));
  main.append(box);
  const [r, n] = await Promise.all([
    api.page(spec.resource, { ...apiFilters, page_size: size }, p.get("next_token")),
    spec.count ? api.count(spec.resource, apiFilters).catch(() => null) : null,
  ]);
  if (!ctx.alive()) return;
  const pager = h("div", { class: "pager" },
    n != null ? h("span", { class: "count" }, `${n.toLocaleString()} ${spec.noun}${n === 1 ? "" : "s"}`) : null,
    r.previous ? h("a", { href: href(location.pathname, { ...filters, page_size: p.get("page_size"), next_token: api.tokenOf(r.previous) }) }, "← Previous") : null,
    r.next ? h("a", { href: href(location.pathname, { ...filters, page_size: p.get("page_size"), next_token: api.tokenOf(r.next) }) }, "Next →") : null);
  box.replaceChildren(pager, r.results.length ? table(spec.columns, r.results, { "data-resource": spec.resource }) : note(`No ${spec.noun}s match these filters in workspace ${(p.get("ws") || "default")}.`));
  spec.after?.(box, r.results);
}

const dsLink = (r) => r.dataset;

export async function home(main) {
  main.append(
    h("h1", {}, "DIALS — Data Inspector for Anomalous Lumi-Sections"),
    h("p", {}, "Per-lumisection DQM histograms of CMS, from DQMIO files to a Parquet lake. Click from a run to a lumisection to a plot; compare lumisections; see how a histogram evolves across a run."),
    h("div", { class: "tiles" },
      [["/runs", "Runs", "runs of each dataset, then their lumisections"], ["/browser", "Browser", "dataset → run → lumisection → ME folders, like the DQM GUI"],
        ["/histograms-1d", "Histograms 1D", "search TH1s by ME, run, lumisection, entries"], ["/histograms-2d", "Histograms 2D", "search TH2s"],
        ["/file-index", "Files", "ingested DQMIO files and their status"], ["/overview", "Overview", "counts and MEs per subsystem"]]
        .map(([p, t, d]) => link(p, {}, h("b", {}, t), h("span", {}, d)))),
    h("p", { class: "muted" }, "The same data over HTTP: ", h("a", { href: "/api/v1/openapi.json" }, "/api/v1/"), " (the cmsdials client works against it)."));
  const form = await gotoRun();
  main.append(form);
}

/** "Go to run": dataset + run number → the run page. */
async function gotoRun() {
  const ds = await datasets();
  const sel = h("select", { name: "ds" }, ds.map((d) => h("option", { value: d.dataset_id }, d.dataset)));
  const run = h("input", { name: "run", type: "number", placeholder: "run number", required: true });
  const form = h("form", { class: "filters goto" }, h("label", { class: "field wide" }, h("span", {}, "Dataset"), sel),
    h("label", { class: "field" }, h("span", {}, "Run"), run), h("div", { class: "buttons" }, h("button", { type: "submit" }, "Go to run")));
  form.addEventListener("submit", (e) => { e.preventDefault(); navigate(href(`/runs/${sel.value}/${run.value}`)); });
  return form;
}

const STATUSES = ["FINISHED", "STARTED", "PARSING_ERROR", "ROOTFILE_ERROR", "FILE_NOT_AVAILABLE"];

export async function overview(main, _m, ctx) {
  main.append(h("h1", {}, "Overview"));
  const [files, runs, lumis, byStatus, mes] = await Promise.all([
    api.count("file-index/"), api.count("run/"), api.count("lumisection/"),
    Promise.all(STATUSES.map((s) => api.count("file-index/", { status: s }))),
    api.get("mes/"),
  ]);
  if (!ctx.alive()) return;
  main.append(h("div", { class: "stats" },
    [["files", files, "/file-index"], ["runs", runs, "/runs"], ["lumisections", lumis, "/lumisections"], ["monitoring elements", mes.length, "/histograms-1d"]]
      .map(([t, n, p]) => link(p, {}, h("b", { "data-count": t }, n.toLocaleString()), h("span", {}, t)))));
  const statusRows = STATUSES.map((s, i) => [s, byStatus[i]]).filter(([, n]) => n > 0);
  main.append(h("section", {}, h("h2", {}, "Files by status"), statusRows.length ? bars(statusRows, (s) => href("/file-index", { status: s }), (s) => (s === "FINISHED" ? "ok" : s === "STARTED" ? "warn" : "bad")) : note("No files yet.")));
  const folders = new Map();
  for (const m of mes) {
    const top = m.me.split("/")[0];
    const f = folders.get(top) || { d1: 0, d2: 0 };
    if (m.dim === 2) f.d2++; else f.d1++;
    folders.set(top, f);
  }
  const rows = [...folders.entries()].sort((a, b) => b[1].d1 + b[1].d2 - a[1].d1 - a[1].d2);
  main.append(h("section", {}, h("h2", {}, "Monitoring elements by top-level folder"),
    rows.length ? h("div", { class: "two" },
      h("div", {}, h("h3", {}, "1D"), bars(rows.filter(([, f]) => f.d1).map(([k, f]) => [k, f.d1]), (k) => href("/histograms-1d", { me__regex: `^${k}/` }))),
      h("div", {}, h("h3", {}, "2D"), bars(rows.filter(([, f]) => f.d2).map(([k, f]) => [k, f.d2]), (k) => href("/histograms-2d", { me__regex: `^${k}/` }))))
      : note("No monitoring elements in this workspace yet.")));
}

/** A horizontal bar chart of [label, n] with links. */
function bars(rows, to, cls) {
  const max = Math.max(1, ...rows.map(([, n]) => n));
  return h("div", { class: "bars" }, rows.map(([k, n]) => h("a", { class: "bar", href: to(k), dataset: { label: k, n } },
    h("span", { class: "k" }, k), h("span", { class: "v" }, h("i", { class: cls ? cls(k) : null, style: `width:${(100 * n) / max}%` }), h("em", {}, n.toLocaleString())))));
}

export async function fileIndex(main, _m, ctx) {
  const ds = await datasets();
  await listPage(main, ctx, {
    title: "Indexed files", resource: "file-index/", noun: "file", count: true,
    fields: [
      { name: "logical_file_name", label: "Logical file name", wide: true },
      { name: "logical_file_name__regex", label: "LFN regex" },
      datasetField(ds),
      { name: "dataset__regex", label: "Dataset regex" },
      { name: "min_size_mb", label: "Min size (MB)", type: "number" },
      { name: "status", label: "Status", options: STATUSES.map((s) => [s, s]) },
    ],
    toApi: ({ min_size_mb, ...f }) => (min_size_mb ? { ...f, min_size: Math.round(+min_size_mb * 1e6) } : f),
    columns: [
      { label: "Dataset", get: dsLink },
      { label: "File id", get: (r) => r.file_id, class: "num" },
      { label: "Size", get: (r) => size(r.file_size), class: "num" },
      { label: "Modified", get: (r) => (r.last_modification_date || "").replace("T", " ").slice(0, 19) },
      { label: "Logical file name", get: (r) => h("span", { class: "lfn" }, r.logical_file_name) },
      { label: "Status", get: (r) => h("span", { class: "status " + (r.status === "FINISHED" ? "ok" : r.status === "STARTED" ? "warn" : "bad") }, r.status) },
      { label: "Error", get: (r) => (r.err_trace ? h("code", { class: "err" }, r.err_trace) : "") },
    ],
  });
}

const runFields = (ds) => [
  datasetField(ds),
  { name: "dataset__regex", label: "Dataset regex" },
  { name: "run_number", label: "Run", type: "number" },
  { name: "run_number__gte", label: "Run ≥", type: "number" },
  { name: "run_number__lte", label: "Run ≤", type: "number" },
];

export async function runs(main, _m, ctx) {
  const ds = await datasets();
  await listPage(main, ctx, {
    title: "Runs", resource: "run/", noun: "run", count: true, fields: runFields(ds), intro: await gotoRun(),
    columns: [
      { label: "Dataset", get: dsLink },
      { label: "Run", get: (r) => link(`/runs/${r.dataset_id}/${r.run_number}`, {}, r.run_number), class: "num" },
      { label: "Lumisections", get: (r) => r.ls_count, class: "num" },
    ],
  });
}

export async function lumisections(main, _m, ctx) {
  const ds = await datasets();
  await listPage(main, ctx, {
    title: "Lumisections", resource: "lumisection/", noun: "lumisection", count: true,
    fields: [...runFields(ds),
      { name: "ls_number", label: "LS", type: "number" },
      { name: "ls_number__gte", label: "LS ≥", type: "number" },
      { name: "ls_number__lte", label: "LS ≤", type: "number" }],
    columns: [
      { label: "Dataset", get: dsLink },
      { label: "Run", get: (r) => link(`/runs/${r.dataset_id}/${r.run_number}`, {}, r.run_number), class: "num" },
      { label: "LS", get: (r) => link(`/lumisections/${r.dataset_id}/${r.run_number}/${r.ls_number}`, {}, r.ls_number), class: "num" },
      { label: "TH1", get: (r) => r.th1_count, class: "num" },
      { label: "TH2", get: (r) => r.th2_count, class: "num" },
    ],
  });
}

/** Histograms 1D / 2D: DIALS's th1/th2 filters; each row with an inline thumbnail. */
export async function histograms(main, [dim], ctx) {
  const ds = await datasets();
  const d = +dim;
  await listPage(main, ctx, {
    title: `Histograms ${d}D`, resource: `th${d}/`, noun: "histogram", pageSize: 20,
    fields: [
      datasetField(ds),
      { name: "dataset__regex", label: "Dataset regex" },
      { name: "logical_file_name", label: "Logical file name" },
      { name: "logical_file_name__regex", label: "LFN regex" },
      { name: "run_number", label: "Run", type: "number" },
      { name: "run_number__gte", label: "Run ≥", type: "number" },
      { name: "run_number__lte", label: "Run ≤", type: "number" },
      { name: "ls_number", label: "LS", type: "number" },
      { name: "ls_number__gte", label: "LS ≥", type: "number" },
      { name: "ls_number__lte", label: "LS ≤", type: "number" },
      { name: "me", label: "ME", wide: true },
      { name: "me__regex", label: "ME regex" },
      { name: "entries__gte", label: "Min entries", type: "number" },
    ],
    columns: [
      { label: "Plot", get: (r) => { const c = h("canvas", { class: "mini" }); (d === 1 ? thumb1D : thumb2D)(c, r, 150, 64); return link(histPath(d, r), {}, c); } },
      { label: "Dataset", get: dsLink },
      { label: "Run", get: (r) => link(`/runs/${r.dataset_id}/${r.run_number}`, {}, r.run_number), class: "num" },
      { label: "LS", get: (r) => link(`/lumisections/${r.dataset_id}/${r.run_number}/${r.ls_number}`, {}, r.ls_number), class: "num" },
      { label: "ME", get: (r) => link(histPath(d, r), {}, r.me) },
      { label: "Entries", get: (r) => r.entries, class: "num" },
    ],
  });
}

export const histPath = (d, r) => `/histograms-${d}d/${r.dataset_id}/${r.run_number}/${r.ls_number}/${r.me_id}`;

/** Predictions: shown when the ML endpoints exist (the ML issue adds them). */
export async function predictions(main, _m, ctx) {
  main.append(h("h1", {}, "Predictions"));
  let models;
  try {
    models = await api.page("ml-models-index/", { page_size: 100 });
  } catch (e) {
    if (e.status === 404) {
      main.append(note("No ML models or predictions in this deployment yet. When the lake has them (ml-models-index/, ml-bad-lumisection/), this page lists the flagged lumisections and offers the certification and golden JSON downloads."));
      return;
    }
    throw e;
  }
  if (!ctx.alive()) return;
  main.append(h("h2", {}, "Models"), models.results.length ? table([
    { label: "Id", get: (r) => r.id, class: "num" }, { label: "Name", get: (r) => r.name }, { label: "Active", get: (r) => String(r.active) },
    { label: "Description", get: (r) => r.description || "" }], models.results) : note("No models."));
  const bad = await api.page("ml-bad-lumisection/", { page_size: 100, ...Object.fromEntries(ctx.params) });
  main.append(h("h2", {}, "Flagged lumisections"), bad.results.length ? table([
    { label: "Model", get: (r) => r.model_id, class: "num" },
    { label: "Run", get: (r) => link(`/runs/${r.dataset_id}/${r.run_number}`, {}, r.run_number), class: "num" },
    { label: "LS", get: (r) => link(`/lumisections/${r.dataset_id}/${r.run_number}/${r.ls_number}`, {}, r.ls_number), class: "num" },
    { label: "Metric", get: (r) => r.metric_value, class: "num" }], bad.results) : note("No flagged lumisections."));
  main.append(h("p", {}, "Downloads: ", h("button", { onclick: () => download("cert-json") }, "certification JSON"), " ", h("button", { onclick: () => download("golden-json") }, "golden JSON")));
  async function download(kind) {
    try {
      const ws = new URLSearchParams(location.search).get("ws");
      const r = await fetch(`/api/v1/ml-bad-lumisection/${kind}/`, { method: "POST", headers: { "Content-Type": "application/json", ...(ws ? { Workspace: ws } : {}) }, body: "{}" });
      if (!r.ok) throw new Error(`${r.status} ${r.statusText}`);
      const a = h("a", { href: URL.createObjectURL(await r.blob()), download: `${kind}.json` });
      a.click();
    } catch (e) {
      main.append(errorBox(e));
    }
  }
}

export { thumbGrid };
