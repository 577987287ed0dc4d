//! The `/api/v1` router: resources, filters, cursor pagination, workspaces, output formats.

use std::sync::{Arc, OnceLock};

use arrow::array::{Array, RecordBatch};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use axum::Router;
use base64::Engine as _;
use datafusion::scalar::ScalarValue;
use serde_json::{json, Value};

use crate::auth::Access;
use crate::engine::{Engine, Scan};
use crate::error::ApiError;
use crate::params::{self, Conditions, Filter, Op};
use dials_lake::tables::DataTable;

/// Default and maximum page sizes (DIALS).
const DEFAULT_PAGE: usize = 10;
const MAX_PAGE: usize = 500;
/// Rows one bulk (Arrow/Parquet) response holds at most; the byte budget usually binds first.
const MAX_BULK_ROWS: usize = 1_000_000;
/// Bytes per histogram row beyond its bins, for sizing a bulk page before reading it (ids, names,
/// axes, offsets; generous so that the estimate errs towards reading fewer rows).
const ROW_OVERHEAD_BYTES: i64 = 512;

/// Shared state of the API.
pub struct App {
    /// Query engine.
    pub engine: Engine,
}

/// A listable resource.
struct Resource {
    name: &'static str,
    /// Table (in the workspace) or a subquery template with `{ws:<table>}` and `{finished}` markers.
    from: &'static str,
    /// Columns of a response row, in DIALS's order.
    columns: &'static str,
    pk: &'static [&'static str],
    filters: &'static [Filter],
    /// Only rows of files whose ingestion finished.
    committed_only: bool,
    /// `from` is an aggregate materialised in memory per listing TTL (see `Engine::view`).
    materialise: bool,
    /// The data table of a histogram/scalar resource: bulk output, `scope=run` (its per-run twin).
    data: Option<DataTable>,
}

const fn f(param: &'static str, column: &'static str, op: Op) -> Filter {
    Filter { param, column, op }
}

const HIST_FILTERS: &[Filter] = &[
    f("dataset_id", "dataset_id", Op::IntEq),
    f("dataset_id__in", "dataset_id", Op::IntIn),
    f("file_id", "file_id", Op::IntEq),
    f("run_number", "run_number", Op::IntEq),
    f("run_number__gte", "run_number", Op::IntGte),
    f("run_number__lte", "run_number", Op::IntLte),
    f("run_number__in", "run_number", Op::IntIn),
    f("ls_number", "ls_number", Op::IntEq),
    f("ls_number__gte", "ls_number", Op::IntGte),
    f("ls_number__lte", "ls_number", Op::IntLte),
    f("ls_numbet__lte", "ls_number", Op::IntLte), // cmsdials 2.4.1 sends this spelling
    f("me_id", "me_id", Op::IntEq),
    f("dataset", "dataset_id", Op::NameToId("dataset")),
    f("dataset__regex", "dataset", Op::Regex),
    f("logical_file_name", "file_id", Op::NameToId("file")),
    f("logical_file_name__regex", "file_id", Op::LfnRegex),
    f("me", "me_id", Op::NameToId("me")),
    f("me__regex", "me", Op::Regex),
    f("kind", "kind", Op::StrEq),
    // Last: SCALAR_FILTERS is every filter before it.
    f("entries__gte", "entries", Op::IntGte),
];

/// As [`HIST_FILTERS`], without `entries__gte` (scalars have no entries): all but its last filter.
const SCALAR_FILTERS: &[Filter] = HIST_FILTERS.split_at(HIST_FILTERS.len() - 1).0;

/// Key of every data resource: `seq` breaks ties when a file holds the same ME twice in a
/// lumisection (docs/lake.md).
const DATA_PK: &[&str] = &[
    "dataset_id",
    "run_number",
    "ls_number",
    "me_id",
    "file_id",
    "seq",
];

const TH1: Resource = Resource {
    name: "th1",
    from: "{ws:th1}",
    // DIALS's columns, then flow bins and variable edges (extra keys: cmsdials ignores them; the UI plots them).
    columns: "dataset, me, dataset_id, file_id, run_number, ls_number, me_id, x_min, x_max, x_bin, entries, data, underflow, overflow, x_edges, x_labels, kind",
    // `seq` breaks ties when a file holds the same ME twice in a lumisection (docs/lake.md).
    pk: &["dataset_id", "run_number", "ls_number", "me_id", "file_id", "seq"],
    filters: HIST_FILTERS,
    committed_only: true,
    materialise: false,
    data: Some(DataTable::Th1),
};

const TH2: Resource = Resource {
    name: "th2",
    from: "{ws:th2}",
    columns: "dataset, me, dataset_id, file_id, run_number, ls_number, me_id, x_min, x_max, x_bin, y_min, y_max, y_bin, entries, data, x_edges, y_edges, x_labels, y_labels, kind",
    // `seq` breaks ties when a file holds the same ME twice in a lumisection (docs/lake.md).
    pk: &["dataset_id", "run_number", "ls_number", "me_id", "file_id", "seq"],
    filters: HIST_FILTERS,
    committed_only: true,
    materialise: false,
    data: Some(DataTable::Th2),
};

const TH3: Resource = Resource {
    name: "th3",
    from: "{ws:th3}",
    columns: "dataset, me, dataset_id, file_id, run_number, ls_number, me_id, kind, flags, x_min, x_max, x_bin, y_min, y_max, y_bin, \
              z_min, z_max, z_bin, entries, data, x_edges, y_edges, z_edges, x_labels, y_labels, z_labels",
    pk: DATA_PK,
    filters: HIST_FILTERS,
    committed_only: true,
    materialise: false,
    data: Some(DataTable::Th3),
};

const PROFILE1D: Resource = Resource {
    name: "profile1d",
    from: "{ws:profile1d}",
    columns: "dataset, me, dataset_id, file_id, run_number, ls_number, me_id, kind, flags, x_min, x_max, x_bin, entries, data, \
              underflow, overflow, bin_entries, bin_sums, sumw2, x_edges, x_labels",
    pk: DATA_PK,
    filters: HIST_FILTERS,
    committed_only: true,
    materialise: false,
    data: Some(DataTable::Profile1d),
};

