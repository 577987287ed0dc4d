//! Any byte string: opening it as a DQMIO file and decoding every element must return, never panic,
//! and never allocate beyond what the input can hold (libFuzzer's -rss_limit_mb / -malloc_limit_mb).
#![no_main]

use std::sync::Arc;

use dials_dqmio::{DqmioFile, MemSource, Selection};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let src = Arc::new(MemSource::new("fuzz", data.to_vec()));
    if let Ok(file) = DqmioFile::open(src) {
        let _ = file.for_each(&Selection::default(), |me| {
            std::hint::black_box(&me);
            Ok(())
        });
        for kind in file.trees().keys() {
            let _ = file.names(*kind);
        }
    }
});
