//! Injected object-store faults: transient write errors are retried (no half-visible rows, status stays
//! STARTED), the retry succeeds exactly once; at the last delivery the failure is recorded as
//! FILE_NOT_AVAILABLE and the message still fails, so SQS moves it to the dead-letter queue.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrow::array::AsArray;
use dials_dqmio::LocalFile;
use dials_lake::events::{settle, Deps};
use dials_lake::store::{hooked, Hook, Request};
use dials_lake::{ingest, IngestRequest, Location, Workspaces};
use futures::future::BoxFuture;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Fails writes of objects whose path contains one of `targets` while `failures` > 0 (usize::MAX:
/// always), like a throttled S3; with `stall`, such a write instead waits that long, then succeeds,
/// like a store that hangs.
#[derive(Debug)]
struct Faulty {
    failures: AtomicUsize,
    targets: &'static [&'static str],
    stall: Option<std::time::Duration>,
}

impl Faulty {
    fn check(&self, location: &Path) -> object_store::Result<()> {
        let p = location.as_ref();
        if !self.targets.iter().any(|t| p.contains(t)) {
            return Ok(());
        }
        let n = self.failures.load(Ordering::SeqCst);
        if n == 0 {
            return Ok(());
        }
        if n != usize::MAX {
            self.failures.fetch_sub(1, Ordering::SeqCst);
        }
        Err(object_store::Error::Generic {
            store: "faulty",
            source: "injected 503 SlowDown".into(),
        })
    }

    async fn fault(&self, location: &Path) -> object_store::Result<()> {
        match self.stall {
            None => self.check(location),
            Some(d) => {
                if self.check(location).is_err() {
                    tokio::time::sleep(d).await;
                }
                Ok(())
            }
        }
    }
}

impl Hook for Faulty {
    fn before<'a>(&'a self, req: Request<'a>) -> BoxFuture<'a, object_store::Result<()>> {
        Box::pin(async move {
            match req {
                Request::Put(location, _) => self.fault(location).await,
                _ => Ok(()),
            }
        })
    }
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data/small_zlib.root")
}

/// The committed objects of a table folder (its Delta log replayed).
fn parquet_files(dir: &std::path::Path) -> Vec<PathBuf> {
    common::committed(dir)
}

