//! Inference throughput on synthetic input (`dials ml bench`; docs/benchmarks.md compares it with
//! onnxruntime on the same model and batch shape).

use std::time::Instant;

use crate::error::Result;
use crate::onnx::OnnxModel;

/// Timings of one model: seconds per batch of each repetition.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    /// Lumisections per batch.
    pub n_ls: usize,
    /// Seconds per batch, one per repetition.
    pub seconds: Vec<f64>,
    /// Median lumisections per second (one thread).
    pub ls_per_s: f64,
}

/// Runs `reps` batches of `n_ls` lumisections of pseudo-random bins (after one warm-up batch).
pub fn run(
    bytes: &[u8],
    tail: &[usize],
    n_ls: usize,
    reps: usize,
    fixed: bool,
) -> Result<BenchResult> {
    let model = OnnxModel::load_for("bench", bytes, &[tail.to_vec()], fixed.then_some(n_ls))?;
    let per: usize = tail.iter().product();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<f32> = (0..n_ls * per)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 1000) as f32 / 10.0
        })
        .collect();
    let input = vec![data];
    model.run(0, n_ls, &input)?;
    let mut seconds = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        let out = model.run(0, n_ls, &input)?;
        seconds.push(t.elapsed().as_secs_f64());
        std::hint::black_box(out);
    }
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    Ok(BenchResult {
        n_ls,
        seconds,
        ls_per_s: n_ls as f64 / median,
    })
}