const PROFILE2D: Resource = Resource {
    name: "profile2d",
    from: "{ws:profile2d}",
    columns: "dataset, me, dataset_id, file_id, run_number, ls_number, me_id, kind, flags, x_min, x_max, x_bin, y_min, y_max, y_bin, \
              entries, data, bin_entries, bin_sums, sumw2, x_edges, y_edges, x_labels, y_labels",
    pk: DATA_PK,
    filters: HIST_FILTERS,
    committed_only: true,
    materialise: false,
    data: Some(DataTable::Profile2d),
};

const SCALAR: Resource = Resource {
    name: "scalar",
    from: "{ws:scalar}",
    columns: "dataset, me, dataset_id, file_id, run_number, ls_number, me_id, kind, flags, value_int, value_float, value_string",
    pk: DATA_PK,
    filters: SCALAR_FILTERS,
    committed_only: true,
    materialise: false,
    data: Some(DataTable::Scalar),
};

const RUN: Resource = Resource {
    name: "run",
    from: "(SELECT l.dataset_id AS dataset_id, d.dataset AS dataset, l.run_number AS run_number, \
           CAST(COUNT(DISTINCT l.ls_number) AS BIGINT) AS ls_count, CAST(NULL AS DOUBLE) AS ls_completeness \
           FROM {ws:lumisection_index} l JOIN {ws:dataset_index} d ON l.dataset_id = d.dataset_id \
           WHERE l.file_id {finished} GROUP BY l.dataset_id, d.dataset, l.run_number) AS r",
    columns: "dataset_id, dataset, run_number, ls_count, ls_completeness",
    pk: &["dataset_id", "run_number"],
    filters: &[
        f("dataset_id", "dataset_id", Op::IntEq),
        f("dataset_id__in", "dataset_id", Op::IntIn),
        f("run_number", "run_number", Op::IntEq),
        f("run_number__gte", "run_number", Op::IntGte),
        f("run_number__lte", "run_number", Op::IntLte),
        f("run_number__in", "run_number", Op::IntIn),
        f("dataset", "dataset_id", Op::NameToId("dataset")),
        f("dataset__regex", "dataset", Op::Regex),
    ],
    committed_only: false,
    materialise: true,
    data: None,
};

const LUMISECTION: Resource = Resource {
    name: "lumisection",
    from: "(SELECT l.dataset_id AS dataset_id, d.dataset AS dataset, l.run_number AS run_number, l.ls_number AS ls_number, \
           CAST(SUM(l.th1_count) AS BIGINT) AS th1_count, CAST(SUM(l.th2_count) AS BIGINT) AS th2_count, \
           CAST(COALESCE(SUM(l.th3_count), 0) AS BIGINT) AS th3_count, CAST(COALESCE(SUM(l.profile1d_count), 0) AS BIGINT) AS profile1d_count, \
           CAST(COALESCE(SUM(l.profile2d_count), 0) AS BIGINT) AS profile2d_count, CAST(COALESCE(SUM(l.scalar_count), 0) AS BIGINT) AS scalar_count \
           FROM {ws:lumisection_index} l JOIN {ws:dataset_index} d ON l.dataset_id = d.dataset_id \
           WHERE l.file_id {finished} GROUP BY l.dataset_id, d.dataset, l.run_number, l.ls_number) AS s",
    columns: "dataset_id, dataset, run_number, ls_number, th1_count, th2_count, th3_count, profile1d_count, profile2d_count, scalar_count",
    pk: &["dataset_id", "run_number", "ls_number"],
    filters: &[
        f("dataset_id", "dataset_id", Op::IntEq),
        f("dataset_id__in", "dataset_id", Op::IntIn),
        f("run_number", "run_number", Op::IntEq),
        f("run_number__gte", "run_number", Op::IntGte),
        f("run_number__lte", "run_number", Op::IntLte),
        f("ls_number", "ls_number", Op::IntEq),
        f("ls_number__gte", "ls_number", Op::IntGte),
        f("ls_number__lte", "ls_number", Op::IntLte),
        f("dataset", "dataset_id", Op::NameToId("dataset")),
        f("dataset__regex", "dataset", Op::Regex),
    ],
    committed_only: false,
    materialise: true,
    data: None,
};

const FILE_INDEX: Resource = Resource {
    name: "file-index",
    from: "{ws:file_index}",
    columns: "dataset_id, dataset, file_id, file_size, creation_date, last_modification_date, logical_file_name, status, err_trace",
    pk: &["dataset_id", "file_id"],
    filters: &[
        f("dataset_id", "dataset_id", Op::IntEq),
        f("file_id", "file_id", Op::IntEq),
        f("logical_file_name", "logical_file_name", Op::StrEq),
        f("logical_file_name__regex", "logical_file_name", Op::Regex),
        f("status", "status", Op::StrEq),
        f("min_size", "file_size", Op::IntGte),
        f("dataset", "dataset_id", Op::NameToId("dataset")),
        f("dataset__regex", "dataset", Op::Regex),
    ],
    committed_only: false,
    materialise: false,
    data: None,
};

const DATASET_INDEX: Resource = Resource {
    name: "dataset-index",
    from: "{ws:dataset_index}",
    columns: "dataset_id, dataset, era, data_tier, primary_ds_name, processed_ds_name, processing_version, last_modification_date",
    pk: &["dataset_id"],
    filters: &[
        f("dataset_id", "dataset_id", Op::IntEq),
        f("dataset", "dataset_id", Op::NameToId("dataset")),
        f("dataset__regex", "dataset", Op::Regex),
    ],
    committed_only: false,
    materialise: false,
    data: None,
};

const MES: Resource = Resource {
    name: "mes",
    from: "(SELECT me_id, me, CAST(SUM(\"count\") AS BIGINT) AS \"count\", MAX(dim) AS dim, MIN(kind) AS kind FROM {ws:me_index} \
           WHERE file_id {finished} GROUP BY me_id, me) AS m",
    columns: "me_id, me, \"count\", dim, kind",
    pk: &["me_id"],
    filters: &[
        f("me_id", "me_id", Op::IntEq),
        f("me", "me_id", Op::NameToId("me")),
        f("me__regex", "me", Op::Regex),
        f("dim", "dim", Op::IntEq),
    ],
    committed_only: false,
    materialise: false,
    data: None,
};

/// Builds the router without token checks (local use, tests).
pub fn router(app: Arc<App>) -> Router {
    router_with_auth(app, None)
}

