//! `ml-models-index/` and `ml-bad-lumisection/` (with `cert-json/` and `golden-json/`), as the
//! cmsdials 2.4.1 client calls them, with DIALS v1.12's paths and GET parameters as well.
//!
//! A row of `ml-bad-lumisection/` is one (model, dataset, run, lumisection) whose score, the
//! highest over the files that hold it, is above the model's *current* threshold (or that the
//! model flagged itself): editing the threshold changes the answer without re-running anything.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, Int64Array, RecordBatch};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use datafusion::scalar::ScalarValue;
use serde_json::{json, Value};

use dials_ml::cert::{self, Flagged};
use dials_ml::ModelDoc;

use crate::engine::Scan;
use crate::error::ApiError;
use crate::ml::tables::{finished, scores_table};
use crate::params::{self, Conditions, Filter, Op};
use crate::routes::{
    after, batches_to_json, decode_cursor, encode_cursor, json_response, page_size, page_url,
    parse_query, respond, row_key, workspace,
};
use crate::App;

/// The routes (merged into the API's router).
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/ml-models-index/", get(models_list))
        .route("/api/v1/ml-models-index/{id}/", get(models_get))
        .route("/api/v1/ml-bad-lumisection/", get(bad_list))
        .route(
            "/api/v1/ml-bad-lumisection/cert-json/",
            get(cert_get).post(cert_post),
        )
        .route(
            "/api/v1/ml-bad-lumisection/golden-json/",
            get(golden_get).post(golden_post),
        )
        .route("/api/v1/ml-bad-lumisection/{m}/{d}/{r}/{l}/", get(bad_get))
        .route(
            "/api/v1/ml-bad-lumisection/{m}/{d}/{r}/{l}/{me}/",
            get(bad_get_me),
        )
}

/// Rows (highest) that a response may hold for cert/golden JSON.
const MAX_FLAGGED: usize = 1_000_000;

fn ml_error(e: dials_ml::MlError) -> ApiError {
    match e {
        dials_ml::MlError::Store(s) => ApiError::Unavailable(s.to_string()),
        other => ApiError::Internal(other.to_string()),
    }
}

async fn models(app: &App, ws: &str) -> Result<Vec<ModelDoc>, ApiError> {
    dials_ml::registry::list(&app.engine.lake, ws)
        .await
        .map_err(ml_error)
}

fn boolean(param: &str, v: &str) -> Result<bool, ApiError> {
    match v.trim() {
        "True" | "true" | "1" => Ok(true),
        "False" | "false" | "0" => Ok(false),
        _ => Err(ApiError::bad(param, "Must be a valid boolean.")),
    }
}

fn ints(param: &str, v: &str) -> Result<Vec<i64>, ApiError> {
    let items: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.len() > 1000 {
        return Err(ApiError::bad(
            param,
            "Give at most 1000 comma-separated whole numbers.",
        ));
    }
    items.into_iter().map(|s| params::int(param, s)).collect()
}

fn regex(param: &str, v: &str) -> Result<regex::Regex, ApiError> {
    let p = params::user_regex(param, v)?;
    regex::Regex::new(&p)
        .map_err(|e| ApiError::bad(param, format!("Invalid regular expression: {e}")))
}

