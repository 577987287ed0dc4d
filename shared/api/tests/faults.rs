//! The lake's store failing under the API: outages are 503 with `Retry-After`, a store that does not
//! answer ends at the request deadline, one unreadable object is left out (quarantined) instead of
//! failing every query. Its own binary: it sets `DIALS_REQUEST_TIMEOUT_MS` for every test in it.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use bytes::Bytes;
use dials_api::{router, App, Engine};
use dials_dqmio::LocalFile;
use dials_lake::{ingest, IngestRequest, Location, Workspaces};
use futures::stream::BoxStream;
use futures::StreamExt;
use http_body_util::BodyExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetOptions, GetResult, ListResult, ObjectMeta, ObjectStore};
use serde_json::Value;
use tower::ServiceExt;

const TIMEOUT_MS: u64 = 1500;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data")
}

fn lfn(i: usize) -> String {
    format!("/store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/f{i}.root")
}

async fn ingest_into(lake: &Location, ws: &Workspaces, i: usize, fx: &str) {
    let req = IngestRequest {
        logical_file_name: lfn(i),
        dataset: None,
        deadline: None,
    };
    ingest(
        lake,
        ws,
        &req,
        Arc::new(LocalFile::open(fixtures().join(fx)).expect("fx")),
        None,
    )
    .await
    .expect("ingest");
}

