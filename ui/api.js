// The public DIALS API (/api/v1/), as cmsdials calls it: Workspace header, cursor pages.
import { decodeArrow } from "./arrow.js";
import { bearer } from "./auth.js";

export const BASE = "/api/v1/";

/** An API failure with a message fit for a person. */
export class ApiError extends Error {
  constructor(status, message, url) {
    super(message);
    this.status = status;
    this.url = url;
  }
}

let workspace = "";
let signal = null;
/** The workspace sent with every request ("" = the server's default). */
export function setWorkspace(ws) { workspace = ws || ""; }
/** Aborts requests of the page being left. */
export function setSignal(s) { signal = s; }

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") q.set(k, v);
  }
  const s = q.toString();
  return s ? "?" + s : "";
}

async function request(path, params, accept) {
  const url = BASE + path + query(params);
  const headers = { Accept: accept || "application/json" };
  if (workspace) headers.Workspace = workspace;
  const token = bearer();
  if (token) headers.Authorization = `Bearer ${token}`;
  let resp;
  try {
    resp = await fetch(url, { headers, signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, `Cannot reach the API (${url}): ${e.message}. Is the server running?`, url);
  }
  if (!resp.ok) {
    let msg = `${resp.status} ${resp.statusText}`;
    try {
      const body = await resp.json();
      if (body.detail) msg = body.detail;
      else msg = Object.entries(body).map(([k, v]) => `${k}: ${[].concat(v).join(" ")}`).join("; ");
    } catch (_) { /* not JSON */ }
    throw new ApiError(resp.status, msg, url);
  }
  return resp;
}

/** One JSON document. */
export async function get(path, params) {
  return (await request(path, params)).json();
}

/** One page: {next, previous, results}; `cursor` is a next_token. */
export async function page(path, params, cursor) {
  const p = { ...params };
  if (cursor) p.next_token = cursor;
  return get(path, p);
}

/** The next_token of a next/previous URL (null when absent). */
export function tokenOf(url) {
  if (!url) return null;
  return new URL(url, location.href).searchParams.get("next_token") || "";
}

/** Every row, following cursors with pages of 500 (at most `max` rows). */
export async function all(path, params, max = 100000) {
  const rows = [];
  let token = null;
  for (;;) {
    const r = await page(path, { ...params, page_size: 500 }, token);
    rows.push(...r.results);
    token = tokenOf(r.next);
    if (!r.next || rows.length >= max) return rows;
  }
}

/** Every th1/th2 row of a filter in one Arrow IPC request, as plain objects like the JSON rows. */
export async function bulk(path, params) {
  const resp = await request(path, { ...params, format: "arrow" }, "application/vnd.apache.arrow.stream");
  return decodeArrow(await resp.arrayBuffer());
}

/** A count endpoint. */
export async function count(path, params) {
  return (await get(path + "count/", params)).count;
}