/// The client's `ml-models-index/` filters, applied to the documents.
fn filter_models(
    mut docs: Vec<ModelDoc>,
    query: &[(String, String)],
) -> Result<Vec<ModelDoc>, ApiError> {
    let (mut tag_name, mut tag_value) = (None, None);
    for (k, v) in query {
        match k.as_str() {
            "id" => {
                let id = params::int(k, v)?;
                docs.retain(|d| d.id == id);
            }
            "id__in" => {
                let ids = ints(k, v)?;
                docs.retain(|d| ids.contains(&d.id));
            }
            "name" => docs.retain(|d| &d.name == v),
            "name__regex" => {
                let re = regex(k, v)?;
                docs.retain(|d| re.is_match(&d.name));
            }
            "active" => {
                let b = boolean(k, v)?;
                docs.retain(|d| d.active == b);
            }
            "ready" => {
                let b = boolean(k, v)?;
                docs.retain(|d| d.ready == b);
            }
            "type" => docs.retain(|d| &d.kind == v),
            "input_signature_contains_me" => {
                docs.retain(|d| d.input_signature.iter().any(|i| &i.me == v))
            }
            "input_signature_contains_me__regex" => {
                let re = regex(k, v)?;
                docs.retain(|d| d.input_signature.iter().any(|i| re.is_match(&i.me)));
            }
            "tag_name" => tag_name = Some(v.clone()),
            "tag_value" => tag_value = Some(v.clone()),
            _ => {}
        }
    }
    if tag_name.is_some() || tag_value.is_some() {
        docs.retain(|d| {
            d.tags.iter().flatten().any(|t| {
                tag_name.as_ref().is_none_or(|n| &t.name == n)
                    && tag_value.as_ref().is_none_or(|v| &t.value == v)
            })
        });
    }
    Ok(docs)
}

fn page_body(next: Value, previous: Value, results: Vec<Value>) -> Result<Response, ApiError> {
    json_response(&json!({ "next": next, "previous": previous, "results": results }))
}

async fn models_list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(q): RawQuery,
) -> Response {
    let r = async {
        let ws = workspace(&app, &headers)?;
        let query = parse_query(q.as_deref().unwrap_or(""));
        let size = page_size(&query)?;
        let mut docs = filter_models(models(&app, &ws).await?, &query)?;
        docs.sort_by_key(|d| d.id);
        let cursor = match query.iter().find(|(k, _)| k == "next_token") {
            Some((_, t)) => Some(decode_cursor(t, 1)?[0]),
            None => None,
        };
        let start = cursor.map_or(0, |c| docs.partition_point(|d| d.id <= c));
        let page: Vec<&ModelDoc> = docs[start..].iter().take(size).collect();
        let next = match page.last() {
            Some(last) if start + size < docs.len() => Value::String(page_url(
                &headers,
                &uri,
                &query,
                Some(&encode_cursor(&[last.id])),
            )),
            _ => Value::Null,
        };
        let previous = match cursor {
            None => Value::Null,
            Some(_) if start <= size => Value::String(page_url(&headers, &uri, &query, None)),
            Some(_) => Value::String(page_url(
                &headers,
                &uri,
                &query,
                Some(&encode_cursor(&[docs[start - size - 1].id])),
            )),
        };
        let results = page
            .iter()
            .map(|d| serde_json::to_value(d).unwrap_or(Value::Null))
            .collect();
        page_body(next, previous, results)
    }
    .await;
    respond(&headers, r)
}

async fn models_get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let r = async {
        let ws = workspace(&app, &headers)?;
        let missing = || ApiError::NotFound("No MLModelsIndex matches the given query.".into());
        let id: i64 = id.parse().map_err(|_| missing())?;
        let doc = models(&app, &ws)
            .await?
            .into_iter()
            .find(|d| d.id == id)
            .ok_or_else(missing)?;
        json_response(&serde_json::to_value(&doc).map_err(|e| ApiError::Internal(e.to_string()))?)
    }
    .await;
    respond(&headers, r)
}

const BAD_FILTERS: &[Filter] = &[
    Filter {
        param: "model_id",
        column: "model_id",
        op: Op::IntEq,
    },
    Filter {
        param: "model_id__in",
        column: "model_id",
        op: Op::IntIn,
    },
    Filter {
        param: "dataset_id",
        column: "dataset_id",
        op: Op::IntEq,
    },
    Filter {
        param: "dataset_id__in",
        column: "dataset_id",
        op: Op::IntIn,
    },
    Filter {
        param: "dataset",
        column: "dataset_id",
        op: Op::NameToId("dataset"),
    },
    Filter {
        param: "dataset__regex",
        column: "dataset",
        op: Op::Regex,
    },
    Filter {
        param: "run_number",
        column: "run_number",
        op: Op::IntEq,
    },
    Filter {
        param: "run_number__in",
        column: "run_number",
        op: Op::IntIn,
    },
    Filter {
        param: "ls_number",
        column: "ls_number",
        op: Op::IntEq,
    },
];

