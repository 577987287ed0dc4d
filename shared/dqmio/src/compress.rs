//! ROOT's compressed payloads: a sequence of blocks, each with a 9-byte header
//! `[algorithm tag: 2][method: 1][compressed size: 3 LE][uncompressed size: 3 LE]`.
//!
//! Payloads over 16 MiB are several blocks back to back. Every block's output size is checked
//! against its header, checksums are verified where the format has them (zlib adler32 via
//! libdeflate, lz4's xxhash64, zstd's frame checksum when present), and memory is only reserved
//! one block (≤ 16 MiB) at a time.
//!
//! Blocks alone do not bound a payload: 96 zstd blocks of 16 MiB of zeros take 51 kB on disk and
//! claim 1.5 GiB. So every payload's claimed size is charged to a [`Budget`] before anything is
//! allocated: at most [`Limits::max_object_bytes`] per object, and per read of a file at most what
//! the file declares it holds (see `DqmioFile`). Callers check the object's own bound first (a
//! basket cannot hold more than its branch's `fTotBytes`).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Algorithm, Error, Result};

/// Default [`Limits::max_object_bytes`]: 256 MiB. ROOT grows basket buffers to ~25 MB in large
/// DQMIO files and a 1500×1500 TH2D basket is 18 MB; the ingest function has 1 GB of memory.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 256 << 20;

/// What a reader may decompress, whatever the file claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest decompressed object (one key payload or one basket).
    pub max_object_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
        }
    }
}

/// Decompressed bytes still allowed: per object and in total for one read. Shared by the threads of
/// a read (the prefetcher charges what it decompresses ahead).
#[derive(Debug)]
pub struct Budget {
    object: u64,
    total: u64,
    why_total: &'static str,
    used: AtomicU64,
}

impl Budget {
    /// At most `object` bytes per object and `total` bytes in all (`why_total` says where that
    /// number comes from, for the message).
    pub fn new(limits: Limits, total: u64, why_total: &'static str) -> Self {
        Budget {
            object: limits.max_object_bytes,
            total,
            why_total,
            used: AtomicU64::new(0),
        }
    }

    /// Only the per-object limit.
    pub fn per_object(limits: Limits) -> Self {
        Budget::new(limits, u64::MAX, "")
    }

    /// Decompressed bytes charged so far.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Reserves `claimed` decompressed bytes for `what` at file offset `at`, or fails without
    /// reserving anything.
    pub fn charge(&self, claimed: u64, what: &'static str, at: u64) -> Result<()> {
        if claimed > self.object {
            let bound = "the reader's limit for one object (Limits::max_object_bytes)".to_string();
            return Err(Error::TooLarge {
                what,
                at,
                claimed,
                limit: self.object,
                bound,
            });
        }
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.saturating_add(claimed);
            if next > self.total {
                let bound = format!(
                    "what is left of this read's budget of {} bytes ({})",
                    self.total, self.why_total
                );
                return Err(Error::TooLarge {
                    what,
                    at,
                    claimed,
                    limit: self.total.saturating_sub(used),
                    bound,
                });
            }
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }
}

/// Largest expansion a block of this algorithm can legitimately have (deflate: 1032:1; lz4: a
/// literal-free sequence gives at most 255 bytes per input byte). zstd and lzma have no useful bound.
fn max_ratio(algorithm: Algorithm) -> Option<usize> {
    match algorithm {
        Algorithm::Zlib => Some(1032),
        Algorithm::Lz4 => Some(255),
        _ => None,
    }
}

/// Size of a block header.
pub const HEADER_LEN: usize = 9;

