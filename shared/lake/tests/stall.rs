//! A store whose ranged reads never answer: the reader blocks inside a read on the decoder thread.
//! The ingest must still end by its deadline (the read is abandoned, not waited for), its failure
//! must be recorded as a status (never STARTED forever), and no read may be left pending.

mod common;

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use dials_lake::events::{settle, Deps};
use dials_lake::{ingest, IngestRequest, Location, ObjectSource, Workspaces};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResult, ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Serves the open (a suffix read) and stalls every bounded range read forever, counting the reads
/// still pending (a read abandoned by its caller is dropped and no longer counts).
#[derive(Debug)]
struct Stalling {
    inner: Arc<dyn ObjectStore>,
    pending: Arc<AtomicUsize>,
}

impl fmt::Display for Stalling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Stalling({})", self.inner)
    }
}

struct Pending(Arc<AtomicUsize>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

dials_lake::forward_object_store! {
    impl ObjectStore for Stalling {
        // Not `get_ranges`: the default goes through `get_opts`, so ranged reads stall too.
        forward(inner) [put_opts, put_multipart_opts, delete_stream, list, list_with_delimiter, copy_opts];
        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            if matches!(options.range, Some(GetRange::Bounded(_))) {
                self.pending.fetch_add(1, Ordering::SeqCst);
                let _guard = Pending(self.pending.clone());
                std::future::pending::<()>().await;
            }
            self.inner.get_opts(location, options).await
        }
    }
}

const KEY: &str = "store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/stall.root";

fn file_index_status(lake: &std::path::Path) -> (String, String) {
    let dir = lake.join("default/file_index");
    let f = common::committed(&dir).into_iter().next().expect("record");
    let r = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).expect("open"))
        .expect("parquet")
        .build()
        .expect("reader");
    let b = r.into_iter().next().expect("batch").expect("batch");
    let col = |n: &str| {
        b.column_by_name(n)
            .expect(n)
            .as_string::<i32>()
            .value(0)
            .to_string()
    };
    (col("status"), col("err_trace"))
}

#[test]
fn a_stalled_read_ends_at_the_deadline_and_the_failure_is_recorded() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("dials-lake-test-{}-stall", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp");
    let pending = Arc::new(AtomicUsize::new(0));
    let pending2 = pending.clone();
    let lake_dir = dir.clone();
    // Nothing is asserted inside the runtime: a failure must not leave it waiting, at drop, for a
    // blocking thread stuck in a read (the old behaviour this test catches).
    let outcome = rt.block_on(async move {
        // A real file followed by padding, so the open's tail request (256 KiB) does not cover the
        // file's header and keys: the reader must ask for ranges, and every one of them stalls.
        let mut bytes = std::fs::read(
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/data/small_zlib.root"),
        )
        .expect("fixture");
        bytes.resize(bytes.len() + (300 << 10), 0);
        let size = bytes.len() as u64;
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        inner
            .put(&Path::from(KEY), bytes.into())
            .await
            .expect("put");
        let store: Arc<dyn ObjectStore> = Arc::new(Stalling {
            inner,
            pending: pending2.clone(),
        });
        let lake = Location::parse(lake_dir.to_str().expect("utf8"), true).expect("lake");
        let deadline = Instant::now() + Duration::from_millis(1500);
        let req = IngestRequest {
            logical_file_name: format!("/{KEY}"),
            dataset: None,
            deadline: Some(deadline),
        };
        let t0 = Instant::now();
        let src = ObjectSource::open_until(
            store,
            Path::from(KEY),
            format!("s3://raw/{KEY}"),
            Some(deadline),
        )
        .await
        .expect("open");
        let r = tokio::time::timeout(
            Duration::from_secs(20),
            ingest(&lake, &Workspaces::default(), &req, Arc::new(src), None),
        )
        .await;
        let took = t0.elapsed();
        // Reads abandoned at the deadline are dropped at once; give the decoder thread a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let left = pending2.load(Ordering::SeqCst);
        let Ok(result) = r else {
            return Err(format!(
                "ingest still running after {took:?} (deadline 1.5 s)"
            ));
        };
        let Err(e) = result else {
            return Err("a stalled ingest succeeded".into());
        };
        let transient = e.is_transient();
        let text = e.to_string();
        // The last delivery: the failure is recorded (FILE_NOT_AVAILABLE) instead of leaving STARTED.
        let deps = Deps {
            lake: lake.clone(),
            workspaces: Workspaces::default(),
            default_dataset: None,
            max_receives: 3,
            commit_queue: None,
        };
        let o = settle(&deps, &req, None, "s3://raw/stall.root", size, Err(e), 3).await;
        Ok((took, left, transient, text, o.status, o.retry))
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    let (took, left, transient, text, status, retry) = outcome.expect("ingest ended");
    assert!(
        took < Duration::from_millis(2500),
        "ingest ended {took:?} after start, deadline 1.5 s"
    );
    assert_eq!(left, 0, "reads still pending after the ingest ended");
    assert!(transient, "{text}");
    assert!(
        text.contains("did not finish") || text.contains("deadline"),
        "{text}"
    );
    assert_eq!((status.as_str(), retry), ("FILE_NOT_AVAILABLE", true));
    let (recorded, trace) = file_index_status(&dir);
    assert_eq!(recorded, "FILE_NOT_AVAILABLE", "{trace}");
    assert!(trace.contains("gave up after 3 attempts"), "{trace}");
}