const BAD_PK: &[&str] = &["model_id", "dataset_id", "run_number", "ls_number"];

/// The models a query's ME filters (`me_id`, `me`, `me__regex`) leave: those with such an input.
fn models_by_me(
    mut docs: Vec<ModelDoc>,
    query: &[(String, String)],
) -> Result<Vec<ModelDoc>, ApiError> {
    for (k, v) in query {
        match k.as_str() {
            "me_id" => {
                let id = params::int(k, v)?;
                docs.retain(|d| d.input_signature.iter().any(|i| i.me_id == id));
            }
            "me" => docs.retain(|d| d.input_signature.iter().any(|i| &i.me == v)),
            "me__regex" => {
                let re = regex(k, v)?;
                docs.retain(|d| d.input_signature.iter().any(|i| re.is_match(&i.me)));
            }
            _ => {}
        }
    }
    Ok(docs)
}

/// FROM clause of the bad lumisections of `docs` (scores merged over files) and the condition
/// "bad under the current threshold" bound into `conds`. `None` when there is no model.
fn bad_from(table: &str, docs: &[ModelDoc], conds: &mut Conditions) -> Option<String> {
    if docs.is_empty() {
        return None;
    }
    let ids: Vec<String> = docs.iter().map(|d| d.id.to_string()).collect();
    let mut ors = Vec::new();
    for d in docs {
        if d.builtin_threshold {
            ors.push(format!("(model_id = {} AND flag)", d.id));
        } else if let Some(t) = d.anomaly_threshold {
            let p = conds.bind(ScalarValue::Float64(Some(t)));
            ors.push(format!("(model_id = {} AND metric_value > {p})", d.id));
        }
    }
    if ors.is_empty() {
        return None;
    }
    conds.sql.push(format!("({})", ors.join(" OR ")));
    Some(format!(
        "(SELECT model_id, dataset_id, MAX(dataset) AS dataset, run_number, ls_number, MAX(score) AS metric_value, \
         BOOL_OR(flag) AS flag FROM {table} WHERE model_id IN ({}) GROUP BY model_id, dataset_id, run_number, ls_number) AS b",
        ids.join(", ")
    ))
}

const BAD_COLUMNS: &str =
    "model_id, dataset_id, run_number, ls_number, COALESCE(metric_value, 0.0) AS metric_value";