fn status(dir: &std::path::Path) -> String {
    let f = parquet_files(&dir.join("default/file_index"));
    let r = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f[0]).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let b = r.into_iter().next().unwrap().unwrap();
    b.column_by_name("status")
        .unwrap()
        .as_string::<i32>()
        .value(0)
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried_then_dead_lettered_with_status() {
    let dir = std::env::temp_dir().join(format!("dials-faults-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let local = Location::parse(dir.to_str().unwrap(), true).unwrap();
    let faulty = Arc::new(Faulty {
        failures: AtomicUsize::new(2),
        targets: &["/th1/", "/th2/"],
        stall: None,
    });
    let lake = Location {
        store: hooked(local.store.clone(), faulty.clone()),
        path: local.path.clone(),
        url: local.url.clone(),
    };
    let deps = Deps {
        lake: lake.clone(),
        workspaces: Workspaces::default(),
        default_dataset: None,
        max_receives: 3,
        commit_queue: None,
    };
    let req = IngestRequest {
        logical_file_name:
            "/store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/x.root".into(),
        dataset: None,
        deadline: None,
    };
    let attempt = |n: u32| {
        let (deps, req) = (deps.clone(), req.clone());
        async move {
            let r = ingest(
                &deps.lake,
                &deps.workspaces,
                &req,
                Arc::new(LocalFile::open(fixture()).unwrap()),
                None,
            )
            .await;
            settle(&deps, &req, None, "s3://raw/x.root", 1, r, n).await
        }
    };
    // Delivery 1: the injected error hits; retry, no data object visible, file not FINISHED.
    let o = attempt(1).await;
    assert!(o.retry, "{o:?}");
    assert!(
        parquet_files(&dir.join("default/th1")).is_empty()
            && parquet_files(&dir.join("default/th2")).is_empty()
    );
    assert_eq!(status(&dir), "STARTED");
    // Delivery 2: one more fault left; still retried. Delivery 3: clean, FINISHED, exact rows.
    assert!(attempt(2).await.retry);
    let o = attempt(3).await;
    assert!(!o.retry && o.status == "FINISHED", "{o:?}");
    assert_eq!(status(&dir), "FINISHED");
    let rows: usize = parquet_files(&dir.join("default/th1"))
        .iter()
        .map(|p| {
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(p).unwrap())
                .unwrap()
                .build()
                .unwrap()
                .map(|b| b.unwrap().num_rows())
                .sum::<usize>()
        })
        .sum();
    assert_eq!(rows, 40, "exactly one copy of the file's TH1 rows");
    // A store that keeps failing: at the last delivery the status says so and the message fails (→ DLQ).
    faulty.failures.store(usize::MAX, Ordering::SeqCst);
    assert!(attempt(1).await.retry);
    let o = attempt(3).await;
    assert!(o.retry, "still failed, so SQS dead-letters it");
    assert_eq!(o.status, "FILE_NOT_AVAILABLE");
    assert!(o
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("dead-letter"));
    assert_eq!(status(&dir), "FILE_NOT_AVAILABLE");
    // The store still refuses every th1/th2 request, so the file's earlier rows cannot leave those
    // tables yet; they are not served (the file is not FINISHED). Once the store answers again,
    // the next failure record takes them out.
    faulty.failures.store(0, Ordering::SeqCst);
    let o = settle(
        &deps,
        &req,
        None,
        "s3://raw/x.root",
        1,
        Err(dials_lake::IngestError::NoDataset("x".into())),
        1,
    )
    .await;
    assert!(!o.retry && o.status == "PARSING_ERROR", "{o:?}");
    assert!(
        parquet_files(&dir.join("default/th1")).is_empty(),
        "no rows of a failed file stay committed"
    );
}

/// A failed STARTED record ends the ingest with that error at once: the decoder, blocked on a full
/// channel nobody reads any more, is released instead of waiting forever (it used to hang here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_started_record_fails_the_ingest_instead_of_hanging() {
    let dir = std::env::temp_dir().join(format!("dials-faults-started-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let local = Location::parse(dir.to_str().unwrap(), true).unwrap();
    let faulty = Arc::new(Faulty {
        failures: AtomicUsize::new(usize::MAX),
        targets: &["/file_index/"],
        stall: None,
    });
    let lake = Location {
        store: hooked(local.store.clone(), faulty),
        path: local.path.clone(),
        url: local.url.clone(),
    };
    let req = IngestRequest {
        logical_file_name:
            "/store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/x.root".into(),
        dataset: None,
        deadline: None,
    };
    let workspaces = Workspaces::default();
    for _ in 0..20 {
        let source = Arc::new(LocalFile::open(fixture()).unwrap());
        let run = ingest(&lake, &workspaces, &req, source, None);
        let r = tokio::time::timeout(std::time::Duration::from_secs(20), run)
            .await
            .expect("ingest hung");
        let e = r.expect_err("the STARTED record could not be written");
        assert!(e.to_string().contains("injected 503"), "{e}");
        assert!(
            parquet_files(&dir.join("default/th1")).is_empty()
                && parquet_files(&dir.join("default/th2")).is_empty()
        );
    }
}

/// An attempt that outlives its invocation's time ends as a transient error before the deadline, so
/// the outcome is recorded (at the last delivery: FILE_NOT_AVAILABLE, then the dead-letter queue)
/// instead of the function being killed with nothing recorded; nothing of the attempt is visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_out_of_time_ends_as_a_recorded_status() {
    use std::time::{Duration, Instant};
    let dir = std::env::temp_dir().join(format!("dials-faults-deadline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let local = Location::parse(dir.to_str().unwrap(), true).unwrap();
    // The STARTED record's write hangs for 2 s, once: the attempt is still reading when its
    // 200 ms run out.
    let stalling = Arc::new(Faulty {
        failures: AtomicUsize::new(1),
        targets: &["/file_index/"],
        stall: Some(Duration::from_secs(2)),
    });
    let lake = Location {
        store: hooked(local.store.clone(), stalling),
        path: local.path.clone(),
        url: local.url.clone(),
    };
    let deps = Deps {
        lake: lake.clone(),
        workspaces: Workspaces::default(),
        default_dataset: None,
        max_receives: 3,
        commit_queue: None,
    };
    let req = |deadline: Duration| IngestRequest {
        logical_file_name:
            "/store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/x.root".into(),
        dataset: None,
        deadline: Some(Instant::now() + deadline),
    };
    let short = req(Duration::from_millis(200));
    let started = Instant::now();
    let r = ingest(
        &deps.lake,
        &deps.workspaces,
        &short,
        Arc::new(LocalFile::open(fixture()).unwrap()),
        None,
    )
    .await;
    let e = r.expect_err("out of time");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "ended at its deadline, not when the store answered"
    );
    assert!(
        e.is_transient() && e.to_string().contains("did not finish within"),
        "{e}"
    );
    let o = settle(&deps, &short, None, "s3://raw/x.root", 1, Err(e), 3).await;
    assert!(o.retry && o.status == "FILE_NOT_AVAILABLE", "{o:?}");
    assert_eq!(status(&dir), "FILE_NOT_AVAILABLE");
    assert!(
        parquet_files(&dir.join("default/th1")).is_empty()
            && parquet_files(&dir.join("default/th2")).is_empty()
    );
    // With time to spare the same attempt completes as usual.
    let long = req(Duration::from_secs(60));
    let r = ingest(
        &deps.lake,
        &deps.workspaces,
        &long,
        Arc::new(LocalFile::open(fixture()).unwrap()),
        None,
    )
    .await;
    let o = settle(&deps, &long, None, "s3://raw/x.root", 1, r, 1).await;
    assert!(!o.retry && o.status == "FINISHED", "{o:?}");
    assert_eq!(status(&dir), "FINISHED");
}
