//! Every endpoint and filter through the real router, on a lake ingested from the ROOT fixtures;
//! pagination across pages; a bad-input suite that must never produce a 5xx.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use dials_api::{router, App, Engine};
use dials_dqmio::LocalFile;
use dials_lake::{ingest, IngestRequest, Location, Workspaces};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

const ZB: &str = "/ZeroBias/Run2024C-PromptReco-v1/DQMIO";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data")
}

async fn app(name: &str) -> axum::Router {
    let dir = std::env::temp_dir().join(format!("dials-api-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    let ws = Workspaces::from_json(
        r#"{"default":"all","workspaces":[{"name":"all"},{"name":"tracker","datasets":["/ZeroBias/*"],"me_prefixes":["PixelPhase1/"]}]}"#,
    )
    .expect("config");
    for (i, (primary, fx)) in [
        ("ZeroBias", "small_zlib.root"),
        ("ZeroBias", "small_lz4.root"),
        ("JetMET0", "small_zstd.root"),
    ]
    .iter()
    .enumerate()
    {
        let req = IngestRequest {
            logical_file_name: format!(
                "/store/data/Run2024C/{primary}/DQMIO/PromptReco-v1/000/380/310/00000/f{i}.root"
            ),
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
    router(Arc::new(App {
        engine: Engine::new(&lake, ws).await.expect("engine"),
    }))
}

async fn call(app: &axum::Router, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut req = Request::builder().uri(uri).header("host", "dials.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("req"))
        .await
        .expect("call");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::String(format!("<{} bytes>", bytes.len())))
    };
    (status, v)
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_filters_and_pagination() {
    let app = app("endpoints").await;
    // th1: all rows of one dataset over pages of 7, following `next` exactly as cmsdials does.
    let mut uri = format!("/api/v1/th1/?dataset={}&page_size=7", enc(ZB));
    let mut rows = Vec::new();
    let mut pages = 0;
    let mut page_results: Vec<Value> = Vec::new();
    loop {
        let (s, v) = call(&app, &uri, &[]).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        // `previous` leads back to exactly the page before (null on the first page).
        match (pages, v["previous"].as_str()) {
            (0, p) => assert!(p.is_none(), "first page has no previous: {p:?}"),
            (_, None) => panic!("page {pages} has no previous link"),
            (_, Some(prev)) => {
                assert!(prev.starts_with("http://dials.test/api/v1/th1/?"), "{prev}");
                let (s, back) = call(&app, prev.trim_start_matches("http://dials.test"), &[]).await;
                assert_eq!(s, StatusCode::OK);
                assert_eq!(
                    back["results"],
                    page_results[pages - 1],
                    "previous of page {pages}"
                );
                assert_eq!(
                    back["next"]
                        .as_str()
                        .map(|n| n.trim_start_matches("http://dials.test").to_string()),
                    Some(uri.clone())
                );
            }
        }
        page_results.push(v["results"].clone());
        rows.extend(v["results"].as_array().expect("results").clone());
        pages += 1;
        match v["next"].as_str() {
            None => break,
            Some(next) => {
                assert!(next.starts_with("http://dials.test/api/v1/th1/?"), "{next}");
                assert!(next.contains("next_token="));
                uri = next.trim_start_matches("http://dials.test").to_string();
            }
        }
    }
    assert_eq!(rows.len(), 2 * 40, "two ZeroBias files x 40 TH1 rows");
    assert!(pages >= 12);
    let keys: Vec<(i64, i64, i64, i64, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["dataset_id"].as_i64().unwrap(),
                r["run_number"].as_i64().unwrap(),
                r["ls_number"].as_i64().unwrap(),
                r["me_id"].as_i64().unwrap(),
                r["file_id"].as_i64().unwrap(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        keys, sorted,
        "stable primary-key order, no duplicates across pages"
    );

    // Filters.
    let (_, v) = call(
        &app,
        "/api/v1/th1/?run_number=380311&ls_number__gte=2&ls_numbet__lte=3&page_size=500",
        &[],
    )
    .await;
    assert!(v["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["run_number"] == 380311 && r["ls_number"].as_i64().unwrap() >= 2));
    let (_, v) = call(&app, "/api/v1/th2/?me__regex=Occupancy&page_size=500", &[]).await;
    let th2 = v["results"].as_array().unwrap();
    assert!(
        !th2.is_empty()
            && th2
                .iter()
                .all(|r| r["me"].as_str().unwrap().contains("Occupancy"))
    );
    assert!(th2[0]["data"][0].is_array(), "2D data as rows");
    let me = th2[0]["me"].as_str().unwrap();
    let (_, v) = call(
        &app,
        &format!("/api/v1/th2/?me={}&page_size=500", enc(me)),
        &[],
    )
    .await;
    assert!(v["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["me"] == me));
    let (_, v) = call(
        &app,
        "/api/v1/th1/?logical_file_name__regex=f1%5C.root%24&page_size=500",
        &[],
    )
    .await;
    assert_eq!(v["results"].as_array().unwrap().len(), 40);
    let (_, v) = call(&app, "/api/v1/th1/?entries__gte=1000000&page_size=500", &[]).await;
    assert_eq!(v["results"].as_array().unwrap().len(), 0);
    // Composite-key get.
    let r0 = &rows[0];
    let (s, v) = call(
        &app,
        &format!(
            "/api/v1/th1/{}/{}/{}/{}/",
            r0["dataset_id"], r0["run_number"], r0["ls_number"], r0["me_id"]
        ),
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["me"], r0["me"]);
    let (s, v) = call(&app, "/api/v1/th1/1/2/3/4/", &[]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(v["detail"].is_string());

    // Runs, lumisections, counts, files, datasets, MEs.
    let (_, v) = call(&app, "/api/v1/run/", &[]).await;
    assert_eq!(v["results"].as_array().unwrap().len(), 4);
    assert!(v["results"][0]
        .as_object()
        .unwrap()
        .contains_key("ls_completeness"));
    let (_, v) = call(
        &app,
        &format!("/api/v1/run/count/?dataset={}", enc(ZB)),
        &[],
    )
    .await;
    assert_eq!(v["count"], 2);
    let (_, v) = call(&app, "/api/v1/lumisection/count/", &[]).await;
    assert_eq!(v["count"], 12);
    let (_, v) = call(&app, "/api/v1/file-index/count/?status=FINISHED", &[]).await;
    assert_eq!(v["count"], 3);
    let (_, v) = call(&app, "/api/v1/dataset-index/?dataset__regex=JetMET", &[]).await;
    assert_eq!(v["results"][0]["primary_ds_name"], "JetMET0");
    let (_, v) = call(&app, "/api/v1/mes/?dim=2", &[]).await;
    let mes = v.as_array().expect("bare array");
    assert!(!mes.is_empty() && mes.iter().all(|m| m["dim"] == 2));
    let (_, v) = call(
        &app,
        &format!("/api/v1/mes/{}/{}/", r0["dataset_id"], r0["run_number"]),
        &[],
    )
    .await;
    assert!(!v.as_array().unwrap().is_empty());
    // Workspaces.
    let (_, v) = call(
        &app,
        "/api/v1/th2/?page_size=500",
        &[("Workspace", "TRACKER")],
    )
    .await;
    assert!(v["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["me"].as_str().unwrap().starts_with("PixelPhase1/")));
    let (_, v) = call(&app, "/api/v1/workspaces/my-default/", &[]).await;
    assert_eq!(v["workspace"], "all");
    // Bulk formats.
    let (s, _) = call(&app, "/api/v1/th1/?run_number=380310&format=arrow", &[]).await;
    assert_eq!(s, StatusCode::OK);
    // ETag round trip.
    let resp = app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/api/v1/run/")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let etag = resp.headers()["etag"].clone();
    let resp = app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/api/v1/run/")
                .header("if-none-match", etag)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_4xx_json_never_5xx() {
    let app = app("bad").await;
    let cases: &[(&str, StatusCode)] = &[
        ("/api/v1/th1/?run_number=abc", StatusCode::BAD_REQUEST),
        (
            "/api/v1/th1/?run_number=99999999999999999999999",
            StatusCode::BAD_REQUEST,
        ),
        ("/api/v1/th1/?me__regex=(", StatusCode::BAD_REQUEST),
        (
            "/api/v1/th1/?me__regex=a%7B1000%7D%7B1000%7D%7B1000%7D",
            StatusCode::BAD_REQUEST,
        ),
        ("/api/v1/th1/?page_size=0", StatusCode::BAD_REQUEST),
        ("/api/v1/th1/?page_size=-5", StatusCode::BAD_REQUEST),
        ("/api/v1/th1/?next_token=%%%", StatusCode::BAD_REQUEST),
        (
            "/api/v1/th1/?next_token=bm90LWEtY3Vyc29y",
            StatusCode::BAD_REQUEST,
        ),
        ("/api/v1/run/?dataset_id__in=1,x", StatusCode::BAD_REQUEST),
        ("/api/v1/th1/?format=xml", StatusCode::BAD_REQUEST),
        ("/api/v1/run/?format=arrow", StatusCode::NOT_ACCEPTABLE),
        ("/api/v1/th1/abc/1/2/3/", StatusCode::NOT_FOUND),
        ("/api/v1/run/1/2/", StatusCode::NOT_FOUND),
        ("/api/v1/mes/999/", StatusCode::NOT_FOUND),
        ("/api/v1/nope/", StatusCode::NOT_FOUND),
        ("/api/v1/file-index/?min_size=1e9", StatusCode::BAD_REQUEST),
    ];
    for (uri, want) in cases {
        let (s, v) = call(&app, uri, &[]).await;
        assert_eq!(s, *want, "{uri}: {v}");
        assert!(v.is_object(), "{uri}: JSON body");
    }
    let (s, v) = call(&app, "/api/v1/run/", &[("Workspace", "nosuch")]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["detail"], "Workspace 'nosuch' not found");
    // page_size 10^6 is capped at 500 (DIALS), not an error.
    let (s, v) = call(&app, "/api/v1/th1/?page_size=1000000", &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["results"].as_array().unwrap().len() <= 500);
    // SQL-looking input is just a value.
    let (s, v) = call(&app, "/api/v1/th1/?me=%27%3B%20DROP%20TABLE%20x%3B--", &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["results"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_is_stable_while_files_are_ingested_and_new_files_appear() {
    // Listings are cached for DIALS_LISTING_TTL_MS; a short TTL keeps the test quick.
    std::env::set_var("DIALS_LISTING_TTL_MS", "200");
    let dir =
        std::env::temp_dir().join(format!("dials-api-test-{}-concurrent", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    let ws = Workspaces::default();
    let lfn = |i: usize| {
        format!("/store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/c{i}.root")
    };
    let ingest_one = |i: usize| {
        let (lake, ws) = (lake.clone(), ws.clone());
        async move {
            let req = IngestRequest {
                logical_file_name: lfn(i),
                dataset: None,
                deadline: None,
            };
            ingest(
                &lake,
                &ws,
                &req,
                Arc::new(LocalFile::open(fixtures().join("small_zlib.root")).expect("fx")),
                None,
            )
            .await
            .expect("ingest");
        }
    };
    ingest_one(0).await;
    let app = router(Arc::new(App {
        engine: Engine::new(&lake, ws.clone()).await.expect("engine"),
    }));
    let mut uri = "/api/v1/th1/?page_size=7".to_string();
    let mut keys = Vec::new();
    let mut page = 0;
    loop {
        let (s, v) = call(&app, &uri, &[]).await;
        assert_eq!(s, StatusCode::OK);
        for r in v["results"].as_array().unwrap() {
            keys.push((
                r["run_number"].as_i64().unwrap(),
                r["ls_number"].as_i64().unwrap(),
                r["me_id"].as_i64().unwrap(),
                r["file_id"].as_i64().unwrap(),
            ));
        }
        page += 1;
        if page == 2 {
            ingest_one(1).await; // a second file lands while a client is paging
        }
        match v["next"].as_str() {
            Some(n) => uri = n.trim_start_matches("http://dials.test").to_string(),
            None => break,
        }
    }
    let mut dedup = keys.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), keys.len(), "no row twice across pages");
    assert!(keys.len() >= 40, "every row of the first file");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let (_, v) = call(&app, "/api/v1/file-index/count/?status=FINISHED", &[]).await;
    assert_eq!(v["count"], 2, "a new file is visible after the listing TTL");
    let (_, v) = call(&app, "/api/v1/th1/?page_size=500", &[]).await;
    assert_eq!(v["results"].as_array().unwrap().len(), 80);
}

/// Every response says where its time went (`Server-Timing`): a histogram page runs queries, so
/// its planning and execution are there and add up to no more than the total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_carry_server_timing() {
    let app = app("server-timing").await;
    let dur = |header: &str, name: &str| -> f64 {
        let part = header
            .split(',')
            .map(str::trim)
            .find(|p| p.starts_with(&format!("{name};")))
            .unwrap_or_else(|| panic!("no {name} in {header}"));
        let d = part
            .split(';')
            .find_map(|kv| kv.strip_prefix("dur="))
            .unwrap_or_else(|| panic!("no dur in {part}"));
        d.parse().expect("number")
    };
    for uri in [
        "/api/v1/th1/?page_size=5",
        "/api/v1/run/",
        "/api/v1/th1/?me=nonexistent",
    ] {
        let req = Request::builder()
            .uri(uri)
            .header("host", "dials.test")
            .body(Body::empty())
            .expect("req");
        let resp = app.clone().oneshot(req).await.expect("call");
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
        let h = resp
            .headers()
            .get("server-timing")
            .unwrap_or_else(|| panic!("{uri}: no Server-Timing"))
            .to_str()
            .expect("ascii")
            .to_string();
        let (plan, exec, total) = (dur(&h, "plan"), dur(&h, "exec"), dur(&h, "total"));
        assert!(plan > 0.0 && exec > 0.0, "{uri}: {h}");
        assert!(
            plan + exec <= total + 0.01,
            "{uri}: parts exceed the total: {h}"
        );
        assert!(h.contains("queries\""), "{uri}: {h}");
    }
    // Outside the API too (a 404 has no query: zero parts, a total).
    let req = Request::builder()
        .uri("/api/v1/nothing-here/")
        .header("host", "dials.test")
        .body(Body::empty())
        .expect("req");
    let resp = app.clone().oneshot(req).await.expect("call");
    let h = resp
        .headers()
        .get("server-timing")
        .expect("Server-Timing on a 404")
        .to_str()
        .expect("ascii")
        .to_string();
    assert_eq!(dur(&h, "plan"), 0.0, "{h}");
}

/// Plans are cached by SQL text with their parameters unbound (`Engine::query_as`): the same
/// resource and filters with other values must answer for those values, never the first ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_plan_answers_for_the_values_bound_to_it() {
    let app = app("plan-cache").await;
    // What each lumisection holds, from the lumisection index (another query, another plan).
    let (status, index) = call(&app, "/api/v1/lumisection/?page_size=500", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let mut expected = std::collections::BTreeMap::new();
    for r in index["results"].as_array().expect("lumisections") {
        let key = (
            r["run_number"].as_i64().expect("run"),
            r["ls_number"].as_i64().expect("ls"),
        );
        *expected.entry(key).or_insert(0) += r["th1_count"].as_i64().expect("count");
    }
    assert!(expected.len() >= 4, "{expected:?}");
    let mut first = std::collections::BTreeMap::new();
    for round in 0..2 {
        for (&(run, ls), &count) in &expected {
            let (status, body) = call(
                &app,
                &format!("/api/v1/th1/?run_number={run}&ls_number={ls}&page_size=500"),
                &[],
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let rows = body["results"].as_array().expect("results").clone();
            assert_eq!(rows.len() as i64, count, "run {run} ls {ls}");
            for r in &rows {
                assert_eq!(
                    (r["run_number"].as_i64(), r["ls_number"].as_i64()),
                    (Some(run), Some(ls)),
                    "a row of another lumisection for run {run} ls {ls}"
                );
            }
            if round == 0 {
                first.insert((run, ls), rows);
            } else {
                assert_eq!(
                    Some(&rows),
                    first.get(&(run, ls)),
                    "run {run} ls {ls} changed"
                );
            }
        }
    }
    // A value with no rows after values with rows (the same SQL text).
    let (status, body) = call(&app, "/api/v1/th1/?run_number=380310&ls_number=99", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["results"], serde_json::json!([]));
}