async fn bad_list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(q): RawQuery,
) -> Response {
    let r = async {
        let ws = workspace(&app, &headers)?;
        let query = parse_query(q.as_deref().unwrap_or(""));
        let size = page_size(&query)?;
        let docs = models_by_me(models(&app, &ws).await?, &query)?;
        let table = scores_table(&app.engine, &ws)?;
        let mut conds = Conditions::default();
        params::apply(BAD_FILTERS, &query, &mut conds, "")?;
        let Some(from) = bad_from(&table, &docs, &mut conds) else {
            return page_body(Value::Null, Value::Null, Vec::new());
        };
        let base = Conditions {
            sql: conds.sql.clone(),
            values: conds.values.clone(),
        };
        let mut cursor = None;
        if let Some((_, t)) = query.iter().find(|(k, _)| k == "next_token") {
            let cur = decode_cursor(t, BAD_PK.len())?;
            let c = after(BAD_PK, &cur, &mut conds);
            conds.sql.push(c);
            cursor = Some(cur);
        }
        let pk = BAD_PK.join(", ");
        let sql = format!(
            "SELECT {BAD_COLUMNS} FROM {from} {} ORDER BY {pk} LIMIT {}",
            conds.where_clause(),
            size + 1
        );
        let batches = app.engine.query_as(&sql, conds.values, Scan::Wide).await?;
        let mut rows = batches_to_json(&batches)?;
        let more = rows.len() > size;
        rows.truncate(size);
        let next = match rows.last() {
            Some(last) if more => {
                let key: Vec<i64> = BAD_PK
                    .iter()
                    .map(|c| last[*c].as_i64().unwrap_or(0))
                    .collect();
                Value::String(page_url(&headers, &uri, &query, Some(&encode_cursor(&key))))
            }
            _ => Value::Null,
        };
        let previous = match cursor {
            None => Value::Null,
            Some(cur) => {
                let mut back = base;
                let c = after(BAD_PK, &cur, &mut back);
                back.sql.push(format!("NOT {c}"));
                let desc: Vec<String> = BAD_PK.iter().map(|c| format!("{c} DESC")).collect();
                let sql = format!(
                    "SELECT {pk} FROM {from} {} ORDER BY {} LIMIT {}",
                    back.where_clause(),
                    desc.join(", "),
                    size + 1
                );
                let keys = app.engine.query(&sql, back.values).await?;
                let mut it = keys
                    .iter()
                    .flat_map(|b| (0..b.num_rows()).map(move |i| (b, i)));
                match it.nth(size) {
                    Some((b, i)) => Value::String(page_url(
                        &headers,
                        &uri,
                        &query,
                        Some(&encode_cursor(&row_key(BAD_PK, b, i)?)),
                    )),
                    None => Value::String(page_url(&headers, &uri, &query, None)),
                }
            }
        };
        page_body(next, previous, rows)
    }
    .await;
    respond(&headers, r)
}

async fn bad_one(
    app: &App,
    headers: &HeaderMap,
    keys: [&str; 4],
    me: Option<&str>,
) -> Result<Response, ApiError> {
    let ws = workspace(app, headers)?;
    let missing = || ApiError::NotFound("No MLBadLumisection matches the given query.".into());
    let k: Vec<i64> = keys
        .iter()
        .map(|s| s.parse::<i64>())
        .collect::<Result<_, _>>()
        .map_err(|_| missing())?;
    let mut docs: Vec<ModelDoc> = models(app, &ws)
        .await?
        .into_iter()
        .filter(|d| d.id == k[0])
        .collect();
    if let Some(me) = me {
        let me: i64 = me.parse().map_err(|_| missing())?;
        docs.retain(|d| d.input_signature.iter().any(|i| i.me_id == me));
    }
    let table = scores_table(&app.engine, &ws)?;
    let mut conds = Conditions::default();
    for (c, v) in BAD_PK.iter().zip(&k) {
        let p = conds.bind(ScalarValue::Int64(Some(*v)));
        conds.sql.push(format!("{c} = {p}"));
    }
    let from = bad_from(&table, &docs, &mut conds).ok_or_else(missing)?;
    let sql = format!(
        "SELECT {BAD_COLUMNS} FROM {from} {} LIMIT 1",
        conds.where_clause()
    );
    let rows = batches_to_json(&app.engine.query_as(&sql, conds.values, Scan::Point).await?)?;
    json_response(&rows.into_iter().next().ok_or_else(missing)?)
}

async fn bad_get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((m, d, r, l)): Path<(String, String, String, String)>,
) -> Response {
    let res = bad_one(&app, &headers, [&m, &d, &r, &l], None).await;
    respond(&headers, res)
}

async fn bad_get_me(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((m, d, r, l, me)): Path<(String, String, String, String, String)>,
) -> Response {
    let res = bad_one(&app, &headers, [&m, &d, &r, &l], Some(&me)).await;
    respond(&headers, res)
}

/// The three lists cert/golden JSON need: models, datasets, runs.
struct CertParams {
    models: Vec<i64>,
    datasets: Vec<i64>,
    runs: Vec<i64>,
}

const CERT_KEYS: [&str; 3] = ["model_id__in", "dataset_id__in", "run_number__in"];

fn required(param: &str) -> ApiError {
    ApiError::bad(param, "This field is required.")
}