/// A lake folder with three ingested files.
async fn folder(name: &str) -> (PathBuf, Location, Workspaces) {
    std::env::set_var("DIALS_REQUEST_TIMEOUT_MS", TIMEOUT_MS.to_string());
    let dir = std::env::temp_dir().join(format!("dials-api-faults-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    let ws = Workspaces::default();
    for (i, fx) in ["small_zlib.root", "small_lz4.root", "small_zstd.root"]
        .iter()
        .enumerate()
    {
        ingest_into(&lake, &ws, i, fx).await;
    }
    (dir, lake, ws)
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, HeaderMap, Value) {
    let req = Request::builder()
        .uri(uri)
        .header("host", "dials.test")
        .body(Body::empty())
        .expect("req");
    let resp = app.clone().oneshot(req).await.expect("call");
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        headers,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// How the faulty store behaves.
const PASS: u8 = 0;
const FAIL: u8 = 1;
const HANG: u8 = 2;

/// A store in front of a lake folder that answers, fails like an unreachable S3 (object_store's
/// `Generic` error, what its HTTP client reports after its retries), or never answers.
#[derive(Debug)]
struct Faulty {
    inner: LocalFileSystem,
    mode: Arc<AtomicU8>,
}

impl std::fmt::Display for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Faulty")
    }
}

impl Faulty {
    async fn gate(&self) -> object_store::Result<()> {
        match self.mode.load(Ordering::SeqCst) {
            FAIL => Err(object_store::Error::Generic {
                store: "S3",
                source: "error sending request: connection refused (after 10 retries)".into(),
            }),
            HANG => {
                futures::future::pending::<()>().await;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

dials_lake::forward_object_store! {
    impl ObjectStore for Faulty {
        // `list_with_offset` stays the default: through `list`, sorted and failing like it.
        forward(inner) [put_opts, put_multipart_opts, delete_stream, copy_opts];
        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.gate().await?;
            self.inner.get_opts(location, options).await
        }
        async fn get_ranges(
            &self,
            location: &Path,
            ranges: &[Range<u64>],
        ) -> object_store::Result<Vec<Bytes>> {
            self.gate().await?;
            self.inner.get_ranges(location, ranges).await
        }
        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            let mode = self.mode.load(Ordering::SeqCst);
            // S3 lists keys in lexicographic order (the Delta kernel relies on it); a folder does not.
            let inner = self.inner.list(prefix);
            let inner = futures::stream::once(async move {
                let mut all: Vec<object_store::Result<ObjectMeta>> = inner.collect().await;
                all.sort_by(|a, b| match (a, b) {
                    (Ok(a), Ok(b)) => a.location.cmp(&b.location),
                    _ => std::cmp::Ordering::Equal,
                });
                futures::stream::iter(all)
            })
            .flatten()
            .boxed();
            match mode {
                FAIL => futures::stream::once(async {
                    Err(object_store::Error::Generic {
                        store: "S3",
                        source: "error sending request: connection refused".into(),
                    })
                })
                .boxed(),
                HANG => futures::stream::pending().boxed(),
                _ => inner,
            }
        }
        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
            self.gate().await?;
            self.inner.list_with_delimiter(prefix).await
        }
    }
}

/// The API over the folder as if it were an S3 lake behind `Faulty` in `mode`.
async fn s3_app(dir: &std::path::Path, ws: Workspaces, mode: u8) -> axum::Router {
    let store = Faulty {
        inner: LocalFileSystem::new_with_prefix(dir).expect("fs"),
        mode: Arc::new(AtomicU8::new(mode)),
    };
    let lake = Location {
        store: Arc::new(store),
        path: Path::default(),
        url: "s3://faulty-lake".into(),
    };
    router(Arc::new(App {
        engine: Engine::new(&lake, ws).await.expect("engine"),
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_is_503_with_retry_after() {
    let (dir, _, ws) = folder("outage").await;
    let ok = s3_app(&dir, ws.clone(), PASS).await;
    let (s, _, v) = get(&ok, "/api/v1/th1/?page_size=500").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["results"].as_array().expect("results").len(), 120);
    let down = s3_app(&dir, ws, FAIL).await;
    for uri in [
        "/api/v1/th1/?page_size=5",
        "/api/v1/run/",
        "/api/v1/file-index/count/",
        "/api/v1/th2/?format=arrow",
    ] {
        let (s, h, v) = get(&down, uri).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{uri}: {v}");
        assert!(h.get("retry-after").is_some(), "{uri}: Retry-After");
        assert!(
            v["detail"]
                .as_str()
                .is_some_and(|d| d.contains("lake unavailable")),
            "{uri}: {v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_does_not_answer_ends_at_the_request_deadline() {
    let (dir, _, ws) = folder("hang").await;
    let app = s3_app(&dir, ws, HANG).await;
    let t0 = Instant::now();
    let got = tokio::time::timeout(
        Duration::from_secs(30),
        get(&app, "/api/v1/th1/?page_size=5"),
    )
    .await;
    let took = t0.elapsed();
    let (s, h, v) = got.expect("the request ended (it did not wait for the store)");
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(h.get("retry-after").is_some());
    assert!(
        took >= Duration::from_millis(TIMEOUT_MS)
            && took < Duration::from_millis(TIMEOUT_MS + 3000),
        "took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_unreadable_object_is_left_out_not_a_500_for_every_query() {
    std::env::set_var("DIALS_LISTING_TTL_MS", "200");
    let (dir, lake, ws) = folder("unreadable").await;
    // One file's th1 object of one run becomes unreadable (truncated, as a foreign or broken writer
    // would leave it).
    let run_dir = dir.join("default/th1/run_number=380310");
    let mine = format!("part-{}-", dials_lake::ids::file_id(&lfn(1)));
    let victim = std::fs::read_dir(&run_dir)
        .expect("run dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&mine))
        })
        .expect("the file's th1 object");
    let good = std::fs::read(&victim).expect("victim");
    std::fs::write(&victim, &good[..good.len() / 2]).expect("truncate");
    let engine = Engine::new(&lake, ws.clone()).await.expect("engine");
    let app = router(Arc::new(App { engine }));
    let (s, _, v) = get(&app, "/api/v1/th1/?page_size=500").await;
    assert_eq!(s, StatusCode::OK, "an unpruned query still answers: {v}");
    // 3 files x 40 rows, less the victim's rows of run 380310 (3 lumisections x 8 TH1).
    assert_eq!(v["results"].as_array().expect("results").len(), 120 - 24);
    let (s, _, v) = get(&app, "/api/v1/th1/?format=arrow").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Other tables are not affected; a re-ingest rewrites the object and it is read again.
    let (s, _, v) = get(&app, "/api/v1/lumisection/count/").await;
    assert_eq!((s, v["count"].as_i64()), (StatusCode::OK, Some(6)));
    ingest_into(&lake, &ws, 1, "small_lz4.root").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (s, _, v) = get(&app, "/api/v1/th1/?page_size=500").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["results"].as_array().expect("results").len(),
        120,
        "the rewritten object is back"
    );
}
