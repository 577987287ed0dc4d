//! Two versions of the same logical file ingested at once (an S3 key overwritten while its first
//! ingest runs: two events, two functions). Whatever the interleaving, every table ends holding
//! the **newer** version, whole — never rows of both, never the older one, whichever attempt
//! started or committed last — and the file's one record says FINISHED. Ingests are fenced by the
//! source's version (modification time, then entity tag), not by when an attempt started. (On the
//! lake format before Delta, 12 of 40 trials mixed versions or listed deleted objects; with
//! attempts ordered by their start, the older version won whenever its attempt started later.)
//! A key overwritten while it is being read fails the read (pinned to the version opened), as a
//! transient error that is retried, never as a broken file.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use common::{committed, fixtures, read_table, scratch};
use dials_dqmio::{ByteSource, MemSource, SourceVersion};
use dials_lake::store::ObjectSource;
use dials_lake::{ingest, record_failure, IngestError, IngestRequest, Location, Workspaces};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

const LFN: &str =
    "/store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/overwritten.root";
/// The older version (A) and the newer one (B), written one second apart.
const OLDER: (&str, i64, &str) = ("small_zlib.root", 1_733_000_000_000, "\"aaaa-1\"");
const NEWER: (&str, i64, &str) = ("tiny_none.root", 1_733_000_001_000, "\"bbbb-2\"");

/// Rows per table and the set of (run, ls) of the lumisection index: what distinguishes versions.
fn signature(dir: &std::path::Path) -> BTreeMap<&'static str, String> {
    let mut sig = BTreeMap::new();
    for table in ["th1", "th2", "me_index"] {
        let n: usize = read_table(&dir.join("default").join(table))
            .iter()
            .map(|(_, b)| b.num_rows())
            .sum();
        sig.insert(table, n.to_string());
    }
    let mut lumis: Vec<(i64, i64)> = Vec::new();
    for (_, b) in read_table(&dir.join("default/lumisection_index")) {
        let run = b
            .column_by_name("run_number")
            .expect("run")
            .as_primitive::<Int64Type>();
        let ls = b
            .column_by_name("ls_number")
            .expect("ls")
            .as_primitive::<Int64Type>();
        lumis.extend((0..b.num_rows()).map(|i| (run.value(i), ls.value(i))));
    }
    lumis.sort_unstable();
    sig.insert("lumisection_index", format!("{lumis:?}"));
    sig
}

/// The bytes of `fixture`, said to be the version written at `modified_ms` with entity tag `etag`.
fn version(v: (&str, i64, &str)) -> Arc<MemSource> {
    let bytes = std::fs::read(fixtures().join(v.0)).expect("fixture");
    Arc::new(MemSource::new(LFN, bytes).with_version(SourceVersion {
        modified_ms: v.1,
        etag: v.2.to_string(),
    }))
}

fn request() -> IngestRequest {
    IngestRequest {
        logical_file_name: LFN.to_string(),
        dataset: None,
        deadline: None,
    }
}

fn file_status(dir: &std::path::Path) -> Vec<String> {
    read_table(&dir.join("default/file_index"))
        .iter()
        .map(|(_, b)| {
            b.column_by_name("status")
                .expect("status")
                .as_string::<i32>()
                .value(0)
                .to_string()
        })
        .collect()
}

