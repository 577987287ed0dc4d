//! Crafted files (tests/fixtures/craft.py: forged entry counts, decompression bombs) through the
//! commands a user runs: `dump`/`scan`/`inspect` exit 2 with one line naming the file and the
//! problem (before: `dump` died of SIGABRT allocating 576 PB); `ingest` records an error status
//! with the reason; `up` records it too and keeps serving (before: it died and crash-looped).

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// (file, what its error says).
const CRAFTED: [(&str, &str); 4] = [
    (
        "forged_tree_entries.root",
        "declares 4611686018427387904 entries",
    ),
    (
        "forged_entries.root",
        "claims entries 0..4611686018427387904",
    ),
    ("bomb.root", "claims 1610612640 bytes decompressed"),
    ("bomb_declared.root", "limit for one object"),
];

fn dials(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dials"))
        .args(args)
        .output()
        .expect("run dials")
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/data")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dials-cli-forged-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp");
    d
}

const LFN_DIR: &str = "store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000";

#[test]
fn reading_commands_exit_2_naming_the_file_and_the_problem() {
    for (name, says) in CRAFTED {
        let path = fixtures().join("crafted").join(name).display().to_string();
        // `inspect` reads names only: a bomb in a Value basket is not its business.
        let cmds: &[&str] = if name.starts_with("bomb") {
            &["dump", "scan"]
        } else {
            &["dump", "scan", "inspect"]
        };
        for cmd in cmds {
            let out = dials(&[*cmd, &path]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{cmd} {name}: {:?} {err}",
                out.status
            );
            assert!(
                err.contains(&path) && err.contains(says),
                "{cmd} {name}: {err}"
            );
            assert!(!err.contains("internal error"), "{cmd} {name}: {err}");
        }
    }
}

#[test]
fn ingest_records_an_error_status_with_the_reason() {
    let dir = scratch("ingest");
    let lake = dir.join("lake");
    for (name, says) in CRAFTED {
        let input = dir.join("in").join(LFN_DIR).join(name);
        std::fs::create_dir_all(input.parent().expect("dir")).expect("mkdir");
        std::fs::copy(fixtures().join("crafted").join(name), &input).expect("copy");
        let out = dials(&[
            "ingest",
            input.to_str().expect("utf8"),
            "--lake",
            lake.to_str().expect("utf8"),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {:?} {err}", out.status);
        assert!(
            err.contains(says) && err.contains("_ERROR"),
            "{name}: {err}"
        );
        assert!(
            err.contains("status recorded in file_index"),
            "{name}: {err}"
        );
    }
    // One file_index record per file (what it says is checked through the API in the `up` test).
    let records = common::committed(&lake.join("default/file_index")).len();
    assert_eq!(records, CRAFTED.len());
}

/// GET `path` from 127.0.0.1:`port` as JSON (None while the server is not answering).
fn get(port: u16, path: &str) -> Option<serde_json::Value> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    serde_json::from_str(body).ok()
}

struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn copy_into(inbox: &Path, from: &Path, name: &str) {
    let to = inbox.join(LFN_DIR).join(name);
    std::fs::create_dir_all(to.parent().expect("dir")).expect("mkdir");
    std::fs::copy(from, to).expect("copy");
}

#[test]
fn up_records_forged_files_and_keeps_serving() {
    let dir = scratch("up");
    let inbox = dir.join("inbox");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    std::fs::create_dir_all(&inbox).expect("inbox");
    for (name, _) in CRAFTED {
        copy_into(&inbox, &fixtures().join("crafted").join(name), name);
    }
    let mut up = Up(Command::new(env!("CARGO_BIN_EXE_dials"))
        .args([
            "up",
            "--inbox",
            inbox.to_str().expect("utf8"),
            "--lake",
            dir.join("lake").to_str().expect("utf8"),
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dials up"));
    let wait_for = |up: &mut Up, what: &str, ok: &dyn Fn() -> bool| {
        let t0 = Instant::now();
        while !ok() {
            if let Ok(Some(st)) = up.0.try_wait() {
                panic!("dials up exited ({st}) while waiting for {what}");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(90),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let count = |q: &str| {
        get(port, &format!("/api/v1/file-index/count/{q}")).and_then(|v| v["count"].as_u64())
    };
    wait_for(&mut up, "the forged files' records", &|| {
        count("").is_some_and(|n| n == CRAFTED.len() as u64)
    });
    // Still serving, and a good file dropped afterwards is ingested: the process survived.
    copy_into(&inbox, &fixtures().join("tiny_none.root"), "good.root");
    wait_for(&mut up, "the good file", &|| {
        count("?status=FINISHED") == Some(1)
    });
    let files = get(port, "/api/v1/file-index/?page_size=50").expect("file index");
    let results = files["results"].as_array().expect("results");
    for (name, says) in CRAFTED {
        let r = results
            .iter()
            .find(|r| {
                r["logical_file_name"]
                    .as_str()
                    .is_some_and(|l| l.ends_with(name))
            })
            .unwrap_or_else(|| panic!("no record for {name}: {files}"));
        let status = r["status"].as_str().expect("status");
        assert!(status.ends_with("_ERROR"), "{name}: {r}");
        assert!(
            r["err_trace"].as_str().is_some_and(|t| t.contains(says)),
            "{name}: {r}"
        );
    }
    assert!(
        up.0.try_wait().expect("status").is_none(),
        "dials up exited"
    );
}