/// Decompresses a whole ROOT payload of `compressed.len()` bytes into `expected` bytes, after
/// charging `expected` to `budget`. `file_offset` is only used in error messages.
pub fn decompress(
    compressed: &[u8],
    expected: usize,
    file_offset: u64,
    budget: &Budget,
) -> Result<Vec<u8>> {
    budget.charge(expected as u64, "compressed payload", file_offset)?;
    let mut out = Vec::with_capacity(
        expected
            .min(compressed.len().saturating_mul(8))
            .min(1 << 26),
    );
    let mut pos = 0usize;
    let mut inflater = None;
    while out.len() < expected {
        let at = file_offset + pos as u64;
        let hdr = compressed
            .get(pos..pos + HEADER_LEN)
            .ok_or(Error::Truncated {
                what: "compression block header",
                at,
                needed: HEADER_LEN as u64,
                available: compressed.len().saturating_sub(pos) as u64,
            })?;
        let algorithm = match &hdr[0..2] {
            b"ZL" => Algorithm::Zlib,
            b"XZ" => Algorithm::Lzma,
            b"L4" => Algorithm::Lz4,
            b"ZS" => Algorithm::Zstd,
            b"CS" => Algorithm::OldRoot,
            other => {
                return Err(Error::malformed(
                    "compression block header",
                    at,
                    format!("unknown algorithm tag {:?}", String::from_utf8_lossy(other)),
                ))
            }
        };
        let csize = u24(&hdr[3..6]);
        let usize_ = u24(&hdr[6..9]);
        let body = compressed
            .get(pos + HEADER_LEN..pos + HEADER_LEN + csize)
            .ok_or(Error::Truncated {
                what: "compressed block",
                at,
                needed: csize as u64,
                available: compressed.len().saturating_sub(pos + HEADER_LEN) as u64,
            })?;
        if max_ratio(algorithm).is_some_and(|r| usize_ > csize.saturating_mul(r) + HEADER_LEN) {
            return Err(Error::malformed(
                "compressed block",
                at,
                format!("{csize} bytes of {algorithm} cannot expand to {usize_} bytes"),
            ));
        }
        if usize_ > expected - out.len() {
            return Err(Error::malformed(
                "compressed block",
                at,
                format!(
                    "block expands to {usize_} bytes, only {} expected",
                    expected - out.len()
                ),
            ));
        }
        let start = out.len();
        out.resize(start + usize_, 0);
        let dst = &mut out[start..];
        match algorithm {
            Algorithm::Zlib => {
                let d = inflater.get_or_insert_with(libdeflater::Decompressor::new);
                let n = d
                    .zlib_decompress(body, dst)
                    .map_err(|e| Error::Decompress {
                        algorithm,
                        at,
                        detail: e.to_string(),
                    })?;
                check_len(algorithm, at, n, usize_)?;
            }
            Algorithm::Lz4 => {
                let (sum, block) = body.split_at_checked(8).ok_or(Error::Truncated {
                    what: "lz4 checksum",
                    at,
                    needed: 8,
                    available: body.len() as u64,
                })?;
                let expected_sum = u64::from_be_bytes(
                    sum.try_into()
                        .map_err(|_| Error::malformed("lz4", at, "checksum"))?,
                );
                if xxhash_rust::xxh64::xxh64(block, 0) != expected_sum {
                    return Err(Error::Checksum { algorithm, at });
                }
                let n = lz4_flex::block::decompress_into(block, dst).map_err(|e| {
                    Error::Decompress {
                        algorithm,
                        at,
                        detail: e.to_string(),
                    }
                })?;
                check_len(algorithm, at, n, usize_)?;
            }
            Algorithm::Zstd => {
                let n =
                    zstd::bulk::decompress_to_buffer(body, dst).map_err(|e| Error::Decompress {
                        algorithm,
                        at,
                        detail: e.to_string(),
                    })?;
                check_len(algorithm, at, n, usize_)?;
            }
            Algorithm::Lzma => {
                let mut stream =
                    liblzma::stream::Stream::new_stream_decoder(u64::MAX, 0).map_err(|e| {
                        Error::Decompress {
                            algorithm,
                            at,
                            detail: e.to_string(),
                        }
                    })?;
                let status = stream
                    .process(body, dst, liblzma::stream::Action::Finish)
                    .map_err(|e| Error::Decompress {
                        algorithm,
                        at,
                        detail: e.to_string(),
                    })?;
                let n = stream.total_out() as usize;
                if status != liblzma::stream::Status::StreamEnd {
                    return Err(Error::Decompress {
                        algorithm,
                        at,
                        detail: format!("stream not finished ({status:?})"),
                    });
                }
                check_len(algorithm, at, n, usize_)?;
            }
            Algorithm::OldRoot => {
                return Err(Error::Unsupported(format!(
                    "ROOT's old 'CS' compression (block at offset {at})"
                )))
            }
        }
        pos += HEADER_LEN + csize;
        if usize_ == 0 {
            return Err(Error::malformed("compressed block", at, "empty block"));
        }
    }
    Ok(out)
}

