//! Issue 15 (API): responses fit the deployed path, pagination never skips rows, caches key on the
//! workspace, a Workspace header is never ignored, lakes written before `seq` stay readable.
//! Lakes are ingested from ROOT-written fixtures (tests/fixtures/data).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use dials_api::budget::{self, TRUNCATED_HEADER};
use dials_api::{router, App, Engine};
use dials_dqmio::LocalFile;
use dials_lake::{ingest, IngestRequest, Location, Workspaces};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data")
}

fn lfn(run_path: &str, name: &str) -> String {
    format!("/store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/{run_path}/00000/{name}.root")
}

async fn lake(name: &str, files: &[(&str, String)]) -> (PathBuf, Location, Workspaces) {
    let dir =
        std::env::temp_dir().join(format!("dials-api-hardening-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    let ws = Workspaces::from_json(r#"{"default":"all","workspaces":[{"name":"all"},{"name":"tracker","me_prefixes":["PixelPhase1/"]}]}"#)
        .expect("config");
    for (fx, lfn) in files {
        let req = IngestRequest {
            logical_file_name: lfn.clone(),
            dataset: None,
            deadline: None,
        };
        ingest(
            &lake,
            &ws,
            &req,
            Arc::new(LocalFile::open(fixtures().join(fx)).expect("fx")),
            None,
        )
        .await
        .expect("ingest");
    }
    (dir, lake, ws)
}

async fn app_of(lake: &Location, ws: Workspaces) -> axum::Router {
    router(Arc::new(App {
        engine: Engine::new(lake, ws).await.expect("engine"),
    }))
}

struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

async fn get(app: &axum::Router, uri: &str, headers: &[(&str, &[u8])]) -> Got {
    let mut req = Request::builder().uri(uri).header("host", "dials.test");
    for (k, v) in headers {
        req = req.header(
            *k,
            axum::http::HeaderValue::from_bytes(v).expect("header value"),
        );
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("req"))
        .await
        .expect("call");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Got {
        status,
        headers,
        body,
    }
}

fn local(url: &str) -> String {
    url.trim_start_matches("http://dials.test").to_string()
}

/// Follows `next` from `uri`; returns every page.
async fn pages(app: &axum::Router, uri: &str) -> Vec<Got> {
    let mut out = Vec::new();
    let mut uri = uri.to_string();
    loop {
        let g = get(app, &uri, &[]).await;
        assert_eq!(
            g.status,
            StatusCode::OK,
            "{uri}: {}",
            String::from_utf8_lossy(&g.body[..g.body.len().min(300)])
        );
        let next = g.json()["next"].as_str().map(local);
        out.push(g);
        match next {
            Some(n) => uri = n,
            None => return out,
        }
        assert!(out.len() < 1000, "paging does not end");
    }
}

/// What ROOT reports per row of th2_50x50.root: (ls, me) → (entries, sum of bins).
fn th2_summary() -> BTreeMap<(i64, String), (i64, f64)> {
    let text =
        std::fs::read_to_string(fixtures().join("th2_50x50.summary.jsonl")).expect("summary");
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json");
            (
                (
                    v["ls_number"].as_i64().expect("ls"),
                    v["me"].as_str().expect("me").to_string(),
                ),
                (
                    v["entries"].as_i64().expect("n"),
                    v["data_sum"].as_f64().expect("sum"),
                ),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn th2_pages_of_large_histograms_fit_the_budget_and_lose_no_row() {
    let (_, lake, ws) = lake("th2big", &[("th2_50x50.root", lfn("380/310", "big"))]).await;
    let app = app_of(&lake, ws).await;
    let want = th2_summary();
    assert_eq!(want.len(), 600);
    let got = pages(&app, "/api/v1/th2/?page_size=500").await;
    let mut seen = BTreeMap::new();
    let mut cut = 0;
    for (i, p) in got.iter().enumerate() {
        let wire = budget::text_wire_len(&p.body);
        eprintln!(
            "th2 page {i}: {} bytes, {wire} on the wire, {} rows",
            p.body.len(),
            p.json()["results"].as_array().map_or(0, Vec::len)
        );
        assert!(
            wire <= budget::DEFAULT_MAX_BYTES,
            "page {i}: {wire} bytes on the wire (limit {})",
            budget::DEFAULT_MAX_BYTES
        );
        let v = p.json();
        let rows = v["results"].as_array().expect("results");
        if rows.len() < 500 && v["next"].is_string() {
            cut += 1;
            assert!(
                p.headers.get(TRUNCATED_HEADER).is_some(),
                "a page cut by the budget says so"
            );
        }
        for r in rows {
            let sum: f64 = r["data"]
                .as_array()
                .expect("rows")
                .iter()
                .flat_map(|row| {
                    row.as_array()
                        .expect("row")
                        .iter()
                        .map(|x| x.as_f64().expect("f64"))
                })
                .sum();
            let key = (
                r["ls_number"].as_i64().expect("ls"),
                r["me"].as_str().expect("me").to_string(),
            );
            assert!(
                seen.insert(key, (r["entries"].as_i64().expect("entries"), sum))
                    .is_none(),
                "row twice"
            );
        }
    }
    assert!(
        cut >= 1,
        "a 500-row page of 50x50 histograms does not fit: it is cut"
    );
    assert_eq!(seen.len(), 600, "no row lost across pages");
    for (k, (n, sum)) in &want {
        let (gn, gsum) = seen[k];
        assert_eq!(gn, *n, "{k:?} entries");
        assert!(
            (gsum - sum).abs() < 1e-9 * sum.abs().max(1.0),
            "{k:?} bin sum {gsum} != {sum}"
        );
    }
}

/// (ls_number, me) of every row of `batches`.
fn batch_keys(batches: impl IntoIterator<Item = arrow::array::RecordBatch>) -> Vec<(i64, String)> {
    use arrow::array::{AsArray, Int64Array};
    let mut out = Vec::new();
    for b in batches {
        let ls = b
            .column_by_name("ls_number")
            .expect("ls")
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("i64")
            .clone();
        let me = b
            .column_by_name("me")
            .expect("me")
            .as_string::<i32>()
            .clone();
        assert!(
            b.column_by_name("seq").is_none(),
            "exports hold the API's columns"
        );
        out.extend((0..b.num_rows()).map(|i| (ls.value(i), me.value(i).to_string())));
    }
    out
}

/// Reads an Arrow IPC stream body: (ls_number, me) of every row.
fn arrow_keys(body: &[u8]) -> Vec<(i64, String)> {
    let r = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
        .expect("arrow stream");
    batch_keys(r.map(|b| b.expect("batch")))
}

fn next_link(h: &HeaderMap) -> Option<String> {
    let v = h.get("link")?.to_str().ok()?;
    let url = v.strip_prefix('<')?.split_once(">; rel=\"next\"")?.0;
    Some(local(url))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_exports_paginate_with_a_next_link_and_lose_no_row() {
    let (_, lake, ws) = lake("bulk", &[("th2_50x50.root", lfn("380/310", "big"))]).await;
    let app = app_of(&lake, ws).await;
    for fmt in ["arrow", "parquet"] {
        let mut uri = format!("/api/v1/th2/?format={fmt}");
        let mut keys = Vec::new();
        let mut n_pages = 0;
        loop {
            let g = get(&app, &uri, &[]).await;
            assert_eq!(g.status, StatusCode::OK, "{uri}");
            let wire = budget::binary_wire_len(g.body.len());
            assert!(
                wire <= budget::DEFAULT_MAX_BYTES,
                "{fmt} page {n_pages}: {wire} bytes base64"
            );
            n_pages += 1;
            if fmt == "arrow" {
                keys.extend(arrow_keys(&g.body));
            } else {
                let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                    bytes::Bytes::from(g.body.clone()),
                )
                .expect("parquet")
                .build()
                .expect("reader");
                keys.extend(batch_keys(r.map(|b| b.expect("batch"))));
            }
            match next_link(&g.headers) {
                Some(n) => {
                    assert!(
                        g.headers.get(TRUNCATED_HEADER).is_some(),
                        "a cut export says so"
                    );
                    uri = n;
                }
                None => break,
            }
            assert!(n_pages < 100);
        }
        assert!(
            n_pages >= 3,
            "{fmt}: ~12 MB of bins need several pages, got {n_pages}"
        );
        let n = keys.len();
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!((n, sorted.len()), (600, 600), "{fmt}: every row once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_one_row_at_a_time_over_a_repeated_me_returns_every_row() {
    let (_, lake, ws) = lake(
        "repeat",
        &[
            ("repeat_me.root", lfn("380/400", "rep")),
            ("repeat_me.root", lfn("380/400", "rep2")),
        ],
    )
    .await;
    let app = app_of(&lake, ws).await;
    for (table, me, per_file) in [
        ("th1", "PixelPhase1/Repeat/charge_repeated", 8usize),
        ("th2", "PixelPhase1/Repeat/occupancy_repeated", 4),
    ] {
        let base = format!(
            "/api/v1/{table}/?run_number=380400&ls_number=1&me={}",
            url::form_urlencoded::byte_serialize(me.as_bytes()).collect::<String>()
        );
        let all = get(&app, &format!("{base}&page_size=500"), &[])
            .await
            .json();
        let all: Vec<i64> = all["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| r["entries"].as_i64().expect("entries"))
            .collect();
        assert_eq!(all.len(), 2 * per_file, "{table}: one page holds every row");
        for size in [1, 3] {
            let got: Vec<i64> = pages(&app, &format!("{base}&page_size={size}"))
                .await
                .iter()
                .flat_map(|p| {
                    p.json()["results"]
                        .as_array()
                        .expect("results")
                        .iter()
                        .map(|r| r["entries"].as_i64().expect("entries"))
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(
                got, all,
                "{table}, pages of {size}: the same rows in the same order"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_key_on_workspace_and_a_given_workspace_is_never_ignored() {
    let (_, lake, ws) = lake("vary", &[("small_zlib.root", lfn("380/310", "a"))]).await;
    let app = app_of(&lake, ws).await;
    let g = get(
        &app,
        "/api/v1/th1/?page_size=3",
        &[("Workspace", b"tracker")],
    )
    .await;
    assert_eq!(g.status, StatusCode::OK);
    let vary = g
        .headers
        .get("vary")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(
        vary.contains("workspace") && vary.contains("accept"),
        "Vary: {vary:?}"
    );
    let etag = g.headers.get("etag").expect("etag").as_bytes().to_vec();
    let g = get(
        &app,
        "/api/v1/th1/?page_size=3",
        &[("Workspace", b"tracker"), ("If-None-Match", &etag)],
    )
    .await;
    assert_eq!(g.status, StatusCode::NOT_MODIFIED);
    assert!(g.headers.get("vary").is_some(), "a 304 carries Vary too");
    // A non-ASCII name that is no workspace: 404, not the default workspace's rows.
    let g = get(
        &app,
        "/api/v1/th1/",
        &[("Workspace", "tracker\u{e9}".as_bytes())],
    )
    .await;
    assert_eq!(
        g.status,
        StatusCode::NOT_FOUND,
        "{}",
        String::from_utf8_lossy(&g.body)
    );
    assert_eq!(g.json()["detail"], "Workspace 'tracker\u{e9}' not found");
    // Bytes that are not UTF-8 at all: 400 naming the header.
    let g = get(&app, "/api/v1/run/", &[("Workspace", b"tr\xffck")]).await;
    assert_eq!(
        g.status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&g.body)
    );
    assert!(g.json()["Workspace"].is_array());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_written_before_seq_is_still_served() {
    let (dir, lake, ws) = lake("noseq", &[("small_zlib.root", lfn("380/310", "a"))]).await;
    // Replace every th1 object by a copy without the `seq` column, as the previous lake format had
    // them (one Delta commit: old objects out, copies in).
    let mut rewritten = 0;
    let mut table = dials_lake::delta::open(&lake, "all", "th1")
        .await
        .expect("log")
        .expect("table");
    let mut actions = Vec::new();
    for f in dials_lake::delta::active_files(&table).expect("files") {
        let path = dir.join("all/th1").join(&f.path);
        let bytes = bytes::Bytes::from(std::fs::read(&path).expect("read"));
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .expect("pq")
            .build()
            .expect("r");
        let batches: Vec<_> = reader.map(|b| b.expect("batch")).collect();
        let idx: Vec<usize> = (0..batches[0].num_columns())
            .filter(|i| batches[0].schema().field(*i).name() != "seq")
            .collect();
        let mut out = Vec::new();
        let schema = Arc::new(batches[0].schema().project(&idx).expect("project"));
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, None).expect("w");
        for b in &batches {
            w.write(&b.project(&idx).expect("p")).expect("write");
        }
        w.close().expect("close");
        let rel = f.path.replace(".parquet", "-noseq.parquet");
        std::fs::write(dir.join("all/th1").join(&rel), &out).expect("write copy");
        let run = f
            .partition_values
            .get("run_number")
            .cloned()
            .flatten()
            .expect("run");
        actions.push(deltalake_core::kernel::Action::Remove(
            dials_lake::delta::remove(&f),
        ));
        actions.push(deltalake_core::kernel::Action::Add(dials_lake::delta::add(
            rel,
            out.len() as u64,
            &[("run_number", run)],
            None,
        )));
        rewritten += 1;
    }
    dials_lake::delta::commit(&mut table, actions, None, &["run_number"])
        .await
        .expect("commit");
    assert!(rewritten > 0);
    let app = app_of(&lake, ws).await;
    let all = pages(&app, "/api/v1/th1/").await;
    let n: usize = all
        .iter()
        .map(|p| p.json()["results"].as_array().expect("results").len())
        .sum();
    assert_eq!(
        n, 40,
        "every row of the old-format objects, over pages of 10"
    );
    let g = get(&app, "/api/v1/th1/?format=arrow", &[]).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(arrow_keys(&g.body).len(), 40);
}
