//! Benchmark: decode every TH1x/TH2x of a DQMIO file, the same work as
//! `bench/reference/read_dqmio.C` (ROOT's compiled reader) and `read_pyroot.py`.
//!
//! `cargo run --release -p dials-dqmio --example decode_bench -- FILE [--threads N] [--repeat R] [--inflate-only]`
//!
//! Prints one JSON line per repetition, like the reference readers:
//! `{"reader":"dials_rs","threads":N,"histograms":H,"seconds":S,"hist_per_s":R,"checksum":C}`.
//! The timer includes opening the file (header, keys, tree metadata, Indices); ROOT's excludes TFile::Open.
//! `--inflate-only` reads and decompresses the same baskets without decoding, to measure inflate's share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use dials_dqmio::tree::read_basket;
use dials_dqmio::{DqmioFile, MeKind, MeValue, Selection};

const KINDS: [MeKind; 8] = MeKind::DIALS_HISTOGRAMS;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let file = args
        .first()
        .ok_or("usage: decode_bench FILE [--threads N] [--repeat R] [--inflate-only]")?
        .clone();
    let opt = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let threads = opt("--threads", 1);
    let repeat = opt("--repeat", 5);
    let inflate_only = args.iter().any(|a| a == "--inflate-only");
    for _ in 0..repeat {
        let t0 = Instant::now();
        let dq = DqmioFile::open_path(&file)?;
        let kinds: Vec<MeKind> = KINDS
            .into_iter()
            .filter(|k| dq.trees().contains_key(k))
            .collect();
        let count = AtomicU64::new(0);
        let checksum = Mutex::new(0f64);
        let next = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    let mut local = 0f64;
                    // Work-stealing over kinds: each thread takes the next tree not yet decoded.
                    while let Some(kind) = kinds.get(next.fetch_add(1, Ordering::Relaxed) as usize)
                    {
                        if inflate_only {
                            let tree = &dq.trees()[kind].tree;
                            for b in &tree.branches {
                                for i in 0..b.basket_count() {
                                    let basket = read_basket(dq.root(), b, i).expect("basket");
                                    local += basket.data.len() as f64 * 0.0;
                                    if b.name == "Value" {
                                        count.fetch_add(basket.len() as u64, Ordering::Relaxed);
                                    }
                                }
                            }
                            continue;
                        }
                        dq.for_each_of_kind(*kind, &Selection::default(), |me| {
                            if let MeValue::Hist(h) = &me.value {
                                local += match h.kind.dim() {
                                    1 => h.data_1d().iter().sum::<f64>(),
                                    _ => h.data_2d().iter().map(|r| r.iter().sum::<f64>()).sum(),
                                };
                            }
                            count.fetch_add(1, Ordering::Relaxed);
                            Ok(())
                        })
                        .expect("decode");
                    }
                    *checksum.lock().expect("lock") += local;
                });
            }
        });
        let secs = t0.elapsed().as_secs_f64();
        let n = count.load(Ordering::Relaxed);
        println!(
            "{{\"reader\":\"{}\",\"threads\":{threads},\"histograms\":{n},\"seconds\":{secs:.6},\"hist_per_s\":{:.1},\"checksum\":{}}}",
            if inflate_only { "dials_rs_inflate_only" } else { "dials_rs" },
            n as f64 / secs,
            checksum.into_inner().expect("lock")
        );
    }
    Ok(())
}
