//! Operating a lake with the `dials` binary: serving never invents a lake, and a failed ingest says
//! truthfully whether its status is in the lake.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dials-lake-ops-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn serve_refuses_a_lake_that_does_not_exist_and_creates_nothing() {
    let typo = scratch("typo").join("lake-with-a-typo");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dials"))
        .args(["serve", "--lake", typo.to_str().expect("utf8"), "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dials");
    let t0 = Instant::now();
    while child.try_wait().expect("wait").is_none() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let still_serving = child.try_wait().expect("wait").is_none();
    if still_serving {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("output");
    assert!(!still_serving, "serve must refuse a missing lake at once, not serve an empty one");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no lake there"), "{err}");
    assert!(!typo.exists(), "serve created {}", typo.display());
}

#[test]
fn a_transient_ingest_failure_is_not_reported_as_recorded() {
    // The lake's th1 folder is a plain file: writing the data object fails with an I/O error of the
    // store (transient: a retry may succeed once the store is fixed), so no final status is recorded.
    let lake = scratch("transient");
    std::fs::create_dir_all(lake.join("default")).expect("lake");
    std::fs::write(lake.join("default").join("th1"), b"in the way").expect("blocker");
    let fx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/data/small_zlib.root");
    let out = Command::new(env!("CARGO_BIN_EXE_dials"))
        .args(["ingest", fx.to_str().expect("utf8"), "--lake", lake.to_str().expect("utf8"), "--dataset", "/A/B-v1/DQMIO"])
        .output()
        .expect("run dials");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("(status recorded in file_index)"), "claims a status was recorded: {err}");
    assert!(err.contains("1 file(s) failed (no status recorded in file_index: transient failures, run again)"), "{err}");
    let _ = std::fs::remove_dir_all(&lake);
}
