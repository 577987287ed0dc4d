//! The `dials` binary as a user runs it: output formats, exit codes, messages.

use std::path::PathBuf;
use std::process::{Command, Output};

fn dials(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dials"))
        .args(args)
        .output()
        .expect("run dials")
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/data")
        .join(name)
        .display()
        .to_string()
}

fn scratch(name: &str, bytes: &[u8]) -> String {
    let dir = std::env::temp_dir().join(format!("dials-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write");
    p.display().to_string()
}

#[test]
fn dump_prints_one_json_line_per_element_with_the_required_keys() {
    let out = dials(&["dump", &fixture("small_zlib.root")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf8");
    let expected = std::fs::read_to_string(fixture("small_zlib.expected.jsonl")).expect("expected");
    assert_eq!(text.lines().count(), expected.lines().count());
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
        for k in ["run_number", "ls_number", "me", "kind"] {
            assert!(v.get(k).is_some(), "{k} missing in {line}");
        }
        let kind = v["kind"].as_str().expect("kind");
        if ["Int", "Float", "String"].contains(&kind) {
            assert!(v.get("value").is_some());
        } else {
            for k in ["x_min", "x_max", "x_bin", "entries", "data"] {
                assert!(v.get(k).is_some(), "{k} missing for {kind}");
            }
            assert!(v["entries"].is_i64());
            if kind.starts_with("TH2") || kind == "TProfile2D" {
                let rows = v["data"].as_array().expect("rows");
                assert_eq!(rows.len() as u64, v["y_bin"].as_u64().expect("y_bin"));
                assert_eq!(
                    rows[0].as_array().expect("row").len() as u64,
                    v["x_bin"].as_u64().expect("x_bin")
                );
            }
        }
    }
}

#[test]
fn dump_filters_by_regex() {
    let out = dials(&[
        "dump",
        &fixture("small_zlib.root"),
        "--me-regex",
        "^Hcal/DigiTask/",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert!(text.lines().count() > 0);
    assert!(text.lines().all(|l| l.contains("\"me\":\"Hcal/DigiTask/")));
    let bad = dials(&[
        "dump",
        &fixture("small_zlib.root"),
        "--me-regex",
        "(unclosed",
    ]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn inspect_and_scan_summarise() {
    let out = dials(&["inspect", &fixture("small_zstd.root")]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert!(text.contains("runs: 2"), "{text}");
    assert!(text.contains("run 380310: 3 lumisections (1-3)"), "{text}");
    assert!(text.contains("TProfile2D"), "{text}");
    let out = dials(&["inspect", "--json", &fixture("layout12.root")]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["layout"], 12);
    let out = dials(&["inspect", "--json", &fixture("small_zlib.root")]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["keys"]["Indices"], "TTree");
    assert_eq!(v["keys"]["MetaData/ProcessHistories"], "TTree");
    assert_eq!(v["keys"]["MetaData/ParameterSets"], "TTree");
    assert_eq!(v["streamer_infos"]["TH1"], 8, "ROOT 6.40 writes TH1 v8");
    assert_eq!(v["streamer_infos"]["TAttMarker"], 3);
    assert_eq!(v["streamer_infos"]["TTree"], 20);

    let out = dials(&[
        "scan",
        &fixture("small_lz4.root"),
        &fixture("small_lzma.root"),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert_eq!(text.lines().count(), 2);
    assert!(
        text.lines()
            .all(|l| l.contains(": ok, 168 elements decoded")),
        "{text}"
    );
}

#[test]
fn bad_input_exits_2_with_one_line_naming_the_file() {
    let full = std::fs::read(fixture("small_zlib.root")).expect("fixture");
    let cases = [
        ("empty.root", Vec::new()),
        ("text.root", b"this is not ROOT\n".to_vec()),
        ("truncated.root", full[..full.len() / 2].to_vec()),
    ];
    for (name, bytes) in cases {
        let path = scratch(name, &bytes);
        for cmd in ["inspect", "dump", "scan"] {
            let out = dials(&[cmd, &path]);
            assert_eq!(out.status.code(), Some(2), "{cmd} {name}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(&path), "{cmd} {name}: {err}");
            assert!(
                out.stdout.is_empty() || cmd == "scan",
                "{cmd} {name} printed data"
            );
        }
    }
    let out = dials(&["dump", &fixture("nondqmio.root")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a DQMIO file"));
    let out = dials(&["inspect", "/nonexistent/file.root"]);
    assert_eq!(out.status.code(), Some(2));
}
