//! Workspace names reach SQL verbatim (quoted, never rewritten): names that differ only by `-`/`_`
//! or carry capitals are distinct workspaces that the engine registers and serves.

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

async fn count(app: &axum::Router, uri: &str, ws: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .uri(uri)
        .header("host", "dials.test")
        .header("Workspace", ws)
        .body(Body::empty())
        .expect("req");
    let resp = app.clone().oneshot(req).await.expect("call");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_differing_by_dash_underscore_or_case_are_served_separately() {
    let dir = std::env::temp_dir().join(format!("dials-ws-names-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    // `trk-a` keeps the pixel MEs, `trk_a` everything, `Ecal` nothing of this file's MEs but one.
    let ws = Workspaces::from_json(
        r#"{"default":"trk_a","workspaces":[{"name":"trk-a","me_prefixes":["PixelPhase1/"]},{"name":"trk_a"},{"name":"Ecal","me_prefixes":["NoSuchFolder/"]}]}"#,
    )
    .expect("config");
    let fx =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data/small_zlib.root");
    let req = IngestRequest {
        logical_file_name:
            "/store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/f.root".into(),
        dataset: None,
        deadline: None,
    };
    ingest(
        &lake,
        &ws,
        &req,
        Arc::new(LocalFile::open(fx).expect("fixture")),
        None,
    )
    .await
    .expect("ingest");
    let app = router(Arc::new(App {
        engine: Engine::new(&lake, ws)
            .await
            .expect("engine over trk-a, trk_a and Ecal"),
    }));

    let th1 = "/api/v1/th1/?page_size=500";
    let (s_dash, dash) = count(&app, th1, "trk-a").await;
    let (s_under, under) = count(&app, th1, "TRK_A").await;
    let (s_ecal, ecal) = count(&app, th1, "ecal").await;
    assert_eq!(
        (s_dash, s_under, s_ecal),
        (StatusCode::OK, StatusCode::OK, StatusCode::OK)
    );
    let rows = |v: &Value| {
        assert!(v["next"].is_null(), "one page holds the fixture");
        v["results"].as_array().map(|r| r.len() as i64)
    };
    assert!(
        rows(&dash).is_some_and(|_| dash["results"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|h| h["me"]
                .as_str()
                .is_some_and(|m| m.starts_with("PixelPhase1/"))))
    );
    let (dash, under, ecal) = (rows(&dash), rows(&under), rows(&ecal));
    assert!(
        dash.is_some_and(|d| d > 0),
        "trk-a has the pixel rows: {dash:?}"
    );
    assert!(
        under.zip(dash).is_some_and(|(u, d)| u > d),
        "trk_a has every row, more than trk-a: {under:?} vs {dash:?}"
    );
    assert_eq!(ecal, Some(0));
    // The materialised views (runs) are registered per workspace too; the file's lumisections are
    // indexed in every workspace its dataset feeds (2 runs), whatever MEs each keeps.
    for ws in ["trk-a", "trk_a", "Ecal"] {
        let (status, runs) = count(&app, "/api/v1/run/count/", ws).await;
        assert_eq!(
            (status, runs["count"].as_i64()),
            (StatusCode::OK, Some(2)),
            "{ws}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
