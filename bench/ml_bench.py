"""ML benchmarks (issue 11), side by side in one run, medians:

1. inference throughput, lumisections/s on one core: tract (in `dials ml bench`, ci profile with
   tract and dials-ml at opt-level 2) vs onnxruntime (PyPI, intra_op_num_threads=1) on the same
   model and batch shape: a ~100-bin MLP autoencoder and a 100-bin scikit-learn PCA;
2. ingest time of one file with 10 active models vs none (`dials ingest`, ML hook on).

    DIALS_BIN=target/ci/dials python bench/ml_bench.py [--reps 7]
"""

import argparse
import json
import re
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "python"))
import ml_models  # noqa: E402

BIN = os.environ.get("DIALS_BIN", str(REPO / "target" / "ci" / "dials"))
LFN = "store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/{}.root"
ME1 = "PixelPhase1/Tracks/PXBarrel/charge_PXLayer_2"
# tests/fixtures/gen_dqmio.py's folders of the --bench file (TH1F every 4th ME).
BENCH_FOLDERS = ["PixelPhase1/Tracks/PXBarrel", "SiStrip/MechanicalView/TIB/layer_1", "EcalBarrel/EBOccupancyTask",
                 "Hcal/DigiTask/ADC/SubdetPM", "JetMET/MET/pfMETT1/Cleaned", "Muons/MuonRecoAnalyzer",
                 "Tracking/TrackParameters/generalTracks/GeneralProperties", "L1T/L1TStage2uGT", "CSC/CSCOfflineMonitor",
                 "DT/02-Segments/Wheel0"]


def ort_rate(model, n_bins, n_ls, reps):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    x = (np.random.default_rng(0).integers(0, 1000, (n_ls, n_bins)) / 10).astype(np.float32)
    name = s.get_inputs()[0].name
    s.run(None, {name: x})
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        s.run(None, {name: x})
        times.append(time.perf_counter() - t)
    return n_ls / statistics.median(times)


def tract_rate(path, n_bins, n_ls, reps, fixed=False):
    r = subprocess.run([BIN, "ml", "bench", "--onnx", path, "--shape", str(n_bins), "--n-ls", str(n_ls), "--reps", str(reps)]
                       + (["--fixed"] if fixed else []), capture_output=True, text=True, check=True)
    return json.loads(r.stdout)["ls_per_s"]


def ingest_seconds(root, lake, config, fixture, n_models, reps, copies=1):
    """Median wall time of one `dials ingest` of `copies` copies of a file into `lake` (re-ingests)."""
    inbox = root / f"inbox{n_models}-{copies}"
    for c in range(copies):
        dst = inbox / LFN.format(f"bench{n_models}-{c}")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(fixture, dst)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        r = subprocess.run([BIN, "ingest", inbox, "--lake", lake, "--workspaces", config], check=True, capture_output=True, text=True,
                           env=dict(os.environ, DIALS_LOG=os.environ.get("DIALS_LOG", "info")))
        times.append(time.perf_counter() - t)
        HOOK[n_models].extend(float(m) for m in re.findall(r"ML hook done.*?seconds\W+([0-9.]+)", re.sub(r"\x1b\[[0-9;]*m", "", r.stderr)))
    return statistics.median(times)


# Seconds of the ML hook itself per ingested file (its `ML hook done` log line), per model count.
HOOK = {0: [], 10: []}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--n-ls", type=int, default=2000)
    ap.add_argument("--only-ingest", action="store_true", help="skip the inference table")
    ap.add_argument("--fixture", default=str(REPO / "tests" / "fixtures" / "data" / "small_zlib.root"),
                    help="file ingested with 10 models vs none; the benchmark file of bench/run.py "
                         "(tests/fixtures/gen_dqmio.py FILE --bench: 50 lumisections x 1000 TH1 of 100 bins) gets "
                         "10 different 100-bin TH1F inputs")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dials-mlbench-"))
    n = 100
    ae = ml_models.autoencoder(n, hidden=16)
    train = (np.random.default_rng(1).integers(0, 1000, (500, n)) / 10).astype(np.float32)
    pca = ml_models.pca(train, 10)
    print(f"inference, one core, batches of {a.n_ls} lumisections x {n} bins, median of {a.reps}:")
    print("| model | tract, symbolic batch (what dials runs) LS/s | tract, batch fixed at load LS/s | onnxruntime LS/s | tract / ort |")
    print("|---|---|---|---|---|")
    for name, model in [] if a.only_ingest else [("autoencoder 100-16-100", ae), ("PCA 100 -> 10 (+ reconstruction MSE)", pca)]:
        p = tmp / f"{name.split()[0]}.onnx"
        p.write_bytes(model)
        t = tract_rate(p, n, a.n_ls, a.reps * 3)
        tf = tract_rate(p, n, a.n_ls, a.reps * 3, fixed=True)
        o = ort_rate(model, n, a.n_ls, a.reps * 3)
        print(f"| {name} | {t:,.0f} | {tf:,.0f} | {o:,.0f} | {t / o:.2f} |")

    # Ingest with 10 active models vs none: two lakes built the same way from the same file.
    config = tmp / "ws.json"
    config.write_text(json.dumps({"default": "all", "workspaces": [{"name": "all"}]}))
    base = tmp / "seed"
    seed = base / LFN.format("seed")
    seed.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(a.fixture, seed)
    results = {}
    for k in (0, 10):
        lake = tmp / f"lake{k}"
        subprocess.run([BIN, "ingest", base, "--lake", lake, "--workspaces", config], check=True, capture_output=True)
        for i in range(k):
            f = tmp / f"m{i}.onnx"
            if "bench" in Path(a.fixture).name:
                me, bins = f"{BENCH_FOLDERS[(4 * i) % 10]}/h1_TH1F_{4 * i:04d}", 100
            else:
                me, bins = ME1, 12
            f.write_bytes(ml_models.autoencoder(bins, hidden=16, seed=i))
            r = subprocess.run([BIN, "ml", "register", "--lake", lake, "--workspaces", config, "--name", f"m{i}", "--onnx", f,
                                "--input", me, "--metric-key", "mse", "--threshold", "1"], check=True, capture_output=True, text=True)
            assert json.loads(r.stdout)["ready"], r.stdout
    size = Path(a.fixture).stat().st_size / 1e6
    print(f"\n`dials ingest` wall time (process start included), {Path(a.fixture).name} ({size:.2f} MB), median of {a.reps}:")
    print("| files per `dials ingest` | 0 active models, s | 10 active models, s | overhead |")
    print("|---|---|---|---|")
    for copies in ((1,) if "bench" in Path(a.fixture).name else (1, 8)):
        # Interleaved so that machine load hits both alike.
        t0, t10 = [], []
        for _ in range(a.reps):
            t0.append(ingest_seconds(tmp, tmp / "lake0", config, a.fixture, 0, 1, copies))
            t10.append(ingest_seconds(tmp, tmp / "lake10", config, a.fixture, 10, 1, copies))
        m0, m10 = statistics.median(t0), statistics.median(t10)
        print(f"| {copies} | {m0:.3f} | {m10:.3f} | {100 * (m10 / m0 - 1):+.0f} % |")
        print(f"  all runs, s: 0 models {', '.join(f'{x:.2f}' for x in t0)}; 10 models {', '.join(f'{x:.2f}' for x in t10)}")
        if HOOK[10]:
            print(f"  the hook itself (10 models), s: {', '.join(f'{x:.2f}' for x in HOOK[10])}; median {statistics.median(HOOK[10]):.2f}")
        HOOK[10].clear()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
