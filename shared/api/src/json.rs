//! JSON rows for the API: arrow-json's writer, with a faster encoder for `Float64` values.
//!
//! Histogram bins are mostly whole numbers (counts), and formatting a float is what the API spent
//! most of its JSON time on (`perf`: 13 % of a one-lumisection × all-MEs request in arrow-json's
//! float formatting). A whole number below 10^10 is written as its integer digits plus `.0`, byte for
//! byte what the float formatter writes for it (see the tests); anything else goes to that formatter.
//! Bin lists (`List<Float64>`, also the rows of a TH2's list of lists) are written by one loop over
//! the list's slice of values instead of one dynamically dispatched call per bin.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, FieldRef, Float64Type};
use arrow::error::ArrowError;
use arrow::json::writer::{Encoder, EncoderFactory, EncoderOptions, JsonArray, NullableEncoder};
use arrow::json::WriterBuilder;

/// Whole numbers below this magnitude take the integer path: the float formatter writes them as
/// plain digits plus `.0` (from 10^10 on it switches to `1.0e10`; checked in the tests).
const WHOLE_MAX: f64 = 1e10;

/// Appends `v` as a JSON number (`null` if it is not finite).
pub fn write_f64(v: f64, out: &mut Vec<u8>) {
    // `v as i64` truncates (one instruction; `f64::fract` is a libm call); below WHOLE_MAX it is exact.
    if v.abs() < WHOLE_MAX && (v as i64) as f64 == v && !(v == 0.0 && v.is_sign_negative()) {
        let mut digits = itoa::Buffer::new();
        out.extend_from_slice(digits.format(v as i64).as_bytes());
        out.extend_from_slice(b".0");
    } else if v.is_finite() {
        let mut buf = [0u8; lexical_core::BUFFER_SIZE];
        out.extend_from_slice(lexical_core::write(v, &mut buf));
    } else {
        out.extend_from_slice(b"null");
    }
}

#[derive(Debug)]
struct FastFloats;

impl EncoderFactory for FastFloats {
    fn make_default_encoder<'a>(
        &self,
        _field: &'a FieldRef,
        array: &'a dyn Array,
        _options: &'a EncoderOptions,
    ) -> Result<Option<NullableEncoder<'a>>, ArrowError> {
        match array.data_type() {
            DataType::Float64 => {
                let a = array.as_primitive::<Float64Type>();
                Ok(Some(NullableEncoder::new(
                    Box::new(F64Encoder(a.values())),
                    a.nulls().cloned(),
                )))
            }
            DataType::List(item) if item.data_type() == &DataType::Float64 => {
                let list = array.as_list::<i32>();
                let values = list.values().as_primitive::<Float64Type>();
                let encoder = F64ListEncoder {
                    offsets: list.value_offsets(),
                    values: values.values(),
                    nulls: values.nulls(),
                };
                Ok(Some(NullableEncoder::new(
                    Box::new(encoder),
                    list.nulls().cloned(),
                )))
            }
            _ => Ok(None),
        }
    }
}

/// One `List<Float64>` row per call: `[v, v, ...]`, a null item as `null`.
struct F64ListEncoder<'a> {
    offsets: &'a [i32],
    values: &'a [f64],
    nulls: Option<&'a arrow::buffer::NullBuffer>,
}

impl Encoder for F64ListEncoder<'_> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let (Some(&start), Some(&end)) = (self.offsets.get(idx), self.offsets.get(idx + 1)) else {
            out.extend_from_slice(b"null");
            return;
        };
        let range = usize::try_from(start).unwrap_or(0)..usize::try_from(end).unwrap_or(0);
        let Some(values) = self.values.get(range.clone()) else {
            out.extend_from_slice(b"null");
            return;
        };
        out.reserve(2 + 4 * values.len());
        out.push(b'[');
        for (k, v) in values.iter().enumerate() {
            if k != 0 {
                out.push(b',');
            }
            if self.nulls.is_some_and(|n| n.is_null(range.start + k)) {
                out.extend_from_slice(b"null");
            } else {
                write_f64(*v, out);
            }
        }
        out.push(b']');
    }
}

struct F64Encoder<'a>(&'a [f64]);

impl Encoder for F64Encoder<'_> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        match self.0.get(idx) {
            Some(v) => write_f64(*v, out),
            None => out.extend_from_slice(b"null"),
        }
    }
}

/// Writes batches as one JSON array of objects (every key present, nulls explicit).
pub fn write_rows(out: &mut Vec<u8>, batches: &[RecordBatch]) -> Result<(), ArrowError> {
    if batches.iter().all(|b| b.num_rows() == 0) {
        out.extend_from_slice(b"[]");
        return Ok(());
    }
    let mut w = WriterBuilder::new()
        .with_explicit_nulls(true)
        .with_encoder_factory(Arc::new(FastFloats))
        .build::<_, JsonArray>(out);
    for b in batches {
        w.write(b)?;
    }
    w.finish()
}

/// Rows encoded one by one, for pages cut to a byte budget: `bytes` holds every row followed by
/// `\n` (JSON escapes newlines inside strings, so `\n` only ends rows), `ends[i]` is the offset
/// just past row `i`'s `\n`.
#[derive(Debug, Default)]
pub struct Rows {
    /// Encoded rows, each ending in `\n`.
    pub bytes: Vec<u8>,
    /// End offset of each row (after its `\n`).
    pub ends: Vec<usize>,
}