/// Builds the router (used by `dials serve` and the Lambda function alike); with a verifier,
/// every `/api/` route but the OpenAPI document and the health check needs a bearer token and
/// reads only the workspaces the token's roles allow (`auth.rs`).
pub fn router_with_auth(app: Arc<App>, verifier: Option<Arc<crate::auth::Verifier>>) -> Router {
    let ui_auth = crate::auth::ui_config(verifier.as_deref());
    let list = |r: &'static Resource| {
        move |State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri, RawQuery(q): RawQuery| async move {
            respond(
                &headers,
                list_resource(&app, r, &headers, &uri, q.as_deref().unwrap_or("")).await,
            )
        }
    };
    let count = |r: &'static Resource| {
        move |State(app): State<Arc<App>>, headers: HeaderMap, RawQuery(q): RawQuery| async move {
            respond(
                &headers,
                count_resource(&app, r, &headers, q.as_deref().unwrap_or("")).await,
            )
        }
    };
    let routes = Router::new()
        .route("/api/v1/th1/", get(list(&TH1)))
        .route("/api/v1/th2/", get(list(&TH2)))
        .route("/api/v1/th3/", get(list(&TH3)))
        .route("/api/v1/profile1d/", get(list(&PROFILE1D)))
        .route("/api/v1/profile2d/", get(list(&PROFILE2D)))
        .route("/api/v1/scalar/", get(list(&SCALAR)))
        .route("/api/v1/run/", get(list(&RUN)))
        .route("/api/v1/lumisection/", get(list(&LUMISECTION)))
        .route("/api/v1/file-index/", get(list(&FILE_INDEX)))
        .route("/api/v1/dataset-index/", get(list(&DATASET_INDEX)))
        .route("/api/v1/mes/", get(mes_list))
        .route("/api/v1/run/count/", get(count(&RUN)))
        .route("/api/v1/lumisection/count/", get(count(&LUMISECTION)))
        .route("/api/v1/file-index/count/", get(count(&FILE_INDEX)))
        .route(
            "/api/v1/th1/{dataset_id}/{run_number}/{ls_number}/{me_id}/",
            get(|s, h, p| get_hist(s, h, p, &TH1)),
        )
        .route(
            "/api/v1/th2/{dataset_id}/{run_number}/{ls_number}/{me_id}/",
            get(|s, h, p| get_hist(s, h, p, &TH2)),
        )
        .route(
            "/api/v1/th3/{dataset_id}/{run_number}/{ls_number}/{me_id}/",
            get(|s, h, p| get_hist(s, h, p, &TH3)),
        )
        .route(
            "/api/v1/profile1d/{dataset_id}/{run_number}/{ls_number}/{me_id}/",
            get(|s, h, p| get_hist(s, h, p, &PROFILE1D)),
        )
        .route(
            "/api/v1/profile2d/{dataset_id}/{run_number}/{ls_number}/{me_id}/",
            get(|s, h, p| get_hist(s, h, p, &PROFILE2D)),
        )
        .route(
            "/api/v1/scalar/{dataset_id}/{run_number}/{ls_number}/{me_id}/",
            get(|s, h, p| get_hist(s, h, p, &SCALAR)),
        )
        .route("/api/v1/run/{dataset_id}/{run_number}/", get(get_run))
        .route(
            "/api/v1/lumisection/{dataset_id}/{run_number}/{ls_number}/",
            get(get_lumisection),
        )
        .route("/api/v1/file-index/{dataset_id}/{file_id}/", get(get_file))
        .route(
            "/api/v1/dataset-index/{dataset_id}/{file_id}/",
            get(get_dataset),
        )
        .route("/api/v1/dataset-index/{dataset_id}/", get(get_dataset_one))
        .route("/api/v1/mes/{me_id}/", get(get_me))
        .route("/api/v1/mes/{dataset_id}/{run_number}/", get(mes_of_run))
        .route("/api/v1/workspaces/", get(workspaces))
        .route("/api/v1/workspaces/my-default/", get(my_default))
        .merge(crate::ml::routes::routes())
        .route(
            "/api/v1/openapi.json",
            get(|| async { axum::Json(crate::openapi::document()) }),
        )
        // Public (no token): with and without the slash, as API Gateway routes the latter.
        .route(
            "/api/v1/health/",
            get(|| async { axum::Json(json!({ "status": "ok" })) }),
        )
        .route(
            "/api/v1/health",
            get(|| async { axum::Json(json!({ "status": "ok" })) }),
        )
        // Generated, not a file of ui/: what the UI needs to sign in (auth.rs).
        .route(
            "/ui/auth-config.json",
            get(move || std::future::ready(axum::Json(ui_auth.clone()))),
        )
        .fallback(crate::ui::fallback);
    let routes = match verifier {
        Some(verifier) => {
            let gate = Arc::new(crate::auth::Gate {
                verifier,
                workspaces: app.engine.workspaces.clone(),
            });
            routes.layer(axum::middleware::from_fn_with_state(
                gate,
                crate::auth::require,
            ))
        }
        None => routes,
    };
    routes
        .layer(axum::middleware::from_fn(crate::deadline::enforce))
        .layer(axum::middleware::from_fn(crate::timing::layer))
        .with_state(app)
}

/// Request headers a response depends on besides the URL (with auth on, the token decides the
/// workspace: a cache must never answer one caller with another's response).
const VARY: &str = "Workspace, Accept, Authorization";

/// A JSON (or bulk) response with ETag/Cache-Control/Vary; `If-None-Match` gives 304.
pub(crate) fn respond(req: &HeaderMap, r: Result<Response, ApiError>) -> Response {
    match r {
        Err(e) => {
            if e.status().is_server_error() {
                tracing::error!(error = %e, "request failed");
            }
            e.into_response()
        }
        Ok(mut resp) => {
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=30"),
            );
            // The same URL answers differently per workspace and per format: a cache must key on both.
            resp.headers_mut()
                .insert(header::VARY, HeaderValue::from_static(VARY));
            if let Some(etag) = resp.headers().get(header::ETAG).cloned() {
                if req.get(header::IF_NONE_MATCH) == Some(&etag) {
                    return (
                        StatusCode::NOT_MODIFIED,
                        [
                            (header::ETAG, etag),
                            (header::VARY, HeaderValue::from_static(VARY)),
                        ],
                    )
                        .into_response();
                }
            }
            resp
        }
    }
}

