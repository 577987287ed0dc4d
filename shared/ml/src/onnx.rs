//! An ONNX file loaded once with tract (pure Rust, nothing downloaded) for a batch of symbolic size.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::error::{MlError, Result};
use crate::model::OutputSig;

/// A model ready to run: inputs `float32 [N, tail...]` with `N` (lumisections) free.
pub struct OnnxModel {
    label: String,
    plan: Arc<TypedSimplePlan>,
    /// The ONNX inputs' names, in order.
    pub inputs: Vec<String>,
    /// Per-lumisection shape of each input (`[nx]` or `[ny, nx]`).
    pub tails: Vec<Vec<usize>>,
    /// The ONNX outputs, in order.
    pub outputs: Vec<OutputSig>,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("label", &self.label)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish()
    }
}

thread_local! {
    static IN_MODEL: Cell<bool> = const { Cell::new(false) };
}

/// True while this thread runs tract on a model: a process-wide panic hook that ends the process
/// (the `dials` binary has one) must let such a panic unwind, so that it becomes the model's error.
pub fn in_model() -> bool {
    IN_MODEL.with(Cell::get)
}

/// Runs `f` (tract) with panics caught and turned into their message.
fn guarded<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    IN_MODEL.with(|c| c.set(true));
    let r = catch_unwind(AssertUnwindSafe(f));
    IN_MODEL.with(|c| c.set(false));
    r.map_err(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        format!("tract panicked: {msg}")
    })
}

fn dims_of(shape: &[TDim]) -> Vec<i64> {
    shape.iter().map(|d| d.as_i64().unwrap_or(-1)).collect()
}

impl OnnxModel {
    /// Loads `bytes` for inputs whose per-lumisection shapes are `tails` (one per ONNX input, in
    /// order). A file tract cannot read, or whose declared input shapes contradict `tails`, is a
    /// [`MlError::Load`] (never a panic).
    pub fn load(label: &str, bytes: &[u8], tails: &[Vec<usize>]) -> Result<Self> {
        Self::load_for(label, bytes, tails, None)
    }

    /// [`load`](Self::load) with the batch size fixed to `batch` when given (the plan is then
    /// specialised to it; used to measure what the symbolic batch costs).
    pub fn load_for(
        label: &str,
        bytes: &[u8],
        tails: &[Vec<usize>],
        batch: Option<usize>,
    ) -> Result<Self> {
        let err = |message: String| MlError::Load {
            model: label.to_string(),
            message,
        };
        let built = guarded(|| -> TractResult<(TypedModel, Vec<String>, Vec<String>)> {
            let mut model = tract_onnx::onnx().model_for_read(&mut std::io::Cursor::new(bytes))?;
            let inputs: Vec<String> = model
                .input_outlets()?
                .iter()
                .map(|o| model.node(o.node).name.clone())
                .collect();
            if inputs.len() != tails.len() {
                return Err(TractError::msg(format!(
                    "the ONNX file has {} input(s), the model document names {} ME(s)",
                    inputs.len(),
                    tails.len()
                )));
            }
            let outputs: Vec<String> = model
                .output_outlets()?
                .iter()
                .map(|o| {
                    model
                        .outlet_label(*o)
                        .map(str::to_string)
                        .unwrap_or_else(|| model.node(o.node).name.clone())
                })
                .collect();
            let n = model.symbols.sym("N");
            for (i, tail) in tails.iter().enumerate() {
                // The file's own declaration wins over ours: a model declared for other bins is not
                // silently re-shaped (elementwise graphs would accept anything).
                let declared = &model.input_fact(i)?.shape;
                if !declared.is_open() {
                    let dims: Vec<Option<i64>> = declared
                        .dims()
                        .map(|d| d.concretize().and_then(|t| t.as_i64()))
                        .collect();
                    let fits = dims.len() == tail.len() + 1
                        && dims
                            .iter()
                            .skip(1)
                            .zip(tail)
                            .all(|(d, t)| d.is_none_or(|d| d < 0 || d as usize == *t));
                    if !fits {
                        let shown: Vec<String> = dims
                            .iter()
                            .map(|d| d.map_or("?".to_string(), |v| v.to_string()))
                            .collect();
                        return Err(TractError::msg(format!(
                            "input '{}' is declared [{}], the ME gives [N, {}]",
                            inputs[i],
                            shown.join(", "),
                            tail.iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )));
                    }
                }
                let first = batch.map_or_else(|| TDim::Sym(n.clone()), TDim::from);
                let shape: TVec<TDim> = std::iter::once(first)
                    .chain(tail.iter().map(|d| TDim::from(*d)))
                    .collect();
                model.set_input_fact(i, InferenceFact::dt_shape(f32::datum_type(), shape))?;
            }
            Ok((model.into_optimized()?, inputs, outputs))
        })
        .map_err(err)?
        .map_err(|e| err(format!("{e:#}")))?;
        let (typed, inputs, names) = built;
        let mut outputs = Vec::with_capacity(names.len());
        for (i, name) in names.into_iter().enumerate() {
            let fact = typed.output_fact(i).map_err(|e| err(format!("{e:#}")))?;
            outputs.push(OutputSig {
                name,
                dims: dims_of(fact.shape.dims()),
                data_type: format!("{:?}", fact.datum_type).to_lowercase(),
            });
        }
        let plan = typed.into_runnable().map_err(|e| err(format!("{e:#}")))?;
        Ok(OnnxModel {
            label: label.to_string(),
            plan,
            inputs,
            tails: tails.to_vec(),
            outputs,
        })
    }

