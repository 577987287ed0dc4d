//! The ME-major copy of `th1`/`th2` (written by compaction) answers ME queries exactly as the
//! tables do: before and after compaction, and while a copy is stale (a file ingested again after
//! compaction) its run is read from the table, never from the copy. One test in this binary: it
//! reads the process-wide count of scans that used a copy.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use dials_api::{router, App, Engine};
use dials_dqmio::LocalFile;
use dials_lake::compact::{self, CompactOptions};
use dials_lake::{ingest, IngestRequest, Location, Workspaces};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data")
}

fn lfn(i: usize) -> String {
    format!("/store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/m{i}.root")
}

async fn new_lake(name: &str, files: &[&str]) -> Location {
    let dir = std::env::temp_dir().join(format!("dials-api-memajor-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    for (i, fx) in files.iter().enumerate() {
        ingest_one(&lake, i, fx).await;
    }
    lake
}

async fn ingest_one(lake: &Location, i: usize, fixture: &str) {
    let req = IngestRequest {
        logical_file_name: lfn(i),
        dataset: None,
        deadline: None,
    };
    ingest(
        lake,
        &Workspaces::default(),
        &req,
        Arc::new(LocalFile::open(fixtures().join(fixture)).expect("fx")),
        None,
    )
    .await
    .expect("ingest");
}

/// A router over the lake as it is now (a new engine: its first request reads every log).
async fn app(lake: &Location) -> axum::Router {
    router(Arc::new(App {
        engine: Engine::new(lake, Workspaces::default())
            .await
            .expect("engine"),
    }))
}

/// Every row of `uri` over all its pages, sorted.
async fn rows(app: &axum::Router, uri: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut uri = uri.to_string();
    loop {
        let req = Request::builder()
            .uri(&uri)
            .header("host", "dials.test")
            .body(Body::empty())
            .expect("req");
        let resp = app.clone().oneshot(req).await.expect("call");
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
        let v: Value =
            serde_json::from_slice(&resp.into_body().collect().await.expect("body").to_bytes())
                .expect("json");
        out.extend(v["results"].as_array().cloned().unwrap_or_default());
        match v["next"].as_str() {
            Some(n) => uri = n.trim_start_matches("http://dials.test").to_string(),
            None => break,
        }
    }
    out.sort_by_key(|r| r.to_string());
    out
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The ME queries compared: per table, one ME × one run, the ME across all runs, two MEs by id.
async fn answers(app: &axum::Router, mes: &[(String, String, i64)]) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for (table, me, id) in mes {
        out.push(
            rows(
                app,
                &format!(
                    "/api/v1/{table}/?me={}&run_number=380310&page_size=50",
                    enc(me)
                ),
            )
            .await,
        );
        out.push(
            rows(
                app,
                &format!("/api/v1/{table}/?me={}&page_size=50", enc(me)),
            )
            .await,
        );
        out.push(rows(app, &format!("/api/v1/{table}/?me_id={id}&page_size=50")).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_queries_read_current_copies_and_never_stale_ones() {
    let files = ["small_zlib.root", "small_lz4.root", "small_zstd.root"];
    let lake = new_lake("a", &files).await;
    // One ME of each table that has rows in run 380310.
    let before_app = app(&lake).await;
    let mut mes = Vec::new();
    for table in ["th1", "th2"] {
        let some = rows(
            &before_app,
            &format!("/api/v1/{table}/?run_number=380310&page_size=5"),
        )
        .await;
        let r = some.first().unwrap_or_else(|| panic!("{table} has rows"));
        mes.push((
            table.to_string(),
            r["me"].as_str().expect("me").to_string(),
            r["me_id"].as_i64().expect("me_id"),
        ));
    }
    let scans = dials_api::pruned::copy_scans();
    let before = answers(&before_app, &mes).await;
    assert!(before.iter().all(|a| !a.is_empty()), "every query has rows");
    assert_eq!(
        dials_api::pruned::copy_scans(),
        scans,
        "no copy before compaction"
    );

    let report = compact::compact_lake(
        &lake,
        &["default".to_string()],
        CompactOptions {
            min_objects: 2,
            ..Default::default()
        },
    )
    .await
    .expect("compact");
    assert!(
        report
            .iter()
            .filter(|t| t.table == "th1" || t.table == "th2")
            .all(|t| t.copies >= 1),
        "{report:?}"
    );
    let compacted = app(&lake).await;
    let scans = dials_api::pruned::copy_scans();
    assert_eq!(
        answers(&compacted, &mes).await,
        before,
        "the same answers from the copy"
    );
    assert!(
        dials_api::pruned::copy_scans() >= scans + 6,
        "every ME query read the copy"
    );
    // A query that pins the lumisection reads the table, not the copy.
    let scans = dials_api::pruned::copy_scans();
    let one_ls = rows(
        &compacted,
        &format!(
            "/api/v1/th1/?me={}&run_number=380310&ls_number=1",
            enc(&mes[0].1)
        ),
    )
    .await;
    assert_eq!(
        dials_api::pruned::copy_scans(),
        scans,
        "ls_number pinned: no copy"
    );
    assert!(!one_ls.is_empty());

    // File 1 again as another version, no compaction: its runs' copies are stale.
    ingest_one(&lake, 1, "tiny_none.root").await;
    let stale = answers(&app(&lake).await, &mes).await;
    // The same lake never compacted (file 1 in its second version from the start).
    let reference = new_lake(
        "b",
        &["small_zlib.root", "tiny_none.root", "small_zstd.root"],
    )
    .await;
    let expected = answers(&app(&reference).await, &mes).await;
    assert_eq!(stale, expected, "a stale copy is never read");
    assert_ne!(stale, before, "the re-ingest changed the answers");
    // Compacted again: current copies, the same answers, read from the copy.
    compact::compact_lake(
        &lake,
        &["default".to_string()],
        CompactOptions {
            min_objects: 2,
            ..Default::default()
        },
    )
    .await
    .expect("compact");
    let scans = dials_api::pruned::copy_scans();
    assert_eq!(answers(&app(&lake).await, &mes).await, expected);
    assert!(
        dials_api::pruned::copy_scans() >= scans + 6,
        "current copies are read again"
    );
}