pub(crate) fn json_response(v: &Value) -> Result<Response, ApiError> {
    bytes_response(serde_json::to_vec(v).map_err(|e| ApiError::Internal(e.to_string()))?)
}

pub(crate) fn parse_query(q: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect()
}

/// The workspace of a request: the `Workspace` header (case-insensitive), else the default. A header
/// that is present is never ignored: a name that is not UTF-8 is a 400, an unknown one a 404.
pub(crate) fn workspace(app: &App, headers: &HeaderMap) -> Result<String, ApiError> {
    let given =
        match headers.get("workspace") {
            None => None,
            Some(v) => Some(std::str::from_utf8(v.as_bytes()).map_err(|_| {
                ApiError::bad("Workspace", "The Workspace header is not valid UTF-8.")
            })?),
        };
    match given.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(app.engine.workspaces.default.clone()),
        Some(w) => app
            .engine
            .workspaces
            .get(w)
            .map(|x| x.name.clone())
            .ok_or_else(|| ApiError::NotFound(format!("Workspace '{w}' not found"))),
    }
}

/// The FROM template of a request: a data resource reads its per-run twin for `scope=run`
/// (`lumisection`, the default, reads the per-lumisection table; docs/lake.md).
fn template(r: &Resource, query: &[(String, String)]) -> Result<String, ApiError> {
    let Some(t) = r.data else {
        return Ok(r.from.to_string());
    };
    match query
        .iter()
        .rev()
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v.as_str())
    {
        None | Some("lumisection") => Ok(r.from.to_string()),
        Some("run") => Ok(format!("{{ws:{}}}", t.run_name())),
        Some(other) => Err(ApiError::bad(
            "scope",
            format!("Unknown scope '{other}': use lumisection or run."),
        )),
    }
}

/// The FROM clause of a resource: its table or subquery, or the materialised view of it.
async fn from_clause(
    app: &App,
    r: &Resource,
    ws: &str,
    finished: &str,
) -> Result<String, ApiError> {
    from_template(app, r, r.from, ws, finished).await
}

/// [`from_clause`] with the FROM template given (see [`template`]).
async fn from_template(
    app: &App,
    r: &Resource,
    template: &str,
    ws: &str,
    finished: &str,
) -> Result<String, ApiError> {
    let from = expand(&app.engine, ws, template, finished);
    if !r.materialise {
        return Ok(from);
    }
    let sql = format!("SELECT {} FROM {from}", r.columns);
    app.engine.view(ws, r.name, &sql).await
}

/// What follows `file_id` in the condition "rows of files whose ingestion FINISHED": `NOT IN (…)`
/// the files whose record says anything else (a re-ingest running, a failure), or `IS NOT NULL`
/// when there are none. Every file with rows in a table has a record (its STARTED record is
/// committed before any of its rows), so this equals `IN (FINISHED files)` while its size follows
/// the few files not finished instead of every file of the lake. Ids are our own integers.
pub(crate) async fn finished_list(app: &App, ws: &str) -> Result<String, ApiError> {
    let ids = app.engine.unfinished_files(ws).await?;
    if ids.is_empty() {
        return Ok("IS NOT NULL".to_string());
    }
    let parts: Vec<String> = ids.iter().map(i64::to_string).collect();
    Ok(format!("NOT IN ({})", parts.join(", ")))
}

/// Expands `{ws:<table>}` and `{finished}` (the committed-file condition after a `file_id` column,
/// [`finished_list`]) in a FROM template.
fn expand(engine: &Engine, ws: &str, template: &str, finished: &str) -> String {
    let mut s = template.replace("{finished}", finished);
    for t in crate::engine::TABLES {
        s = s.replace(&format!("{{ws:{t}}}"), &engine.table(ws, t));
    }
    s
}

fn conditions(
    app: &App,
    r: &Resource,
    ws: &str,
    query: &[(String, String)],
    finished: &str,
) -> Result<Conditions, ApiError> {
    let mut conds = Conditions::default();
    params::apply(
        r.filters,
        query,
        &mut conds,
        &app.engine.table(ws, "file_index"),
    )?;
    if r.committed_only {
        conds.sql.push(format!("file_id {finished}"));
    }
    Ok(conds)
}

pub(crate) fn page_size(query: &[(String, String)]) -> Result<usize, ApiError> {
    match query.iter().rev().find(|(k, _)| k == "page_size") {
        None => Ok(DEFAULT_PAGE),
        Some((_, v)) => {
            let n = params::int("page_size", v)?;
            if n < 1 {
                return Err(ApiError::bad(
                    "page_size",
                    "Ensure this value is greater than or equal to 1.",
                ));
            }
            Ok((n as usize).min(MAX_PAGE))
        }
    }
}

pub(crate) fn encode_cursor(values: &[i64]) -> String {
    let s: Vec<String> = values.iter().map(i64::to_string).collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s.join(","))
}

pub(crate) fn decode_cursor(token: &str, n: usize) -> Result<Vec<i64>, ApiError> {
    let bad = || ApiError::bad("next_token", "Invalid cursor.");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let v: Vec<i64> = text
        .split(',')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    if v.len() != n {
        return Err(bad());
    }
    Ok(v)
}

/// A key column as compared in cursor conditions: `seq` is null in objects written before it
/// existed (docs/lake.md) and compares as 0, so that `NOT (key > cursor)` holds for the cursor's own
/// row instead of being null. The other key columns are never null and stay bare (pruning).
fn key_expr(c: &str) -> String {
    if c == dials_lake::tables::SEQ {
        format!("COALESCE({c}, 0)")
    } else {
        c.to_string()
    }
}

/// `(a, b, c) > (x, y, z)` as SQL.
pub(crate) fn after(pk: &[&str], values: &[i64], conds: &mut Conditions) -> String {
    let mut ors = Vec::new();
    for i in 0..pk.len() {
        let mut ands = Vec::new();
        for j in 0..i {
            ands.push(format!(
                "{} = {}",
                key_expr(pk[j]),
                conds.bind(ScalarValue::Int64(Some(values[j])))
            ));
        }
        ands.push(format!(
            "{} > {}",
            key_expr(pk[i]),
            conds.bind(ScalarValue::Int64(Some(values[i])))
        ));
        ors.push(format!("({})", ands.join(" AND ")));
    }
    format!("({})", ors.join(" OR "))
}

