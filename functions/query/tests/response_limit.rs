//! Every response fits Lambda's buffered response (6 MB for the whole API Gateway envelope, binary
//! bodies base64-encoded in it): th2 pages of large histograms and bulk Arrow exports, turned into
//! the envelope exactly as lambda_http does (its body conversion, then the API Gateway v2 response
//! serialised), over every page, with no row lost across pages.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use dials_api::{router, App, Engine};
use dials_dqmio::LocalFile;
use dials_lake::{ingest, IngestRequest, Location, Workspaces};
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use serde_json::Value;
use tower::ServiceExt;

/// Lambda's limit on a buffered (synchronous) response payload.
const LAMBDA_RESPONSE_LIMIT: usize = 6_000_000;

/// The function's response payload for `resp`, as lambda_http builds it for API Gateway v2.
async fn envelope(resp: axum::response::Response) -> (Vec<u8>, ApiGatewayV2httpResponse) {
    let resp = lambda_http::IntoResponse::into_response(resp).await;
    let (parts, body) = resp.into_parts();
    let mut out = ApiGatewayV2httpResponse::default();
    out.status_code = i64::from(parts.status.as_u16());
    out.is_base64_encoded = matches!(body, lambda_http::Body::Binary(_));
    out.body = match body {
        lambda_http::Body::Empty => None,
        b => Some(b),
    };
    out.headers = parts.headers;
    (serde_json::to_vec(&out).expect("envelope"), out)
}

async fn call(app: &axum::Router, uri: &str) -> (usize, ApiGatewayV2httpResponse) {
    let req = Request::builder()
        .uri(uri)
        .header("host", "abc.execute-api.us-east-1.amazonaws.com")
        .header("x-forwarded-proto", "https");
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("req"))
        .await
        .expect("call");
    let (bytes, env) = envelope(resp).await;
    (bytes.len(), env)
}

fn local(url: &str) -> String {
    url.trim_start_matches("https://abc.execute-api.us-east-1.amazonaws.com")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn th2_pages_and_bulk_exports_fit_lambdas_response_limit_and_lose_no_row() {
    let dir = std::env::temp_dir().join(format!("dials-query-fn-limit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    let ws = Workspaces::default();
    let fx =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data/th2_50x50.root");
    let req = IngestRequest {
        logical_file_name:
            "/store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/big.root".into(),
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

    // JSON pages of 500 (cmsdials' largest), followed through `next`.
    let mut uri = "/api/v1/th2/?page_size=500".to_string();
    let mut rows = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let (size, env) = call(&app, &uri).await;
        assert_eq!(env.status_code, 200);
        assert!(!env.is_base64_encoded);
        sizes.push(size);
        let Some(lambda_http::Body::Text(text)) = env.body else {
            panic!("text body")
        };
        let v: Value = serde_json::from_str(&text).expect("json");
        for r in v["results"].as_array().expect("results") {
            rows.push((
                r["ls_number"].as_i64().expect("ls"),
                r["me_id"].as_i64().expect("me"),
            ));
        }
        match v["next"].as_str() {
            Some(n) => uri = local(n),
            None => break,
        }
    }
    eprintln!("th2 JSON pages, envelope bytes: {sizes:?}");
    assert!(
        sizes.iter().all(|s| *s <= LAMBDA_RESPONSE_LIMIT),
        "JSON pages {sizes:?} > {LAMBDA_RESPONSE_LIMIT}"
    );
    let n = rows.len();
    rows.sort_unstable();
    rows.dedup();
    assert_eq!((n, rows.len()), (600, 600), "every row once across pages");

    // Bulk Arrow export, followed through its Link header.
    let mut uri = "/api/v1/th2/?format=arrow".to_string();
    let mut rows = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let (size, env) = call(&app, &uri).await;
        assert_eq!(env.status_code, 200);
        assert!(env.is_base64_encoded, "Arrow travels base64-encoded");
        sizes.push(size);
        let Some(lambda_http::Body::Binary(raw)) = &env.body else {
            panic!("binary body")
        };
        // The envelope holds the base64 text; decoding it gives the stream back.
        let json: Value = serde_json::to_value(&env).expect("value");
        let b64 = base64::engine::general_purpose::STANDARD
            .decode(json["body"].as_str().expect("body"))
            .expect("base64");
        assert_eq!(&b64, raw);
        let reader =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(raw.clone()), None)
                .expect("stream");
        for b in reader {
            let b = b.expect("batch");
            let ls = b
                .column_by_name("ls_number")
                .expect("ls")
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .expect("i64")
                .clone();
            let me = b
                .column_by_name("me_id")
                .expect("me")
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .expect("i64")
                .clone();
            rows.extend((0..b.num_rows()).map(|i| (ls.value(i), me.value(i))));
        }
        let link = env
            .headers
            .get("link")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match link {
            Some(l) => {
                let url = l
                    .trim_start_matches('<')
                    .split_once(">; rel=\"next\"")
                    .expect("rel=next")
                    .0
                    .to_string();
                assert!(
                    url.starts_with("https://abc.execute-api.us-east-1.amazonaws.com/api/v1/th2/?"),
                    "{url}"
                );
                assert!(env.headers.get("x-dials-truncated").is_some());
                uri = local(&url);
            }
            None => break,
        }
        assert!(sizes.len() < 50);
    }
    eprintln!("th2 Arrow pages, envelope bytes: {sizes:?}");
    assert!(
        sizes.iter().all(|s| *s <= LAMBDA_RESPONSE_LIMIT),
        "Arrow pages {sizes:?} > {LAMBDA_RESPONSE_LIMIT}"
    );
    let n = rows.len();
    rows.sort_unstable();
    rows.dedup();
    assert_eq!(
        (n, rows.len()),
        (600, 600),
        "every row once across export pages"
    );
}
