//! Any byte string: opening it as a DQMIO file and decoding every element must return, never panic,
//! and never allocate beyond what the input can hold (libFuzzer's -rss_limit_mb / -malloc_limit_mb).
//!
//! Half of the mutations are structure-aware: [`fields`] walks the ROOT structure of the input (file
//! header, key list, key headers, byte counts and 64-bit numbers inside uncompressed records,
//! basket headers found through basket seeks, compression block headers) and one length, count or
//! offset field is rewritten with a value that stresses the reader (0, -1, 2^62, ±1, ×1000, the
//! file length, 16 MiB...). Random byte flips almost never produce a consistent forged count inside
//! a record; these do. The other half are libFuzzer's own mutations.
#![no_main]

use std::sync::Arc;

use dials_dqmio::{DqmioFile, MemSource, Selection};
use libfuzzer_sys::{fuzz_mutator, fuzz_target, fuzzer_mutate};

fuzz_target!(|data: &[u8]| {
    let src = Arc::new(MemSource::new("fuzz", data.to_vec()));
    if let Ok(file) = DqmioFile::open(src) {
        let _ = file.for_each(&Selection::default(), |me| {
            std::hint::black_box(&me);
            Ok(())
        });
        let named = Selection { name: Some(regex::Regex::new("a").expect("regex")), ..Default::default() };
        let _ = file.for_each(&named, |me| {
            std::hint::black_box(&me);
            Ok(())
        });
        for kind in file.trees().keys() {
            let _ = file.names(*kind);
        }
    }
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    let mut rng = Rng(u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    if rng.next() % 2 == 0 {
        let found = fields::find(&data[..size]);
        // A kind of field first, then one of that kind: entry counts are a few among thousands
        // of numbers, and they are the fields that broke the reader.
        let kinds: Vec<fields::Kind> = fields::Kind::ALL.into_iter().filter(|k| found.iter().any(|f| f.kind == *k)).collect();
        if !kinds.is_empty() {
            let kind = kinds[(rng.next() % kinds.len() as u64) as usize];
            let of_kind: Vec<&fields::Field> = found.iter().filter(|f| f.kind == kind).collect();
            let f = *of_kind[(rng.next() % of_kind.len() as u64) as usize];
            let v = fields::stress_value(&mut rng, f, size as u64);
            f.write(&mut data[..size], v);
            return size;
        }
    }
    fuzzer_mutate(data, size, max_size)
});

/// xorshift64*: the mutator must be deterministic given libFuzzer's seed.
pub struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

mod fields {
    use super::Rng;

    /// How a field is stored.
    #[derive(Debug, Clone, Copy)]
    pub enum Form {
        /// Big-endian integer of this many bytes (2, 4 or 8): ROOT's streamed numbers.
        Be(usize),
        /// A ROOT byte count: `0x40000000 | n`, 4 bytes.
        ByteCount,
        /// 3-byte little-endian size of a compression block header.
        Le3,
    }

    /// What a field is, as far as the walk can tell.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Kind {
        /// File header and key header fields (sizes, offsets).
        Key,
        /// ROOT byte counts inside records.
        ByteCount,
        /// Other 64-bit numbers inside records (byte totals, basket seeks and entry tables).
        Number,
        /// 64-bit numbers followed, 16 bytes on, by a larger one: a TTree's or TBranch's fEntries
        /// (followed by fZipBytes, resp. fTotBytes).
        EntryCount,
        /// Basket header fields (buffer size, entry count, fLast).
        Basket,
        /// Compression block header sizes.
        Block,
    }

    impl Kind {
        pub const ALL: [Kind; 6] = [Kind::Key, Kind::ByteCount, Kind::Number, Kind::EntryCount, Kind::Basket, Kind::Block];
    }

    /// A length, count or offset field of the input.
    #[derive(Debug, Clone, Copy)]
    pub struct Field {
        pub at: usize,
        pub form: Form,
        pub value: u64,
        pub kind: Kind,
    }

    impl Field {
        pub fn write(&self, data: &mut [u8], v: u64) {
            match self.form {
                Form::Be(w) => {
                    if let Some(d) = data.get_mut(self.at..self.at + w) {
                        d.copy_from_slice(&v.to_be_bytes()[8 - w..]);
                    }
                }
                Form::ByteCount => {
                    if let Some(d) = data.get_mut(self.at..self.at + 4) {
                        d.copy_from_slice(&(0x4000_0000 | (v as u32 & 0x3FFF_FFFF)).to_be_bytes());
                    }
                }
                Form::Le3 => {
                    if let Some(d) = data.get_mut(self.at..self.at + 3) {
                        d.copy_from_slice(&(v as u32).to_le_bytes()[..3]);
                    }
                }
            }
        }
    }

    /// A value likely to break a reader that trusts the field.
    pub fn stress_value(rng: &mut Rng, f: Field, file_len: u64) -> u64 {
        let v = f.value;
        match rng.next() % 12 {
            0 => 0,
            1 => u64::MAX, // -1
            2 => 1 << 62,
            3 => 0x7FFF_FFFF,
            4 => v.wrapping_add(1),
            5 => v.wrapping_sub(1),
            6 => v.saturating_mul(1000),
            7 => file_len,
            8 => 0xFF_FFFF,
            9 => 0x8000_0000,
            10 => v / 2,
            _ => rng.next() >> (rng.next() % 64),
        }
    }

    fn be(d: &[u8], at: usize, w: usize) -> Option<u64> {
        let s = d.get(at..at.checked_add(w)?)?;
        Some(s.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b)))
    }

    /// The fields of a key header at `at`; returns (nbytes, keylen, objlen) when it looks like one.
    fn key(d: &[u8], at: usize, out: &mut Vec<Field>) -> Option<(u64, u64, u64)> {
        if at >= d.len() {
            return None; // also keeps `at + small` from overflowing below
        }
        let nbytes = be(d, at, 4)?;
        let version = be(d, at + 4, 2)?;
        let objlen = be(d, at + 6, 4)?;
        let keylen = be(d, at + 14, 2)?;
        if nbytes == 0 || nbytes > d.len() as u64 * 2 || !(18..=4096).contains(&keylen) || objlen > 1 << 31 {
            return None;
        }
        out.push(Field { at, form: Form::Be(4), value: nbytes, kind: Kind::Key });
        out.push(Field { at: at + 6, form: Form::Be(4), value: objlen, kind: Kind::Key });
        out.push(Field { at: at + 14, form: Form::Be(2), value: keylen, kind: Kind::Key });
        let seek_w = if version > 1000 { 8 } else { 4 };
        out.push(Field { at: at + 18, form: Form::Be(seek_w), value: be(d, at + 18, seek_w)?, kind: Kind::Key });
        Some((nbytes, keylen, objlen))
    }

    /// Fields of the record of the key at `at`: basket header (when the key is a basket's), block
    /// headers of a compressed payload, byte counts and 64-bit numbers of an uncompressed one.
    /// Returns candidate offsets (64-bit numbers pointing inside the file) for more keys.
    fn record(d: &[u8], at: usize, out: &mut Vec<Field>) -> Vec<usize> {
        let Some((nbytes, keylen, objlen)) = key(d, at, out) else { return Vec::new() };
        let (start, end) = (at + keylen as usize, (at + nbytes as usize).min(d.len()));
        if d.get(at + 18..start).is_some_and(|h| h.windows(7).any(|w| w == b"TBasket")) {
            // [version: 2][fBufferSize][fNevBufSize][fNevBuf][fLast][flag] end the basket's key.
            let b = start - 17;
            for off in [0, 4, 8, 12] {
                if let Some(v) = be(d, b + off, 4) {
                    out.push(Field { at: b + off, form: Form::Be(4), value: v, kind: Kind::Basket });
                }
            }
        }
        let mut seeks = Vec::new();
        if start >= end {
            return seeks;
        }
        if (end - start) as u64 != objlen {
            // Compressed: the first block header's sizes.
            if d.get(start + 9).is_some() {
                out.push(Field { at: start + 3, form: Form::Le3, value: be_le3(d, start + 3), kind: Kind::Block });
                out.push(Field { at: start + 6, form: Form::Le3, value: be_le3(d, start + 6), kind: Kind::Block });
            }
            return seeks;
        }
        for p in start..end.saturating_sub(4) {
            let Some(w) = be(d, p, 4) else { break };
            if w & 0xC000_0000 == 0x4000_0000 && (w & 0x3FFF_FFFF) as usize <= end - p {
                out.push(Field { at: p, form: Form::ByteCount, value: w & 0x3FFF_FFFF, kind: Kind::ByteCount });
            }
            // 64-bit numbers: entry counts, byte totals, basket seeks (high half zero, value > 0).
            // Only the first of overlapping windows (a number's leading zero bytes make the windows
            // shifted right by 1..4 bytes look like numbers too).
            let number = |q: usize| q + 8 <= end && be(d, q, 8).is_some_and(|v| v > 0 && v >> 40 == 0);
            if number(p) && !(p > start && number(p - 1)) {
                if let Some(v) = be(d, p, 8) {
                    let count = be(d, p + 16, 8).is_some_and(|t| t >= v && t >> 40 == 0);
                    let kind = if count { Kind::EntryCount } else { Kind::Number };
                    out.push(Field { at: p, form: Form::Be(8), value: v, kind });
                    if (v as usize) < d.len() && v as usize != at {
                        seeks.push(v as usize);
                    }
                }
            }
        }
        seeks
    }

    fn be_le3(d: &[u8], at: usize) -> u64 {
        d.get(at..at + 3).map_or(0, |s| u64::from(s[0]) | u64::from(s[1]) << 8 | u64::from(s[2]) << 16)
    }

    /// Every field found in `d`: file header, the top key list, each listed key's record, and the
    /// records of keys (baskets) that 64-bit numbers inside uncompressed records point at.
    pub fn find(d: &[u8]) -> Vec<Field> {
        let mut out = Vec::new();
        if !d.starts_with(b"root") || d.len() < 64 {
            return out;
        }
        let Some(version) = be(d, 4, 4) else { return out };
        let large = version >= 1_000_000;
        let w = if large { 8 } else { 4 };
        let begin = be(d, 8, 4).unwrap_or(0) as usize;
        out.push(Field { at: 12, form: Form::Be(w), value: be(d, 12, w).unwrap_or(0), kind: Kind::Key }); // fEND
        let name_at = 12 + 2 * w + 8; // fNbytesName
        let nbytes_name = be(d, name_at, 4).unwrap_or(0) as usize;
        out.push(Field { at: name_at, form: Form::Be(4), value: nbytes_name as u64, kind: Kind::Key });
        let info_at = name_at + 4 + 1 + 4; // fSeekInfo, then fNbytesInfo
        out.push(Field { at: info_at, form: Form::Be(w), value: be(d, info_at, w).unwrap_or(0), kind: Kind::Key });
        out.push(Field { at: info_at + w, form: Form::Be(4), value: be(d, info_at + w, 4).unwrap_or(0), kind: Kind::Key });
        // Top directory: [version][ctime][mtime][nbytes keys][nbytes name][seek dir][seek parent][seek keys].
        let dir = begin + nbytes_name;
        let Some(dv) = be(d, dir, 2) else { return out };
        let sw = if dv > 1000 { 8 } else { 4 };
        let seek_keys_at = dir + 2 + 4 + 4 + 4 + 4 + 2 * sw;
        let Some(seek_keys) = be(d, seek_keys_at, sw) else { return out };
        out.push(Field { at: seek_keys_at, form: Form::Be(sw), value: seek_keys, kind: Kind::Key });
        let mut todo: Vec<usize> = Vec::new();
        let seek_keys = seek_keys as usize;
        if let Some((_, keylen, _)) = key(d, seek_keys, &mut out) {
            let list = seek_keys + keylen as usize;
            if let Some(n) = be(d, list, 4) {
                out.push(Field { at: list, form: Form::Be(4), value: n, kind: Kind::Key });
                // Each listed key: its header here, and its record at its fSeekKey.
                let mut p = list + 4;
                for _ in 0..n.min(64) {
                    let Some((_, klen, _)) = key(d, p, &mut out) else { break };
                    let version = be(d, p + 4, 2).unwrap_or(0);
                    let sw = if version > 1000 { 8 } else { 4 };
                    if let Some(s) = be(d, p + 18, sw) {
                        todo.push(s as usize);
                    }
                    p += klen as usize;
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        while let Some(at) = todo.pop() {
            if seen.len() > 4096 || !seen.insert(at) {
                continue;
            }
            let before = out.len();
            let more = record(d, at, &mut out);
            if out.len() > before {
                todo.extend(more);
            }
        }
        out
    }
}