/// The primary key of row `row` of `batch` (the cursor of that row).
pub(crate) fn row_key(pk: &[&str], batch: &RecordBatch, row: usize) -> Result<Vec<i64>, ApiError> {
    pk.iter()
        .map(|c| {
            batch
                .column_by_name(c)
                .and_then(|a| a.as_any().downcast_ref::<arrow::array::Int64Array>())
                .map(|col| if col.is_null(row) { 0 } else { col.value(row) })
                .ok_or_else(|| ApiError::Internal(format!("cursor column {c} is not int64")))
        })
        .collect()
}

pub(crate) fn batches_to_json(batches: &[RecordBatch]) -> Result<Vec<Value>, ApiError> {
    let mut buf = Vec::new();
    crate::json::write_rows(&mut buf, batches)?;
    serde_json::from_slice(&buf).map_err(|e| ApiError::Internal(e.to_string()))
}

/// The absolute URL of this request with `next_token` replaced, or removed for the first page
/// (behind API Gateway: forwarded headers).
pub(crate) fn page_url(
    headers: &HeaderMap,
    uri: &Uri,
    query: &[(String, String)],
    token: Option<&str>,
) -> String {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(',').next().unwrap_or("").trim().to_string())
    };
    let proto = h("x-forwarded-proto").unwrap_or_else(|| "http".into());
    let host = h("x-forwarded-host")
        .or_else(|| h("host"))
        .unwrap_or_else(|| "localhost".into());
    let prefix = h("x-forwarded-prefix").unwrap_or_default();
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in query.iter().filter(|(k, _)| k != "next_token") {
        ser.append_pair(k, v);
    }
    if let Some(token) = token {
        ser.append_pair("next_token", token);
    }
    format!("{proto}://{host}{prefix}{}?{}", uri.path(), ser.finish())
}

async fn list_resource(
    app: &App,
    r: &Resource,
    headers: &HeaderMap,
    uri: &Uri,
    q: &str,
) -> Result<Response, ApiError> {
    let ws = workspace(app, headers)?;
    let query = parse_query(q);
    let finished = finished_list(app, &ws).await?;
    let mut conds = conditions(app, r, &ws, &query, &finished)?;
    let from = from_template(app, r, &template(r, &query)?, &ws, &finished).await?;
    // One lumisection of a histogram table is a point query.
    let scan = if r.data.is_some() && query.iter().any(|(k, _)| k == "ls_number") {
        Scan::Point
    } else {
        Scan::Wide
    };
    let bulk = bulk_format(headers, &query)?;
    if let Some(fmt) = bulk {
        if r.data.is_none() {
            return Err(ApiError::NotAcceptable(format!(
                "format '{fmt}' is offered for the histogram and scalar tables only"
            )));
        }
    }
    let mut cursor = None;
    if let Some((_, token)) = query.iter().find(|(k, _)| k == "next_token") {
        let cur = decode_cursor(token, r.pk.len())?;
        let c = after(r.pk, &cur, &mut conds);
        conds.sql.push(c);
        cursor = Some(cur);
    }
    if let Some(fmt) = bulk {
        return bulk_page(app, r, headers, uri, &query, &from, conds, scan, fmt).await;
    }
    let size = page_size(&query)?;
    let sql = format!(
        "SELECT {} FROM {from} {} ORDER BY {} LIMIT {}",
        select_list(r),
        conds.where_clause(),
        r.pk.join(", "),
        size + 1
    );
    let batches = app.engine.query_as(&sql, conds.values, scan).await?;
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    // Keep `size` rows, then as many of them as fit the response budget; if rows are left over, the
    // cursor is the primary key of the last row sent.
    let kept = first_rows(&batches, size);
    let rows = crate::json::Rows::encode(&in_response_order(r, kept.clone())?)?;
    let limit = crate::budget::max_bytes();
    let fit = crate::budget::rows_that_fit(
        (0..rows.ends.len()).map(|i| crate::budget::text_wire_len(rows.row(i))),
        limit.saturating_sub(crate::budget::PAGE_OVERHEAD),
    );
    if fit == 0 && !rows.ends.is_empty() {
        let (b, i) = row_at(&kept, 0)?;
        return Err(too_large(
            r,
            &row_key(r.pk, b, i)?,
            crate::budget::text_wire_len(rows.row(0)),
            limit,
            "as JSON",
        ));
    }
    let cut = fit < rows.ends.len();
    let next = match fit.checked_sub(1) {
        Some(last) if cut || total > size => {
            let (b, i) = row_at(&kept, last)?;
            Value::String(page_url(
                headers,
                uri,
                &query,
                Some(&encode_cursor(&row_key(r.pk, b, i)?)),
            ))
        }
        _ => Value::Null,
    };
    // The page before this one: the `size` rows up to the cursor, found walking back over keys only.
    let previous = match cursor {
        None => Value::Null,
        Some(cur) => {
            let mut back = conditions(app, r, &ws, &query, &finished)?;
            let c = after(r.pk, &cur, &mut back);
            back.sql.push(format!("NOT {c}"));
            let desc: Vec<String> = r.pk.iter().map(|c| format!("{c} DESC")).collect();
            let sql = format!(
                "SELECT {} FROM {from} {} ORDER BY {} LIMIT {}",
                r.pk.join(", "),
                back.where_clause(),
                desc.join(", "),
                size + 1
            );
            let keys = app.engine.query_as(&sql, back.values, scan).await?;
            let mut rows = keys
                .iter()
                .flat_map(|b| (0..b.num_rows()).map(move |i| (b, i)));
            match rows.nth(size) {
                // More rows before that page: it starts after this key.
                Some((b, i)) => Value::String(page_url(
                    headers,
                    uri,
                    &query,
                    Some(&encode_cursor(&row_key(r.pk, b, i)?)),
                )),
                None => Value::String(page_url(headers, uri, &query, None)),
            }
        }
    };
    // Rows go from Arrow to JSON bytes once, straight into the response body.
    let mut body = Vec::with_capacity(1024 + rows.bytes.len());
    body.extend_from_slice(b"{\"next\":");
    serde_json::to_writer(&mut body, &next).map_err(|e| ApiError::Internal(e.to_string()))?;
    body.extend_from_slice(b",\"previous\":");
    serde_json::to_writer(&mut body, &previous).map_err(|e| ApiError::Internal(e.to_string()))?;
    body.extend_from_slice(b",\"results\":");
    rows.write_array(fit, &mut body);
    body.push(b'}');
    let mut resp = bytes_response(body)?;
    if cut {
        mark_truncated(&mut resp, fit, limit);
    }
    Ok(resp)
}