impl Rows {
    /// Encodes every row of `batches` (same JSON as [`write_rows`], one row at a time).
    pub fn encode(batches: &[RecordBatch]) -> Result<Self, ArrowError> {
        let mut bytes = Vec::new();
        {
            let mut w = WriterBuilder::new()
                .with_explicit_nulls(true)
                .with_encoder_factory(Arc::new(FastFloats))
                .build::<_, arrow::json::writer::LineDelimited>(&mut bytes);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        let ends = bytes
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == b'\n')
            .map(|(i, _)| i + 1)
            .collect();
        Ok(Rows { bytes, ends })
    }

    /// Bytes of row `i` (without its `\n`).
    pub fn row(&self, i: usize) -> &[u8] {
        let start = if i == 0 {
            0
        } else {
            self.ends.get(i - 1).copied().unwrap_or(0)
        };
        let end = self.ends.get(i).map_or(start, |e| e.saturating_sub(1));
        self.bytes.get(start..end).unwrap_or(&[])
    }

    /// Appends the first `n` rows as a JSON array.
    pub fn write_array(&self, n: usize, out: &mut Vec<u8>) {
        out.push(b'[');
        for i in 0..n.min(self.ends.len()) {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(self.row(i));
        }
        out.push(b']');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, ListArray};
    use arrow::datatypes::{Field, Schema};

    fn lexical(v: f64) -> Vec<u8> {
        if !v.is_finite() {
            return b"null".to_vec();
        }
        let mut buf = [0u8; lexical_core::BUFFER_SIZE];
        lexical_core::write(v, &mut buf).to_vec()
    }

    fn ours(v: f64) -> Vec<u8> {
        let mut out = Vec::new();
        write_f64(v, &mut out);
        out
    }

    #[test]
    fn numbers_are_written_exactly_as_the_float_formatter_writes_them() {
        let mut values: Vec<f64> = (-100_000..100_000).map(f64::from).collect();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mantissa = (x >> 11) as f64;
            values.push(mantissa);
            values.push(-mantissa / 3.0);
            values.push(f64::from_bits(x));
        }
        for p in 0..=17 {
            let t = 10f64.powi(p);
            values.extend([t, t - 1.0, t + 1.0, -t, 0.5 * t, 1.0 / t]);
        }
        values.extend([
            0.0,
            -0.0,
            0.1,
            1e-7,
            1e300,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ]);
        for v in values {
            assert_eq!(ours(v), lexical(v), "{v:e} ({:016x})", v.to_bits());
        }
    }

    #[test]
    fn rows_match_arrow_json_default_writer() {
        let vals = Float64Array::from(vec![
            Some(0.0),
            Some(3.0),
            None,
            Some(2.5),
            Some(-7.0),
            Some(f64::NAN),
        ]);
        let list = ListArray::new(
            Arc::new(Field::new("item", DataType::Float64, true)),
            arrow::buffer::OffsetBuffer::from_lengths([4, 0, 2]),
            Arc::new(vals.clone()),
            None,
        );
        // A nullable list with a null row, and a TH2-like list of lists whose rows are lists.
        let edges = ListArray::new(
            Arc::new(Field::new("item", DataType::Float64, true)),
            arrow::buffer::OffsetBuffer::from_lengths([1, 3, 2]),
            Arc::new(Float64Array::from(vec![1.0, 2.0, 0.25, -0.0, 4.0, 1e-9])),
            Some(arrow::buffer::NullBuffer::from(vec![true, false, true])),
        );
        let rows = ListArray::new(
            Arc::new(Field::new("item", DataType::Float64, true)),
            arrow::buffer::OffsetBuffer::from_lengths([2, 2, 1, 0, 1]),
            Arc::new(Float64Array::from(vec![
                Some(1.0),
                Some(2.0),
                Some(3.0),
                None,
                Some(5.5),
                Some(6.0),
            ])),
            None,
        );
        let th2 = ListArray::new(
            Arc::new(Field::new("item", rows.data_type().clone(), true)),
            arrow::buffer::OffsetBuffer::from_lengths([2, 0, 3]),
            Arc::new(rows),
            None,
        );
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Float64, true),
            Field::new("data", list.data_type().clone(), false),
            Field::new("edges", edges.data_type().clone(), true),
            Field::new("data2", th2.data_type().clone(), false),
        ]));
        let x = Float64Array::from(vec![Some(1.0), None, Some(1e20)]);
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(x), Arc::new(list), Arc::new(edges), Arc::new(th2)],
        )
        .expect("batch");
        // Whole batch, and slices (offsets of a slice do not start at 0).
        for b in [batch.clone(), batch.slice(1, 2), batch.slice(2, 1)] {
            let mut ours = Vec::new();
            write_rows(&mut ours, &[b.clone()]).expect("ours");
            let mut theirs = Vec::new();
            let mut w = WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, JsonArray>(&mut theirs);
            w.write(&b).expect("write");
            w.finish().expect("finish");
            assert_eq!(
                String::from_utf8(ours.clone()).expect("utf8"),
                String::from_utf8(theirs).expect("utf8")
            );
            // Row by row, joined again: the same array.
            let rows = Rows::encode(&[b.clone()]).expect("rows");
            assert_eq!(rows.ends.len(), b.num_rows());
            let mut joined = Vec::new();
            rows.write_array(b.num_rows(), &mut joined);
            assert_eq!(joined, ours);
        }
    }
}