/// From a JSON body (client 2.4.1): `{"model_id__in": [..], "dataset_id__in": [..], "run_number__in": [..]}`.
fn cert_params_json(body: &[u8]) -> Result<CertParams, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad("body", format!("JSON parse error - {e}")))?;
    let Value::Object(m) = v else {
        return Err(ApiError::bad("body", "Expected a JSON object."));
    };
    let list = |k: &str| -> Result<Vec<i64>, ApiError> {
        let items = match m.get(k) {
            None | Some(Value::Null) => return Err(required(k)),
            Some(Value::Array(a)) => a.clone(),
            Some(Value::String(s)) => return ints(k, s),
            Some(other) => vec![other.clone()],
        };
        if items.len() > 1000 {
            return Err(ApiError::bad(k, "Give at most 1000 values."));
        }
        items
            .iter()
            .map(|x| match x {
                Value::Number(n) => n
                    .as_i64()
                    .ok_or_else(|| ApiError::bad(k, "A valid integer is required.")),
                Value::String(s) => params::int(k, s),
                _ => Err(ApiError::bad(k, "A valid integer is required.")),
            })
            .collect()
    };
    Ok(CertParams {
        models: list(CERT_KEYS[0])?,
        datasets: list(CERT_KEYS[1])?,
        runs: list(CERT_KEYS[2])?,
    })
}

/// From CSV query parameters (DIALS v1.12).
fn cert_params_query(q: Option<&str>) -> Result<CertParams, ApiError> {
    let query = parse_query(q.unwrap_or(""));
    let list = |k: &str| -> Result<Vec<i64>, ApiError> {
        let v = query
            .iter()
            .rev()
            .find(|(p, _)| p == k)
            .ok_or_else(|| required(k))?;
        ints(k, &v.1)
    };
    Ok(CertParams {
        models: list(CERT_KEYS[0])?,
        datasets: list(CERT_KEYS[1])?,
        runs: list(CERT_KEYS[2])?,
    })
}

/// The flagged rows of the selected models, datasets and runs, with each model's document.
async fn flagged(app: &App, ws: &str, p: &CertParams) -> Result<Vec<Flagged>, ApiError> {
    let all = models(app, ws).await?;
    if let Some(unknown) = p.models.iter().find(|id| !all.iter().any(|d| d.id == **id)) {
        return Err(ApiError::bad(
            "model_id__in",
            format!("Unknown model id {unknown} in workspace '{ws}'."),
        ));
    }
    let docs: Vec<ModelDoc> = all
        .into_iter()
        .filter(|d| p.models.contains(&d.id))
        .collect();
    if p.datasets.is_empty() || p.runs.is_empty() {
        return Ok(Vec::new());
    }
    let table = scores_table(&app.engine, ws)?;
    let mut conds = Conditions::default();
    let Some(from) = bad_from(&table, &docs, &mut conds) else {
        return Ok(Vec::new());
    };
    for (col, vals) in [("dataset_id", &p.datasets), ("run_number", &p.runs)] {
        let ph: Vec<String> = vals
            .iter()
            .map(|v| conds.bind(ScalarValue::Int64(Some(*v))))
            .collect();
        conds.sql.push(format!("{col} IN ({})", ph.join(", ")));
    }
    let sql = format!(
        "SELECT model_id, run_number, ls_number, COALESCE(metric_value, 0.0) AS metric_value FROM {from} {} \
         ORDER BY dataset_id, run_number, ls_number, model_id LIMIT {MAX_FLAGGED}",
        conds.where_clause()
    );
    let mut out = Vec::new();
    for b in app.engine.query(&sql, conds.values).await? {
        let col = |n: &str| {
            b.column_by_name(n)
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned())
        };
        let (Some(m), Some(r), Some(l)) = (col("model_id"), col("run_number"), col("ls_number"))
        else {
            return Err(ApiError::Internal("unexpected ml_scores columns".into()));
        };
        let v = b.column_by_name("metric_value").and_then(|c| {
            c.as_any()
                .downcast_ref::<arrow::array::Float64Array>()
                .cloned()
        });
        for i in 0..b.num_rows() {
            let Some(doc) = docs.iter().find(|d| d.id == m.value(i)) else {
                continue;
            };
            let first = doc.input_signature.first();
            out.push(Flagged {
                model_id: doc.id,
                run_number: r.value(i),
                ls_number: l.value(i),
                me_id: first.map_or(0, |x| x.me_id),
                me: first.map(|x| x.me.clone()).unwrap_or_default(),
                filename: doc.filename.clone(),
                metric_value: v
                    .as_ref()
                    .map_or(0.0, |v| if v.is_null(i) { 0.0 } else { v.value(i) }),
            });
        }
    }
    Ok(out)
}