/// One page of a bulk export (Arrow/Parquet), cut to the response budget like a JSON page: when
/// rows are left, a `Link: <...next_token=...>; rel="next"` header (and `X-Dials-Truncated`) says
/// so. Two steps keep memory near the budget: the keys and bin counts of the rows (cheap columns)
/// say how many rows can fit, then only those rows are read and encoded.
#[allow(clippy::too_many_arguments)]
async fn bulk_page(
    app: &App,
    r: &Resource,
    headers: &HeaderMap,
    uri: &Uri,
    query: &[(String, String)],
    from: &str,
    conds: Conditions,
    scan: Scan,
    fmt: &'static str,
) -> Result<Response, ApiError> {
    let limit = crate::budget::max_bytes();
    let max_raw =
        crate::budget::binary_raw_budget(limit.saturating_sub(crate::budget::PAGE_OVERHEAD));
    // Values per row: bins (profiles: mean, entries, sums and sumw2 per bin, flow bins included).
    let bins = match r.data {
        Some(DataTable::Th2) => "CAST(x_bin AS BIGINT) * CAST(y_bin AS BIGINT)",
        Some(DataTable::Th3) => {
            "CAST(x_bin AS BIGINT) * CAST(y_bin AS BIGINT) * CAST(z_bin AS BIGINT)"
        }
        Some(DataTable::Profile1d) => "4 * (CAST(x_bin AS BIGINT) + 2)",
        Some(DataTable::Profile2d) => {
            "4 * (CAST(x_bin AS BIGINT) + 2) * (CAST(y_bin AS BIGINT) + 2)"
        }
        Some(DataTable::Scalar) => "CAST(COALESCE(LENGTH(value_string), 0) AS BIGINT) / 8 + 1",
        _ => "CAST(x_bin AS BIGINT)",
    };
    let most = (max_raw / ROW_OVERHEAD_BYTES as usize).clamp(1, MAX_BULK_ROWS);
    let pk = r.pk.join(", ");
    let sql = format!(
        "SELECT {pk}, 8 * {bins} + {ROW_OVERHEAD_BYTES} AS est FROM {from} {} ORDER BY {pk} LIMIT {}",
        conds.where_clause(),
        most + 1
    );
    let keys = app
        .engine
        .query_as(&sql, conds.values.clone(), scan)
        .await?;
    let (mut used, mut n, mut more) = (0usize, 0usize, false);
    let mut last_key = None;
    'keys: for b in &keys {
        let est = b
            .column_by_name("est")
            .and_then(|a| a.as_any().downcast_ref::<arrow::array::Int64Array>());
        for i in 0..b.num_rows() {
            let e = est.map_or(ROW_OVERHEAD_BYTES, |a| a.value(i)).max(0) as usize;
            // At least one row is read, so a single oversized row is reported, not skipped.
            if n > 0 && (used.saturating_add(e) > max_raw || n >= most) {
                more = true;
                break 'keys;
            }
            used = used.saturating_add(e);
            n += 1;
            last_key = Some(row_key(r.pk, b, i)?);
        }
    }
    let Some(last_key) = last_key else {
        return Ok(crate::bulk::response(fmt, Vec::new()));
    };
    let mut upto = conds;
    if more {
        // Only the rows up to the last that fits. When every matching row fits (the usual bulk
        // request: one lumisection, one ME × run), the filters alone select them: no key-range
        // condition for the scan to evaluate per row.
        let c = after(r.pk, &last_key, &mut upto);
        upto.sql.push(format!("NOT {c}"));
    }
    let sql = format!(
        "SELECT {} FROM {from} {} ORDER BY {pk}",
        select_list(r),
        upto.where_clause()
    );
    let raw = app.engine.query_as(&sql, upto.values, scan).await?;
    let total: usize = raw.iter().map(RecordBatch::num_rows).sum();
    let batches = in_response_order(r, raw.clone())?;
    let Some(schema) = batches.first().map(RecordBatch::schema) else {
        return Ok(crate::bulk::response(fmt, Vec::new()));
    };
    let enc = crate::bulk::encode(fmt, schema, &batches, max_raw)?;
    if enc.rows == 0 {
        let (b, i) = row_at(&raw, 0)?;
        let (first, j) = row_at(&batches, 0)?;
        let one = crate::bulk::encode(fmt, first.schema(), &[first.slice(j, 1)], usize::MAX)?;
        return Err(too_large(
            r,
            &row_key(r.pk, b, i)?,
            crate::budget::binary_wire_len(one.body.len()),
            limit,
            &format!("as {fmt} (base64)"),
        ));
    }
    let rows = enc.rows;
    let mut resp = crate::bulk::response(fmt, enc.body);
    if more || rows < total {
        let (b, i) = row_at(&raw, rows - 1)?;
        let next = page_url(
            headers,
            uri,
            query,
            Some(&encode_cursor(&row_key(r.pk, b, i)?)),
        );
        let link = HeaderValue::from_str(&format!("<{next}>; rel=\"next\""))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        resp.headers_mut().insert(header::LINK, link);
        mark_truncated(&mut resp, rows, limit);
    }
    Ok(resp)
}

/// Says on a response that it holds fewer rows than asked because of the response budget.
fn mark_truncated(resp: &mut Response, rows: usize, limit: usize) {
    let v = format!("rows={rows}; limit={limit}; reason=response-size");
    if let Ok(v) = HeaderValue::from_str(&v) {
        resp.headers_mut()
            .insert(crate::budget::TRUNCATED_HEADER, v);
    }
}

/// The 413 for an item that alone exceeds the response budget.
fn too_large(r: &Resource, key: &[i64], bytes: usize, limit: usize, how: &str) -> ApiError {
    let key: Vec<String> =
        r.pk.iter()
            .zip(key)
            .map(|(c, v)| format!("{c}={v}"))
            .collect();
    ApiError::TooLarge(format!(
        "The {} row ({}) is {bytes} bytes {how}, more than one response may hold ({limit} bytes). \
         Ask for it with format=arrow (about half the size of JSON), or read it from the lake directly (docs/lake.md).",
        r.name,
        key.join(", ")
    ))
}