async fn ingest_version(lake: &Location, v: (&str, i64, &str)) -> Result<(), IngestError> {
    // A redelivered message is a new attempt of the same version: retry transient failures as SQS
    // would. Superseded (a newer version committed) ends the message too.
    for _ in 0..5 {
        match ingest(lake, &Workspaces::default(), &request(), version(v), None).await {
            Ok(_) => return Ok(()),
            Err(IngestError::Superseded(_)) => return Ok(()),
            Err(e) if e.is_transient() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(IngestError::Task("still failing after 5 deliveries".into()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_versions_of_one_file_at_once_leave_the_newer_whole() {
    // The two versions alone, for reference.
    let mut alone = Vec::new();
    for v in [OLDER, NEWER] {
        let dir = scratch(&format!("version-{}", v.0));
        let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
        ingest_version(&lake, v).await.expect("ingest");
        alone.push(signature(&dir));
    }
    assert_ne!(alone[0], alone[1], "the two versions differ in every table");
    for trial in 0..40u64 {
        let dir = scratch(&format!("versions-{trial}"));
        let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
        let (a, b) = (lake.clone(), lake.clone());
        // The older version's attempt starts first in half the trials, last (by up to 40 ms) in the other half.
        let delay = std::time::Duration::from_millis((trial * 7) % 41);
        let (da, db) = if trial % 2 == 0 {
            (delay, std::time::Duration::ZERO)
        } else {
            (std::time::Duration::ZERO, delay)
        };
        let ta = tokio::spawn(async move {
            tokio::time::sleep(da).await;
            ingest_version(&a, OLDER).await
        });
        let tb = tokio::spawn(async move {
            tokio::time::sleep(db).await;
            ingest_version(&b, NEWER).await
        });
        ta.await.expect("task").expect("version A");
        tb.await.expect("task").expect("version B");
        let sig = signature(&dir);
        assert_eq!(
            sig, alone[1],
            "trial {trial}: the lake does not hold the newer version, whole"
        );
        assert_eq!(
            file_status(&dir),
            ["FINISHED"],
            "trial {trial}: one FINISHED record for the file"
        );
        // Every committed object exists (nothing the log names was deleted).
        for table in [
            "th1",
            "th2",
            "lumisection_index",
            "me_index",
            "file_index",
            "dataset_index",
        ] {
            for f in committed(&dir.join("default").join(table)) {
                assert!(
                    f.exists(),
                    "trial {trial}: {} is committed but missing",
                    f.display()
                );
            }
        }
    }
}

#[tokio::test]
async fn an_older_version_never_replaces_a_newer_one() {
    let dir = scratch("older-after-newer");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    ingest(
        &lake,
        &Workspaces::default(),
        &request(),
        version(NEWER),
        None,
    )
    .await
    .expect("newer");
    let newer = signature(&dir);
    // A late event of the older version: superseded, nothing changes.
    let late = ingest(
        &lake,
        &Workspaces::default(),
        &request(),
        version(OLDER),
        None,
    )
    .await;
    assert!(
        matches!(late, Err(IngestError::Superseded(_))),
        "older after newer: {late:?}"
    );
    assert_eq!(signature(&dir), newer);
    assert_eq!(file_status(&dir), ["FINISHED"]);
    // A failure of the older version (say it was corrupt) is not recorded over the newer's rows.
    let older = SourceVersion {
        modified_ms: OLDER.1,
        etag: OLDER.2.to_string(),
    };
    let _ = record_failure(
        &lake,
        &Workspaces::default(),
        &request(),
        Some(Arc::new(MemSource::new(LFN, Vec::new()).with_version(older)) as Arc<dyn ByteSource>),
        1,
        "ROOTFILE_ERROR",
        "corrupt",
    )
    .await;
    assert_eq!(signature(&dir), newer);
    assert_eq!(file_status(&dir), ["FINISHED"]);
    // The same version again (a redelivery, an operator's re-run) is ingested again, not refused.
    ingest(
        &lake,
        &Workspaces::default(),
        &request(),
        version(NEWER),
        None,
    )
    .await
    .expect("same version again");
    assert_eq!(signature(&dir), newer);
    // A failure of the newer version itself is recorded: its rows go.
    let newest = SourceVersion {
        modified_ms: NEWER.1,
        etag: NEWER.2.to_string(),
    };
    record_failure(
        &lake,
        &Workspaces::default(),
        &request(),
        Some(Arc::new(MemSource::new(LFN, Vec::new()).with_version(newest)) as Arc<dyn ByteSource>),
        1,
        "ROOTFILE_ERROR",
        "corrupt",
    )
    .await
    .expect("record");
    assert_eq!(file_status(&dir), ["ROOTFILE_ERROR"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_overwritten_while_read_is_retried_not_recorded_as_broken() {
    // The source bucket is a folder; the first version is larger than what the open reads at once
    // (its tail), so the ingest must read it again after the overwrite.
    let bucket = scratch("overwritten-bucket");
    let store: Arc<dyn ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&bucket).expect("bucket"));
    let key = object_store::path::Path::from(LFN.trim_start_matches('/'));
    let first = std::fs::read(fixtures().join("th2_50x50.root")).expect("fixture");
    assert!(
        first.len() as u64 > dials_lake::store::OPEN_TAIL_BYTES,
        "the fixture must not fit in the open's tail read"
    );
    store
        .put(&key, PutPayload::from(first))
        .await
        .expect("put v1");
    let src = ObjectSource::open(store.clone(), key.clone(), LFN.to_string())
        .await
        .expect("open v1");
    let v1 = ByteSource::version(&src).expect("a version");
    // Versions are ordered by modification time in milliseconds, then by their ETag's hash: two
    // writes within one millisecond would be ordered by the hash, not by time (clean-clone CI once
    // put both in the same millisecond and the retry of the newer version was superseded). An
    // overwrite comes later than that here.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    // Overwritten (another object written, then renamed over the key) before the ingest reads on.
    store
        .put(
            &key,
            PutPayload::from(std::fs::read(fixtures().join(NEWER.0)).expect("fixture")),
        )
        .await
        .expect("put v2");
    let dir = scratch("overwritten-lake");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    let err = ingest(
        &lake,
        &Workspaces::default(),
        &request(),
        Arc::new(src),
        None,
    )
    .await
    .expect_err("torn read must fail");
    assert!(
        err.is_transient(),
        "a key overwritten while read is retried: {err}"
    );
    assert_eq!(err.status(), "FILE_NOT_AVAILABLE", "{err}");
    assert!(err.to_string().contains("overwritten"), "{err}");
    assert!(!file_status(&dir).contains(&"FINISHED".to_string()));
    // The retry opens the key again and reads the new version, whole.
    let src = ObjectSource::open(store.clone(), key.clone(), LFN.to_string())
        .await
        .expect("open v2");
    let v2 = ByteSource::version(&src).expect("a version");
    assert_ne!(v1, v2);
    ingest(
        &lake,
        &Workspaces::default(),
        &request(),
        Arc::new(src),
        None,
    )
    .await
    .expect("retry");
    let alone = scratch("overwritten-alone");
    let alone_lake = Location::parse(alone.to_str().expect("utf8"), true).expect("lake");
    ingest_version(&alone_lake, NEWER).await.expect("alone");
    assert_eq!(signature(&dir), signature(&alone));
    assert_eq!(file_status(&dir), ["FINISHED"]);
}

/// One version of the key, as an object store serves it: a HEAD tells whether it is still the
/// key's current version (`current` holds the entity tag the key has now).
struct Keyed {
    inner: MemSource,
    etag: String,
    current: Arc<std::sync::Mutex<String>>,
}

impl ByteSource for Keyed {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, offset: u64, len: usize) -> dials_dqmio::Result<bytes::Bytes> {
        self.inner.read_at(offset, len)
    }
    fn name(&self) -> String {
        self.inner.name()
    }
    fn version(&self) -> Option<SourceVersion> {
        self.inner.version()
    }
    fn is_current(&self) -> Option<dials_dqmio::Result<bool>> {
        let now = self.current.lock().expect("lock").clone();
        Some(Ok(now == self.etag))
    }
}

/// Ingests `fixture`, the version of the key with entity tag `etag` written at `SAME_SECOND`,
/// retrying transient failures as SQS would; superseded ends the message too.
async fn ingest_keyed(
    lake: &Location,
    fixture: &str,
    etag: &str,
    current: &Arc<std::sync::Mutex<String>>,
) -> Result<(), IngestError> {
    let bytes = std::fs::read(fixtures().join(fixture)).expect("fixture");
    for _ in 0..5 {
        let src = Arc::new(Keyed {
            inner: MemSource::new(LFN, bytes.clone()).with_version(SourceVersion {
                modified_ms: SAME_SECOND,
                etag: etag.to_string(),
            }),
            etag: etag.to_string(),
            current: current.clone(),
        });
        match ingest(lake, &Workspaces::default(), &request(), src, None).await {
            Ok(_) | Err(IngestError::Superseded(_)) => return Ok(()),
            Err(e) if e.is_transient() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(IngestError::Task("still failing after 5 deliveries".into()))
}

/// S3 records modification times to the second.
const SAME_SECOND: i64 = 1_733_000_005_000;

/// Two writes of the key within one second (S3's `LastModified` cannot tell them apart): the lake
/// ends with the version the key holds now, whole, even when the older version's entity tag would
/// order it first — whether the older version's ingest ran before the overwrite, after the newer
/// one's (a late redelivery), or at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_versions_written_in_the_same_second_end_with_the_current_one() {
    let generation = |etag: &str| {
        dials_lake::delta::version_generation(&SourceVersion {
            modified_ms: SAME_SECOND,
            etag: etag.to_string(),
        })
    };
    let newer = "\"bbbb-same-second\"";
    // An older version whose generation alone would win against the newer's.
    let older = (0..)
        .map(|i| format!("\"aaaa-{i}\""))
        .find(|t| generation(t) > generation(newer))
        .expect("an entity tag ordered above");
    assert!(dials_lake::delta::same_instant(
        generation(&older),
        generation(newer)
    ));
    let (older_fx, newer_fx) = (OLDER.0, NEWER.0);
    let key = |etag: &str| Arc::new(std::sync::Mutex::new(etag.to_string()));

    let reference = scratch("same-second-newer-alone");
    let lake = Location::parse(reference.to_str().expect("utf8"), true).expect("lake");
    ingest_keyed(&lake, newer_fx, newer, &key(newer))
        .await
        .expect("newer alone");
    let want = signature(&reference);

    // The older version is ingested while it is the key's; then the key is overwritten.
    let dir = scratch("same-second-overwritten");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    let current = key(&older);
    ingest_keyed(&lake, older_fx, &older, &current)
        .await
        .expect("older");
    assert_ne!(signature(&dir), want, "the older version differs");
    *current.lock().expect("lock") = newer.to_string();
    ingest_keyed(&lake, newer_fx, newer, &current)
        .await
        .expect("newer");
    assert_eq!(
        signature(&dir),
        want,
        "the current version replaced the older one"
    );
    assert_eq!(file_status(&dir), ["FINISHED"]);
    // A late redelivery of the older version changes nothing; one of the newer keeps it.
    ingest_keyed(&lake, older_fx, &older, &current)
        .await
        .expect("late older");
    assert_eq!(
        signature(&dir),
        want,
        "a late older attempt replaced the newer"
    );
    ingest_keyed(&lake, newer_fx, newer, &current)
        .await
        .expect("redelivered newer");
    assert_eq!(signature(&dir), want);
    assert_eq!(file_status(&dir), ["FINISHED"]);

    // The newer version first, then a late attempt of the older one.
    let dir = scratch("same-second-late-older");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    let current = key(newer);
    ingest_keyed(&lake, newer_fx, newer, &current)
        .await
        .expect("newer");
    ingest_keyed(&lake, older_fx, &older, &current)
        .await
        .expect("late older");
    assert_eq!(
        signature(&dir),
        want,
        "the late older version replaced the newer"
    );
    assert_eq!(file_status(&dir), ["FINISHED"]);

    // Both at once, in both start orders.
    for trial in 0..10u64 {
        let dir = scratch(&format!("same-second-{trial}"));
        let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
        let current = key(newer);
        let delay = std::time::Duration::from_millis((trial * 7) % 41);
        let (da, db) = if trial % 2 == 0 {
            (delay, std::time::Duration::ZERO)
        } else {
            (std::time::Duration::ZERO, delay)
        };
        let (a, b, ca, cb, o) = (
            lake.clone(),
            lake.clone(),
            current.clone(),
            current.clone(),
            older.clone(),
        );
        let ta = tokio::spawn(async move {
            tokio::time::sleep(da).await;
            ingest_keyed(&a, older_fx, &o, &ca).await
        });
        let tb = tokio::spawn(async move {
            tokio::time::sleep(db).await;
            ingest_keyed(&b, newer_fx, newer, &cb).await
        });
        ta.await.expect("task").expect("older");
        tb.await.expect("task").expect("newer");
        assert_eq!(
            signature(&dir),
            want,
            "trial {trial}: not the current version, whole"
        );
        assert_eq!(file_status(&dir), ["FINISHED"], "trial {trial}");
    }
}

/// A failed attempt of a version written in the same second as the last committed one: its record
/// is fenced like an ingest's commit, by which version the key holds now, not by the entity tags'
/// order. (Before, a failure carried no source to ask: an older version's failure replaced the
/// current version's rows whenever its tag ordered it above, and a failure of the current version
/// was refused whenever its tag ordered it below, leaving the older version's rows served.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_in_the_same_second_is_fenced_by_the_current_version() {
    let generation = |etag: &str| {
        dials_lake::delta::version_generation(&SourceVersion {
            modified_ms: SAME_SECOND,
            etag: etag.to_string(),
        })
    };
    let (low, high) = (
        "\"bbbb-fail\"".to_string(),
        (0..)
            .map(|i| format!("\"aaaa-fail-{i}\""))
            .find(|t| generation(t) > generation("\"bbbb-fail\""))
            .expect("an entity tag ordered above"),
    );
    let failed = |etag: &str, current: &Arc<std::sync::Mutex<String>>| -> Arc<dyn ByteSource> {
        Arc::new(Keyed {
            inner: MemSource::new(LFN, Vec::new()).with_version(SourceVersion {
                modified_ms: SAME_SECOND,
                etag: etag.to_string(),
            }),
            etag: etag.to_string(),
            current: current.clone(),
        })
    };
    let fail = |lake: Location, src: Arc<dyn ByteSource>| async move {
        record_failure(
            &lake,
            &Workspaces::default(),
            &request(),
            Some(src),
            1,
            "ROOTFILE_ERROR",
            "corrupt",
        )
        .await
    };

    // The current version (ordered below by its tag) is in; the older one (ordered above) fails late.
    let dir = scratch("same-second-older-fails");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    let current = Arc::new(std::sync::Mutex::new(low.clone()));
    ingest_keyed(&lake, NEWER.0, &low, &current)
        .await
        .expect("current version");
    let before = signature(&dir);
    let late = fail(lake.clone(), failed(&high, &current)).await;
    assert!(
        matches!(late, Err(IngestError::Superseded(_))),
        "an older version's failure must not be recorded: {late:?}"
    );
    assert_eq!(signature(&dir), before, "the current version's rows stay");
    assert_eq!(file_status(&dir), ["FINISHED"]);

    // The older version (ordered above) was in; the key now holds a version ordered below, which fails.
    let dir = scratch("same-second-current-fails");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    let current = Arc::new(std::sync::Mutex::new(high.clone()));
    ingest_keyed(&lake, OLDER.0, &high, &current)
        .await
        .expect("older version");
    *current.lock().expect("lock") = low.clone();
    fail(lake.clone(), failed(&low, &current))
        .await
        .expect("the current version's failure is recorded");
    assert_eq!(file_status(&dir), ["ROOTFILE_ERROR"]);
    for table in ["th1", "th2", "me_index", "lumisection_index"] {
        let rows: usize = read_table(&dir.join("default").join(table))
            .iter()
            .map(|(_, b)| b.num_rows())
            .sum();
        assert_eq!(rows, 0, "{table}: the older version's rows are gone");
    }
}

/// What the committer asks on a same-second tie: one HEAD says whether the version an object
/// source opened is still the key's (not after an overwrite, nor after a delete).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_source_tells_whether_its_version_is_still_current() {
    let bucket = scratch("current-bucket");
    let store: Arc<dyn ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&bucket).expect("bucket"));
    let key = object_store::path::Path::from("store/current.root");
    let bytes = |fx: &str| PutPayload::from(std::fs::read(fixtures().join(fx)).expect("fixture"));
    store.put(&key, bytes(OLDER.0)).await.expect("put v1");
    let src = Arc::new(
        ObjectSource::open(store.clone(), key.clone(), "current.root".into())
            .await
            .expect("open"),
    );
    let ask = |s: Arc<ObjectSource>| async move {
        tokio::task::spawn_blocking(move || s.is_current())
            .await
            .expect("task")
            .expect("an object source can tell")
            .expect("HEAD")
    };
    assert!(ask(src.clone()).await, "just opened: current");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    store.put(&key, bytes(NEWER.0)).await.expect("put v2");
    assert!(!ask(src.clone()).await, "overwritten: no longer current");
    let v2 = Arc::new(
        ObjectSource::open(store.clone(), key.clone(), "current.root".into())
            .await
            .expect("open v2"),
    );
    assert!(ask(v2.clone()).await);
    store.delete(&key).await.expect("delete");
    assert!(!ask(v2).await, "deleted: no version is current");
    // Sources that cannot tell say so.
    let mem = MemSource::new(
        "m",
        std::fs::read(fixtures().join(OLDER.0)).expect("fixture"),
    );
    assert!(mem.is_current().is_none());
}