    /// Runs one batch. `data[i]` holds `n` rows of input `i`'s tail shape, row-major.
    pub fn run(&self, run: i64, n: usize, data: &[Vec<f32>]) -> Result<Vec<Tensor>> {
        let fail = |message: String| MlError::Run {
            model: self.label.clone(),
            run,
            message,
        };
        let mut inputs: TVec<TValue> = TVec::new();
        for (tail, d) in self.tails.iter().zip(data) {
            let mut shape = vec![n];
            shape.extend(tail);
            let t = Tensor::from_shape::<f32>(&shape, d).map_err(|e| fail(format!("{e:#}")))?;
            inputs.push(t.into_tvalue());
        }
        let out = guarded(|| self.plan.run(inputs))
            .map_err(fail)?
            .map_err(|e| fail(format!("{e:#}")))?;
        Ok(out.into_iter().map(|v| v.into_tensor()).collect())
    }

    /// Index of an output named `key` (or given as its position, `"1"`).
    pub fn output_index(&self, key: &str) -> Option<usize> {
        self.outputs.iter().position(|o| o.name == key).or_else(|| {
            key.parse::<usize>()
                .ok()
                .filter(|i| *i < self.outputs.len())
        })
    }
}

/// One value per lumisection from an output tensor of shape `[n]` or `[n, 1]` (bool or numeric).
pub fn per_ls(t: &Tensor, n: usize) -> std::result::Result<Vec<f64>, String> {
    let shape = t.shape();
    let ok = t.len() == n && (shape.is_empty() && n == 1 || shape.first() == Some(&n));
    if !ok {
        return Err(format!(
            "output of shape {shape:?} does not give one value per lumisection ({n})"
        ));
    }
    if t.datum_type() == bool::datum_type() {
        let v = t
            .to_plain_array_view::<bool>()
            .map_err(|e| format!("{e:#}"))?;
        return Ok(v.iter().map(|b| if *b { 1.0 } else { 0.0 }).collect());
    }
    let c = t.cast_to::<f64>().map_err(|e| format!("{e:#}"))?;
    let v = c
        .to_plain_array_view::<f64>()
        .map_err(|e| format!("{e:#}"))?;
    Ok(v.iter().copied().collect())
}