/// The first `n` rows of `batches` (slices, no copy).
fn first_rows(batches: &[RecordBatch], n: usize) -> Vec<RecordBatch> {
    let mut kept = Vec::with_capacity(batches.len());
    let mut left = n;
    for b in batches {
        if left == 0 {
            break;
        }
        let take = b.num_rows().min(left);
        kept.push(b.slice(0, take));
        left -= take;
    }
    kept
}

/// The batch and row of the `idx`-th row of `batches`.
fn row_at(batches: &[RecordBatch], mut idx: usize) -> Result<(&RecordBatch, usize), ApiError> {
    for b in batches {
        if idx < b.num_rows() {
            return Ok((b, idx));
        }
        idx -= b.num_rows();
    }
    Err(ApiError::Internal("row past the end of a page".into()))
}

/// What to SELECT for a resource's rows. th1/th2 columns are selected in the order the table
/// stores them (the partition column last), so the scan needs no reordering step (DataFusion plans
/// it ~0.3 ms faster); [`in_response_order`] puts them back in DIALS's order.
fn select_list(r: &Resource) -> &'static str {
    static LISTS: [OnceLock<String>; DataTable::ALL.len()] =
        [const { OnceLock::new() }; DataTable::ALL.len()];
    let Some(table) = r.data else {
        return r.columns;
    };
    let Some(cell) = LISTS.get(table.index()) else {
        return r.columns;
    };
    cell.get_or_init(|| {
        let schema = table.schema();
        let mut cols: Vec<&str> = r.columns.split(", ").collect();
        // The cursor needs every key column, also those the response leaves out (`seq`).
        let extra: Vec<&str> = r.pk.iter().copied().filter(|c| !cols.contains(c)).collect();
        cols.extend(extra);
        // Columns the files do not hold (the Hive partition) sort last.
        cols.sort_by_key(|c| schema.index_of(c).unwrap_or(usize::MAX));
        cols.join(", ")
    })
}

