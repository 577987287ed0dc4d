//! API Gateway HTTP API (payload v2) requests, as the function receives them, through the real router.

use std::path::PathBuf;
use std::sync::Arc;

use dials_api::{router, App, Engine};
use dials_dqmio::LocalFile;
use dials_lake::{ingest, IngestRequest, Location, Workspaces};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

async fn call(app: &axum::Router, fixture: &str) -> (u16, Value) {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(fixture),
    )
    .expect("fixture");
    let req = lambda_http::request::from_str(&text).expect("API Gateway v2 payload");
    let req = req.map(|b| axum::body::Body::from(b.to_vec()));
    let resp = app.clone().oneshot(req).await.expect("call");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).expect("json body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_gateway_v2_requests_through_the_router() {
    let dir = std::env::temp_dir().join(format!("dials-query-fn-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    let ws =
        Workspaces::from_json(r#"{"default":"all","workspaces":[{"name":"all"}]}"#).expect("ws");
    let fx =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data/small_zlib.root");
    let req = IngestRequest {
        logical_file_name:
            "/store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/a.root".into(),
        dataset: None,
        deadline: None,
    };
    ingest(
        &lake,
        &ws,
        &req,
        Arc::new(LocalFile::open(fx).expect("fx")),
        None,
    )
    .await
    .expect("ingest");
    let app = router(Arc::new(App {
        engine: Engine::new(&lake, ws).await.expect("engine"),
    }));

    let (status, v) = call(&app, "apigw-v2-run-list.json").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["results"].as_array().expect("results").len(), 1);
    // Behind API Gateway the next link is absolute, https, on the API's domain.
    let next = v["next"].as_str().expect("next");
    assert!(
        next.starts_with("https://abc123.execute-api.us-east-1.amazonaws.com/api/v1/run/?"),
        "{next}"
    );
    assert!(next.contains("page_size=1") && next.contains("next_token="));

    let (status, v) = call(&app, "apigw-v2-bad-workspace.json").await;
    assert_eq!(status, 404);
    assert_eq!(v["detail"], "Workspace 'ghost' not found");

    // The web UI through the `GET /{proxy+}` route: a deep link is the single-page app's index.html.
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/apigw-v2-ui-page.json"),
    )
    .expect("fixture");
    let req = lambda_http::request::from_str(&text)
        .expect("API Gateway v2 payload")
        .map(|b| axum::body::Body::from(b.to_vec()));
    let resp = app.clone().oneshot(req).await.expect("call");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("/ui/app.js"));
}
