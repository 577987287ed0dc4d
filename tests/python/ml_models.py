"""ONNX models made from code for the ML tests and the ML benchmark (never downloaded): an
autoencoder-like MLP written with onnx.helper (DIALS v1.12 outputs: reconstruction, per-LS MSE,
per-LS flag), scikit-learn PCA converted by skl2onnx with the reconstruction error appended, a TH2
model, and broken ones (corrupt bytes, a model that fails at run time)."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 13)]


def _model(graph):
    m = helper.make_model(graph, opset_imports=OPSET, producer_name="dials-rs tests")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m.SerializeToString()


def autoencoder(n_bins, hidden=8, seed=1, flag_at=0.5):
    """X [N, n_bins] -> recon (MLP with a ReLU bottleneck), mse [N], flag [N] (mse > flag_at)."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.3, (n_bins, hidden)).astype(np.float32)
    b1 = rng.normal(0, 0.1, hidden).astype(np.float32)
    w2 = rng.normal(0, 0.3, (hidden, n_bins)).astype(np.float32)
    b2 = rng.normal(0, 0.1, n_bins).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in [(w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"),
                                                         (np.array(flag_at, np.float32), "t")]]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["r0"]),
        helper.make_node("Add", ["r0", "b2"], ["recon"]),
        helper.make_node("Sub", ["recon", "x"], ["d"]),
        helper.make_node("Mul", ["d", "d"], ["d2"]),
        helper.make_node("ReduceMean", ["d2"], ["mse"], axes=[1], keepdims=0),
        helper.make_node("Greater", ["mse", "t"], ["flag"]),
    ]
    g = helper.make_graph(
        nodes, "autoencoder",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_bins])],
        [helper.make_tensor_value_info("recon", TensorProto.FLOAT, ["N", n_bins]),
         helper.make_tensor_value_info("mse", TensorProto.FLOAT, ["N"]),
         helper.make_tensor_value_info("flag", TensorProto.BOOL, ["N"])],
        inits)
    return _model(g)


def pca(train, n_components=3):
    """scikit-learn PCA fitted on `train` [n, bins], converted by skl2onnx, with the per-LS
    reconstruction error appended as output `mse` (the PCA scores stay output `variable`)."""
    from sklearn.decomposition import PCA
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    p = PCA(n_components=n_components).fit(train)
    m = convert_sklearn(p, initial_types=[("x", FloatTensorType([None, train.shape[1]]))], target_opset=13)
    g = m.graph
    out = g.output[0].name
    g.initializer.extend([numpy_helper.from_array(p.components_.astype(np.float32), "pca_components"),
                          numpy_helper.from_array(p.mean_.astype(np.float32), "pca_mean")])
    g.node.extend([
        helper.make_node("MatMul", [out, "pca_components"], ["pca_r0"]),
        helper.make_node("Add", ["pca_r0", "pca_mean"], ["pca_recon"]),
        helper.make_node("Sub", ["pca_recon", "x"], ["pca_d"]),
        helper.make_node("Mul", ["pca_d", "pca_d"], ["pca_d2"]),
        helper.make_node("ReduceMean", ["pca_d2"], ["mse"], axes=[1], keepdims=0),
    ])
    g.output.append(helper.make_tensor_value_info("mse", TensorProto.FLOAT, [None]))
    onnx.checker.check_model(m)
    return m.SerializeToString()


def th2_energy(ny, nx, flag_at):
    """X [N, ny, nx] -> score = mean of squares over the bins, flag = score > flag_at (mode B)."""
    nodes = [
        helper.make_node("Mul", ["x", "x"], ["x2"]),
        helper.make_node("ReduceMean", ["x2"], ["score"], axes=[1, 2], keepdims=0),
        helper.make_node("Greater", ["score", "t"], ["flag"]),
    ]
    g = helper.make_graph(
        nodes, "th2_energy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", ny, nx])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
         helper.make_tensor_value_info("flag", TensorProto.BOOL, ["N"])],
        [numpy_helper.from_array(np.array(flag_at, np.float32), "t")])
    return _model(g)


def fails_on_batches(n_bins):
    """Runs on one lumisection, raises on more: it looks up a one-element table at index N-1
    (N = lumisections in the batch), which no shape analysis can rule out before it runs."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Sub", ["n", "one"], ["i"]),
        helper.make_node("Gather", ["table", "i"], ["v"], axis=0),
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=0),
        helper.make_node("Add", ["m", "v"], ["mse"]),
    ]
    g = helper.make_graph(
        nodes, "fails_on_batches",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_bins])],
        [helper.make_tensor_value_info("mse", TensorProto.FLOAT, ["N"])],
        [numpy_helper.from_array(np.array(0, np.int64), "zero"), numpy_helper.from_array(np.array(1, np.int64), "one"),
         numpy_helper.from_array(np.array([0.5], np.float32), "table")])
    return _model(g)


def corrupt():
    return b"\x08\x07this is not an ONNX protobuf" + bytes(range(200))


def run_ort(model_bytes, x, output):
    """onnxruntime's value of `output` on `x` (the reference)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    return s.run([output], {s.get_inputs()[0].name: x})[0]