/// Puts selected columns back in the resource's response order, without the columns only the
/// cursor needs (a no-op unless they differ).
fn in_response_order(
    r: &Resource,
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>, ApiError> {
    if select_list(r) == r.columns {
        return Ok(batches);
    }
    batches
        .into_iter()
        .map(|b| {
            let idx = r
                .columns
                .split(", ")
                .map(|c| b.schema().index_of(c))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            b.project(&idx)
                .map_err(|e| ApiError::Internal(e.to_string()))
        })
        .collect()
}

fn bytes_response(body: Vec<u8>) -> Result<Response, ApiError> {
    let etag = format!("W/\"{:016x}\"", xxhash_rust::xxh64::xxh64(&body, 0));
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

async fn count_resource(
    app: &App,
    r: &Resource,
    headers: &HeaderMap,
    q: &str,
) -> Result<Response, ApiError> {
    let ws = workspace(app, headers)?;
    let query = parse_query(q);
    let finished = finished_list(app, &ws).await?;
    let conds = conditions(app, r, &ws, &query, &finished)?;
    let sql = format!(
        "SELECT COUNT(*) AS n FROM {} {}",
        from_clause(app, r, &ws, &finished).await?,
        conds.where_clause()
    );
    let rows = batches_to_json(&app.engine.query(&sql, conds.values).await?)?;
    json_response(&json!({ "count": rows.first().and_then(|v| v["n"].as_i64()).unwrap_or(0) }))
}

async fn one(
    app: &App,
    r: &Resource,
    headers: &HeaderMap,
    keys: &[(&'static str, &str)],
    what: &str,
) -> Result<Response, ApiError> {
    one_from(app, r, r.from, headers, keys, what).await
}

/// [`one`] reading the FROM template `template`.
async fn one_from(
    app: &App,
    r: &Resource,
    template: &str,
    headers: &HeaderMap,
    keys: &[(&'static str, &str)],
    what: &str,
) -> Result<Response, ApiError> {
    let ws = workspace(app, headers)?;
    let mut conds = Conditions::default();
    for (col, v) in keys {
        let n = v
            .parse::<i64>()
            .map_err(|_| ApiError::NotFound(format!("No {what} matches the given query.")))?;
        let p = conds.bind(ScalarValue::Int64(Some(n)));
        conds.sql.push(format!("{col} = {p}"));
    }
    let finished = finished_list(app, &ws).await?;
    if r.committed_only {
        conds.sql.push(format!("file_id {finished}"));
    }
    let sql = format!(
        "SELECT {} FROM {} {} ORDER BY {} LIMIT 1",
        select_list(r),
        from_template(app, r, template, &ws, &finished).await?,
        conds.where_clause(),
        r.pk.join(", ")
    );
    let rows = batches_to_json(&in_response_order(
        r,
        app.engine.query_as(&sql, conds.values, Scan::Point).await?,
    )?)?;
    match rows.into_iter().next() {
        Some(v) => json_response(&v),
        None => Err(ApiError::NotFound(format!(
            "No {what} matches the given query."
        ))),
    }
}

async fn get_hist(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((d, run, ls, me)): Path<(String, String, String, String)>,
    r: &'static Resource,
) -> Response {
    let keys = [
        ("dataset_id", d.as_str()),
        ("run_number", run.as_str()),
        ("ls_number", ls.as_str()),
        ("me_id", me.as_str()),
    ];
    // Lumisection 0 is a per-run element: it lives in the table's per-run twin.
    let run_twin = r
        .data
        .filter(|_| ls.trim().parse::<i64>().ok() == Some(0))
        .map(|t| format!("{{ws:{}}}", t.run_name()));
    let what = if r.data == Some(DataTable::Scalar) {
        "monitoring element"
    } else {
        "histogram"
    };
    respond(
        &headers,
        one_from(
            &app,
            r,
            run_twin.as_deref().unwrap_or(r.from),
            &headers,
            &keys,
            what,
        )
        .await,
    )
}

async fn get_run(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((d, run)): Path<(String, String)>,
) -> Response {
    respond(
        &headers,
        one(
            &app,
            &RUN,
            &headers,
            &[("dataset_id", &d), ("run_number", &run)],
            "run",
        )
        .await,
    )
}

async fn get_lumisection(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((d, run, ls)): Path<(String, String, String)>,
) -> Response {
    respond(
        &headers,
        one(
            &app,
            &LUMISECTION,
            &headers,
            &[("dataset_id", &d), ("run_number", &run), ("ls_number", &ls)],
            "lumisection",
        )
        .await,
    )
}

async fn get_file(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((d, file)): Path<(String, String)>,
) -> Response {
    respond(
        &headers,
        one(
            &app,
            &FILE_INDEX,
            &headers,
            &[("dataset_id", &d), ("file_id", &file)],
            "file",
        )
        .await,
    )
}

async fn get_dataset(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((d, _file)): Path<(String, String)>,
) -> Response {
    respond(
        &headers,
        one(
            &app,
            &DATASET_INDEX,
            &headers,
            &[("dataset_id", &d)],
            "dataset",
        )
        .await,
    )
}

async fn get_dataset_one(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(d): Path<String>,
) -> Response {
    respond(
        &headers,
        one(
            &app,
            &DATASET_INDEX,
            &headers,
            &[("dataset_id", &d)],
            "dataset",
        )
        .await,
    )
}

async fn get_me(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(me): Path<String>,
) -> Response {
    respond(
        &headers,
        one(
            &app,
            &MES,
            &headers,
            &[("me_id", &me)],
            "monitoring element",
        )
        .await,
    )
}

async fn mes_list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let r = async {
        let ws = workspace(&app, &headers)?;
        let query = parse_query(q.as_deref().unwrap_or(""));
        let finished = finished_list(&app, &ws).await?;
        let mut conds = conditions(&app, &MES, &ws, &query, &finished)?;
        // `kind=<Kind>` (e.g. TProfile) or `kind=all`; without `kind` and `dim`, the MEs of th1/th2
        // (TH1x/TH2x), as DIALS lists them.
        match query
            .iter()
            .rev()
            .find(|(k, _)| k == "kind")
            .map(|(_, v)| v.as_str())
        {
            Some("all") => {}
            Some(k) => {
                let p = conds.bind(ScalarValue::Utf8(Some(k.to_string())));
                conds.sql.push(format!("kind = {p}"));
            }
            None if query.iter().any(|(k, _)| k == "dim") => {}
            None => {
                conds.sql.push(
                    "kind IN ('TH1F', 'TH1S', 'TH1D', 'TH1I', 'TH2F', 'TH2S', 'TH2D', 'TH2I')"
                        .to_string(),
                );
            }
        }
        let sql = format!(
            "SELECT {} FROM {} {} ORDER BY me_id",
            MES.columns,
            expand(&app.engine, &ws, MES.from, &finished),
            conds.where_clause()
        );
        let rows = batches_to_json(&app.engine.query(&sql, conds.values).await?)?;
        json_response(&Value::Array(rows))
    }
    .await;
    respond(&headers, r)
}

async fn mes_of_run(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((d, run)): Path<(String, String)>,
) -> Response {
    let r = async {
        let ws = workspace(&app, &headers)?;
        let bad = |p: &str| ApiError::NotFound(format!("No run matches the given query ({p})."));
        let d: i64 = d.parse().map_err(|_| bad("dataset_id"))?;
        let run: i64 = run.parse().map_err(|_| bad("run_number"))?;
        let e = &app.engine;
        let finished = finished_list(&app, &ws).await?;
        let sql = format!(
            "SELECT me_id, me, CAST(COUNT(*) AS BIGINT) AS \"count\", MAX(dim) AS dim, MIN(kind) AS kind FROM (\
             SELECT me_id, me, 1 AS dim, kind FROM {} WHERE dataset_id = $1 AND run_number = $2 AND file_id {finished} \
             UNION ALL SELECT me_id, me, 2 AS dim, kind FROM {} WHERE dataset_id = $1 AND run_number = $2 AND file_id {finished}) \
             GROUP BY me_id, me ORDER BY me_id",
            e.table(&ws, "th1"),
            e.table(&ws, "th2")
        );
        let rows = batches_to_json(&e.query(&sql, vec![ScalarValue::Int64(Some(d)), ScalarValue::Int64(Some(run))]).await?)?;
        json_response(&Value::Array(rows))
    }
    .await;
    respond(&headers, r)
}

/// Every workspace, or with auth on the caller's (the first is their default).
async fn workspaces(
    State(app): State<Arc<App>>,
    access: Option<Extension<Access>>,
    headers: HeaderMap,
) -> Response {
    let body = match access {
        Some(Extension(a)) => {
            json!({ "workspaces": a.workspaces, "default": a.workspaces.first() })
        }
        None => {
            let names: Vec<&str> = app
                .engine
                .workspaces
                .workspaces
                .iter()
                .map(|w| w.name.as_str())
                .collect();
            json!({ "workspaces": names, "default": app.engine.workspaces.default })
        }
    };
    respond(&headers, json_response(&body))
}

/// The configured default, or with auth on the caller's default (403 if their roles give none).
async fn my_default(
    State(app): State<Arc<App>>,
    access: Option<Extension<Access>>,
    headers: HeaderMap,
) -> Response {
    let r = match access {
        Some(Extension(a)) => match a.workspaces.first() {
            Some(w) => json_response(&json!({ "workspace": w })),
            None => Err(ApiError::Forbidden {
                code: "no_workspace",
                detail: "Your roles give access to no workspace.".into(),
            }),
        },
        None => json_response(&json!({ "workspace": app.engine.workspaces.default })),
    };
    respond(&headers, r)
}

/// `format=arrow|parquet` or an Arrow/Parquet `Accept` header asks for bulk output.
fn bulk_format(
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Result<Option<&'static str>, ApiError> {
    if let Some((_, f)) = query.iter().find(|(k, _)| k == "format") {
        return match f.as_str() {
            "json" => Ok(None),
            "arrow" => Ok(Some("arrow")),
            "parquet" => Ok(Some("parquet")),
            other => Err(ApiError::bad(
                "format",
                format!("Unknown format '{other}': use json, arrow or parquet."),
            )),
        };
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    Ok(if accept.contains("application/vnd.apache.arrow.stream") {
        Some("arrow")
    } else if accept.contains("application/vnd.apache.parquet") {
        Some("parquet")
    } else {
        None
    })
}