/// Returns the algorithm of the first block of a compressed payload, if it has a known tag.
pub fn algorithm_of(compressed: &[u8]) -> Option<Algorithm> {
    match compressed.get(0..2)? {
        b"ZL" => Some(Algorithm::Zlib),
        b"XZ" => Some(Algorithm::Lzma),
        b"L4" => Some(Algorithm::Lz4),
        b"ZS" => Some(Algorithm::Zstd),
        b"CS" => Some(Algorithm::OldRoot),
        _ => None,
    }
}

fn check_len(algorithm: Algorithm, at: u64, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::Decompress {
            algorithm,
            at,
            detail: format!("produced {got} bytes, header says {want}"),
        });
    }
    Ok(())
}

fn u24(b: &[u8]) -> usize {
    b[0] as usize | (b[1] as usize) << 8 | (b[2] as usize) << 16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(tag: &[u8; 2], body: &[u8], usize_: usize) -> Vec<u8> {
        let mut v = tag.to_vec();
        v.push(0);
        v.extend_from_slice(&(body.len() as u32).to_le_bytes()[..3]);
        v.extend_from_slice(&(usize_ as u32).to_le_bytes()[..3]);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn zstd_and_lz4_round_trip_and_checksum() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 7) as u8).collect();
        let z = zstd::bulk::compress(&data, 3).unwrap();
        assert_eq!(
            decompress(&block(b"ZS", &z, data.len()), data.len(), 0, &any()).unwrap(),
            data
        );

        let l = lz4_flex::block::compress(&data);
        let mut body = xxhash_rust::xxh64::xxh64(&l, 0).to_be_bytes().to_vec();
        body.extend_from_slice(&l);
        assert_eq!(
            decompress(&block(b"L4", &body, data.len()), data.len(), 0, &any()).unwrap(),
            data
        );
        body[10] ^= 1;
        assert!(matches!(
            decompress(&block(b"L4", &body, data.len()), data.len(), 0, &any()),
            Err(Error::Checksum { .. })
        ));
    }

    #[test]
    fn forged_sizes_are_errors_not_allocations() {
        let b = block(b"ZL", &[1, 2, 3], 0xFF_FFFF);
        assert!(decompress(&b, 1 << 40, 0, &any()).is_err());
        assert!(decompress(&b"XX\0\0\0\0\0\0\0"[..], 10, 0, &any()).is_err());
        assert!(decompress(&[], 10, 0, &any()).is_err());
        // A 3-byte zlib body cannot inflate to 16 MiB: refused before the block is allocated.
        let e = decompress(&b, 0xFF_FFFF, 0, &any()).unwrap_err();
        assert!(e.to_string().contains("cannot expand"), "{e}");
    }

    fn any() -> Budget {
        Budget::new(
            Limits {
                max_object_bytes: u64::MAX,
            },
            u64::MAX,
            "",
        )
    }

    #[test]
    fn budgets_refuse_before_allocating_and_reserve_nothing_on_refusal() {
        let b = Budget::new(
            Limits {
                max_object_bytes: 100,
            },
            250,
            "test",
        );
        assert!(matches!(
            b.charge(101, "x", 7),
            Err(Error::TooLarge {
                claimed: 101,
                limit: 100,
                at: 7,
                ..
            })
        ));
        b.charge(100, "x", 0).unwrap();
        b.charge(100, "x", 0).unwrap();
        let e = b.charge(60, "x", 0).unwrap_err();
        assert!(matches!(e, Error::TooLarge { limit: 50, .. }), "{e}");
        assert_eq!(b.used(), 200);
        b.charge(50, "x", 0).unwrap();
        // A payload claiming more than the object limit fails before decompressing anything.
        let data = vec![0u8; 1000];
        let z = zstd::bulk::compress(&data, 3).unwrap();
        let small = Budget::per_object(Limits {
            max_object_bytes: 999,
        });
        assert!(matches!(
            decompress(&block(b"ZS", &z, 1000), 1000, 0, &small),
            Err(Error::TooLarge { .. })
        ));
        assert_eq!(small.used(), 0);
    }
}