async fn cert(
    app: &App,
    headers: &HeaderMap,
    p: Result<CertParams, ApiError>,
) -> Result<Response, ApiError> {
    let ws = workspace(app, headers)?;
    let p = p?;
    let rows = flagged(app, &ws, &p).await?;
    json_response(&cert::cert_json(&p.runs, &rows))
}

async fn golden(
    app: &App,
    headers: &HeaderMap,
    p: Result<CertParams, ApiError>,
) -> Result<Response, ApiError> {
    let ws = workspace(app, headers)?;
    let p = p?;
    let rows = flagged(app, &ws, &p).await?;
    let mut bad: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    for f in &rows {
        bad.entry(f.run_number).or_default().insert(f.ls_number);
    }
    let mut all: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    if !p.datasets.is_empty() && !p.runs.is_empty() {
        let fin = finished(&app.engine, &ws).await?;
        let mut conds = Conditions::default();
        for (col, vals) in [("dataset_id", &p.datasets), ("run_number", &p.runs)] {
            let ph: Vec<String> = vals
                .iter()
                .map(|v| conds.bind(ScalarValue::Int64(Some(*v))))
                .collect();
            conds.sql.push(format!("{col} IN ({})", ph.join(", ")));
        }
        conds.sql.push(format!("file_id IN {fin}"));
        let sql = format!(
            "SELECT DISTINCT run_number, ls_number FROM {} {}",
            app.engine.table(&ws, "lumisection_index"),
            conds.where_clause()
        );
        for b in app.engine.query(&sql, conds.values).await? {
            let keys = |b: &RecordBatch, i: usize| row_key(&["run_number", "ls_number"], b, i);
            for i in 0..b.num_rows() {
                let k = keys(&b, i)?;
                all.entry(k[0]).or_default().insert(k[1]);
            }
        }
    }
    json_response(&cert::golden_json(&p.runs, &all, &bad))
}

async fn cert_post(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let r = cert(&app, &headers, cert_params_json(&body)).await;
    respond(&headers, r)
}

async fn cert_get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let r = cert(&app, &headers, cert_params_query(q.as_deref())).await;
    respond(&headers, r)
}

async fn golden_post(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let r = golden(&app, &headers, cert_params_json(&body)).await;
    respond(&headers, r)
}

async fn golden_get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let r = golden(&app, &headers, cert_params_query(q.as_deref())).await;
    respond(&headers, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_parameters_are_required_and_typed() {
        assert!(cert_params_json(
            br#"{"model_id__in":[1],"dataset_id__in":[2],"run_number__in":[3]}"#
        )
        .is_ok());
        for bad in [
            &br#"{"model_id__in":[1],"dataset_id__in":[2]}"#[..],
            br#"{"model_id__in":["x"],"dataset_id__in":[2],"run_number__in":[3]}"#,
            b"nope",
            b"[]",
        ] {
            let e = cert_params_json(bad).err().expect("400");
            assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
        }
        assert!(
            cert_params_query(Some("model_id__in=1,2&dataset_id__in=3&run_number__in=4")).is_ok()
        );
        assert!(cert_params_query(Some("model_id__in=1")).is_err());
        assert!(cert_params_query(None).is_err());
    }
}
