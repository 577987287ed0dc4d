"""ML (issue 11): models made here from code, registered with `dials ml`, scored in Rust (tract),
and read back through the real cmsdials 2.4.1 client: registry filters, bad lumisections, threshold
edits without re-run, certification/golden JSON against an independent Python implementation,
outputs equal to onnxruntime's, bad input answered with a clear status or a 4xx."""

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections import defaultdict

import numpy as np
import polars as pl
import pytest
from deltalake import DeltaTable
from cmsdials.filters import (
    LumisectionFilters,
    LumisectionHistogram1DFilters,
    LumisectionHistogram2DFilters,
    MLBadLumisectionFilters,
    MLModelsIndexFilters,
)

import ml_models
from conftest import dials_bin, serving
from test_cmsdials import client

WS = "tracker"
ME1 = "PixelPhase1/Tracks/PXBarrel/charge_PXLayer_2"
ME2 = "PixelPhase1/Phase1_MechanicalView/PXBarrel/digi_occupancy_per_SignedModuleCoord_per_SignedLadderCoord_PXLayer_1"


def dials(*args, check=True):
    r = subprocess.run([dials_bin(), *map(str, args)], capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stderr
    return r


class Ml:
    """A copy of the session lake (models change it) with the `dials ml` commands bound to it."""

    def __init__(self, lake, root):
        self.lake = root / "ml_lake"
        shutil.copytree(lake["lake"], self.lake)
        self.config = lake["config"]
        self.root = root

    def at(self):
        return ["--lake", self.lake, "--workspaces", self.config, "--workspace", WS]

    def write(self, name, data):
        p = self.root / name
        p.write_bytes(data)
        return p

    def register(self, name, onnx_bytes, inputs, *mode, extra=(), check=True):
        f = self.write(f"{name}.onnx", onnx_bytes)
        r = dials("ml", "register", *self.at(), "--name", name, "--onnx", f, "--input", ",".join(inputs), *mode, *extra, check=check)
        return json.loads(r.stdout) if r.returncode == 0 else r

    def backfill(self, name, *extra, check=True):
        r = dials("ml", "backfill", *self.at(), "--model", name, *extra, check=check)
        return r

    def scores(self, model_id):
        """The model's rows of `ml_scores`, a Delta table: read through its log (the `deltalake` package)."""
        t = DeltaTable(str(self.lake / WS / "ml_scores")).to_pyarrow_table().to_pylist()
        return [r for r in t if r["model_id"] == model_id]


@pytest.fixture(scope="module")
def ml(lake, tmp_path_factory):
    m = Ml(lake, tmp_path_factory.mktemp("ml"))
    env = dict(os.environ, DIALS_LISTING_TTL_MS="0")
    with serving("--lake", m.lake, "--workspaces", m.config, env=env) as base:
        m.base = base
        m.d = client(base, workspace=WS)
        yield m


def between(values, q):
    """A threshold between two distinct scores near quantile q (no score sits on it: tract and
    onnxruntime may differ in the last float32 bit)."""
    v = sorted(set(round(x, 3) for x in values))
    k = min(max(int(q * (len(v) - 1)), 0), len(v) - 2)
    return (v[k] + v[k + 1]) / 2


def th1_rows(d, me):
    rows = d.h1d.list_all(LumisectionHistogram1DFilters(me=me, page_size=500)).results
    return sorted(rows, key=lambda h: (h.run_number, h.ls_number, h.file_id))


def ort_scores(model_bytes, rows, output, shape=None):
    """(file, run, ls) -> onnxruntime's value, one run per batch (as the backfill batches)."""
    out = {}
    by_run = defaultdict(list)
    for h in rows:
        by_run[h.run_number].append(h)
    for run, hs in by_run.items():
        x = np.array([np.asarray(h.data, dtype=np.float32).reshape(shape or -1) for h in hs], dtype=np.float32)
        v = ml_models.run_ort(model_bytes, x, output)
        for h, s in zip(hs, v.reshape(len(hs), -1)[:, 0]):
            out[(h.file_id, run, h.ls_number)] = float(s)
    return out


@pytest.fixture(scope="module")
def models(ml):
    """Three good models (autoencoder, PCA, TH2 mode B), registered and backfilled."""
    d = ml.d
    rows = th1_rows(d, ME1)
    x = np.array([h.data for h in rows], dtype=np.float32)
    ae = ml_models.autoencoder(12)
    pca = ml_models.pca(x + np.random.default_rng(3).normal(0, 1, x.shape).astype(np.float32), 3)
    rows2 = sorted(d.h2d.list_all(LumisectionHistogram2DFilters(me=ME2, page_size=500)).results, key=lambda h: (h.run_number, h.ls_number, h.file_id))
    x2 = np.array([h.data for h in rows2], dtype=np.float32)
    energy = between((x2 ** 2).mean(axis=(1, 2)).tolist(), 0.5)
    th2 = ml_models.th2_energy(7, 12, energy)
    ae_ref = ort_scores(ae, rows, "mse")
    thr = between(ae_ref.values(), 0.5)
    docs = {
        "ae": ml.register("ae", ae, [ME1], "--metric-key", "mse", "--threshold", thr, extra=["--tag", "subsystem=pixel", "--description", "MLP autoencoder"]),
        "pca": ml.register("pca", pca, [ME1], "--metric-key", "mse", "--threshold", "-1", extra=["--tag", "kind=pca"]),
        "th2": ml.register("th2", th2, [ME2], "--flagging-key", "flag", "--metric-key", "score"),
    }
    for name, doc in docs.items():
        assert doc["ready"], (name, doc["reason"])
        ml.backfill(name)
    return {"docs": docs, "bytes": {"ae": ae, "pca": pca, "th2": th2}, "rows": rows, "rows2": rows2,
            "ae_ref": ae_ref, "pca_ref": ort_scores(pca, rows, "mse"), "th2_ref": ort_scores(th2, rows2, "score", (7, 12)),
            "th2_flag": ort_scores(th2, rows2, "flag", (7, 12)), "thr": thr}


def test_registry_through_the_client(ml, models):
    d = ml.d
    docs = models["docs"]
    listed = d.ml_models_index.list_all(MLModelsIndexFilters(page_size=1)).results
    assert sorted(m.name for m in listed) == ["ae", "pca", "th2"]
    ae = next(m for m in listed if m.name == "ae")
    assert (ae.id, ae.revision, ae.ready, ae.active, ae.type, ae.builtin_threshold, ae.metric_key) == (docs["ae"]["id"], 1, True, True, "onnx", False, "mse")
    assert ae.anomaly_threshold == pytest.approx(models["thr"])
    assert ae.input_signature[0]["me"] == ME1 and ae.input_signature[0]["dims"] == [-1, 12]
    assert [o["name"] for o in ae.output_signature] == ["recon", "mse", "flag"]
    th2 = d.ml_models_index.get(model_id=docs["th2"]["id"])
    assert (th2.builtin_threshold, th2.flagging_key, th2.anomaly_threshold, th2.metric_key) == (True, "flag", None, "score")
    assert th2.input_signature[0]["dims"] == [-1, 7, 12]
    f = MLModelsIndexFilters
    names = lambda flt: sorted(m.name for m in d.ml_models_index.list(flt).results)
    assert names(f(name="pca")) == ["pca"]
    assert names(f(name__regex="^(ae|th)")) == ["ae", "th2"]
    assert names(f(id=docs["pca"]["id"])) == ["pca"]
    assert names(f(id__in=[docs["pca"]["id"], docs["th2"]["id"]])) == ["pca", "th2"]
    assert names(f(active=True, ready=True, type="onnx")) == ["ae", "pca", "th2"]
    assert names(f(active=False)) == []
    assert names(f(input_signature_contains_me=ME2)) == ["th2"]
    assert names(f(input_signature_contains_me__regex="charge_PXLayer")) == ["ae", "pca"]
    assert names(f(tag_name="subsystem", tag_value="pixel")) == ["ae"]
    assert names(f(tag_value="pca")) == ["pca"]


def test_scores_equal_onnxruntime(ml, models):
    """Every stored score (tract, in Rust) equals onnxruntime's on the same histograms, to 1e-5."""
    for name, ref in [("ae", models["ae_ref"]), ("pca", models["pca_ref"]), ("th2", models["th2_ref"])]:
        got = {(r["file_id"], r["run_number"], r["ls_number"]): r["score"] for r in ml.scores(models["docs"][name]["id"])}
        assert got.keys() == ref.keys(), name
        a = np.array([got[k] for k in sorted(ref)])
        b = np.array([ref[k] for k in sorted(ref)])
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
    # Batches are whole runs (backfill), recorded with each score.
    assert {r["batch"] for r in ml.scores(models["docs"]["ae"]["id"])} == {"run"}
    # Mode B: the model's own flag is stored.
    flags = {(r["file_id"], r["run_number"], r["ls_number"]): r["flag"] for r in ml.scores(models["docs"]["th2"]["id"])}
    assert flags == {k: bool(v) for k, v in models["th2_flag"].items()}


def expected_bad(ref, threshold):
    """(dataset-less) (run, ls) -> max score, for the lumisections above the threshold."""
    best = {}
    for (_, run, ls), s in ref.items():
        best[(run, ls)] = max(best.get((run, ls), -np.inf), s)
    return {k: v for k, v in best.items() if v > threshold}


def test_bad_lumisections_list_and_get(ml, models):
    d = ml.d
    ae = models["docs"]["ae"]
    got = d.ml_bad_lumis.list_all(MLBadLumisectionFilters(model_id=ae["id"], page_size=2)).results
    want = expected_bad(models["ae_ref"], models["thr"])
    assert want and {(b.run_number, b.ls_number): b.metric_value for b in got} == pytest.approx(want, rel=1e-5)
    one = got[0]
    again = d.ml_bad_lumis.get(model_id=one.model_id, dataset_id=one.dataset_id, run_number=one.run_number, ls_number=one.ls_number)
    assert again.metric_value == one.metric_value
    # DIALS v1.12's five-segment path (the ME id last).
    url = f"{ml.base}/api/v1/ml-bad-lumisection/{one.model_id}/{one.dataset_id}/{one.run_number}/{one.ls_number}/{ae['input_signature'][0]['me_id']}/"
    assert status_of(url) == (200, {"model_id": one.model_id, "dataset_id": one.dataset_id, "run_number": one.run_number,
                                    "ls_number": one.ls_number, "metric_value": one.metric_value})
    assert status_of(url.replace(f"/{ae['input_signature'][0]['me_id']}/", "/1/"))[0] == 404
    # Filters: ME, run, dataset.
    f = MLBadLumisectionFilters
    assert {b.model_id for b in d.ml_bad_lumis.list_all(f(me=ME2, page_size=500)).results} == {models["docs"]["th2"]["id"]}
    runs = {b.run_number for b in d.ml_bad_lumis.list_all(f(run_number__in=[380311], page_size=500)).results}
    assert runs == {380311}
    pca_all = d.ml_bad_lumis.list_all(f(model_id__in=[models["docs"]["pca"]["id"]], dataset_id=one.dataset_id, page_size=500)).results
    assert len(pca_all) == len({(r, l) for (_, r, l) in models["pca_ref"]})  # threshold -1: every lumisection
    th2_bad = {(b.run_number, b.ls_number) for b in d.ml_bad_lumis.list_all(f(model_id=models["docs"]["th2"]["id"], page_size=500)).results}
    assert th2_bad == {(r, l) for (_, r, l), v in models["th2_flag"].items() if v}


def test_threshold_edit_changes_flags_without_rerun(ml, models):
    d = ml.d
    ae = models["docs"]["ae"]
    files = sorted((ml.lake / WS / "ml_scores").rglob("*.parquet"))
    before = {p: p.stat().st_mtime_ns for p in files}
    new = between(models["ae_ref"].values(), 0.25)
    out = json.loads(dials("ml", "update", *ml.at(), "--model", "ae", "--threshold", new).stdout)
    assert out["anomaly_threshold"] == new and out["revision"] == 1
    got = d.ml_bad_lumis.list_all(MLBadLumisectionFilters(model_id=ae["id"], page_size=500)).results
    assert {(b.run_number, b.ls_number) for b in got} == set(expected_bad(models["ae_ref"], new))
    assert {p: p.stat().st_mtime_ns for p in sorted((ml.lake / WS / "ml_scores").rglob("*.parquet"))} == before
    dials("ml", "update", *ml.at(), "--model", "ae", "--threshold", models["thr"])
    # Deactivating is a document edit too.
    dials("ml", "update", *ml.at(), "--model", "pca", "--inactive")
    assert [m.name for m in d.ml_models_index.list(MLModelsIndexFilters(active=False)).results] == ["pca"]
    dials("ml", "update", *ml.at(), "--model", "pca", "--active")
    r = dials("ml", "update", *ml.at(), "--model", "th2", "--threshold", "1", check=False)
    assert r.returncode == 2 and "no threshold" in r.stderr


def python_cert(bad_rows, runs):
    """Independent implementation (DIALS v1.12 semantics): {run: {ls: [entries]}} for every run."""
    out = {str(r): {} for r in runs}
    for (model_id, run, ls), entry in sorted(bad_rows.items()):
        if run in runs:
            out[str(run)].setdefault(str(ls), []).append(entry)
    return out


def python_golden(all_ls, bad, runs):
    out = {}
    for run in sorted(set(runs)):
        good = sorted(set(all_ls.get(run, ())) - set(bad.get(run, ())))
        ranges = []
        for ls in good:
            if ranges and ranges[-1][1] + 1 == ls:
                ranges[-1][1] = ls
            else:
                ranges.append([ls, ls])
        if ranges:
            out[str(run)] = ranges
    return out


def test_cert_and_golden_json_equal_python(ml, models):
    d = ml.d
    docs = models["docs"]
    ids = [docs["ae"]["id"], docs["th2"]["id"]]
    ds = d.dataset_index.list().results
    ds_ids = [x.dataset_id for x in ds]
    runs = [380310, 380311, 999999]
    # The predictions, as the API lists them: (model, run, ls) -> entry.
    bad_rows = {}
    for b in d.ml_bad_lumis.list_all(MLBadLumisectionFilters(model_id__in=ids, page_size=500)).results:
        doc = next(x for x in docs.values() if x["id"] == b.model_id)
        sig = doc["input_signature"][0]
        bad_rows[(b.model_id, b.run_number, b.ls_number)] = {"model_id": b.model_id, "me_id": sig["me_id"], "filename": doc["filename"], "me": sig["me"], "mse": b.metric_value}
    assert bad_rows
    cert = d.ml_bad_lumis.cert_json(model_id__in=ids, dataset_id__in=ds_ids, run_number__in=runs)
    assert cert == python_cert(bad_rows, runs)
    lumis = d.lumi.list_all(LumisectionFilters(page_size=500)).results
    all_ls = defaultdict(set)
    for l in lumis:
        all_ls[l.run_number].add(l.ls_number)
    bad = defaultdict(set)
    for (_, run, ls) in bad_rows:
        bad[run].add(ls)
    golden = d.ml_bad_lumis.golden_json(model_id__in=ids, dataset_id__in=ds_ids, run_number__in=runs)
    assert golden == python_golden(all_ls, bad, runs)
    # DIALS v1.12: GET with comma-separated parameters answers the same.
    q = f"model_id__in={','.join(map(str, ids))}&dataset_id__in={','.join(map(str, ds_ids))}&run_number__in={','.join(map(str, runs))}"
    req = lambda p: json.load(urllib.request.urlopen(urllib.request.Request(f"{ml.base}/api/v1/ml-bad-lumisection/{p}/?{q}", headers={"Workspace": WS})))
    assert req("cert-json") == cert and req("golden-json") == golden


def status_of(url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, headers={"Workspace": WS, "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_bad_input_gets_a_clear_status(ml, models):
    d = ml.d
    h_before = [(h.file_id, h.run_number, h.ls_number, h.data) for h in th1_rows(d, ME1)]
    corrupt = ml.register("corrupt", ml_models.corrupt(), [ME1], "--metric-key", "mse", "--threshold", "1")
    assert not corrupt["ready"] and "cannot load the ONNX file" in corrupt["reason"]
    wrong = ml.register("wrongdims", ml_models.autoencoder(10), [ME1], "--metric-key", "mse", "--threshold", "1")
    assert not wrong["ready"] and "cannot load the ONNX file" in wrong["reason"]
    nome = ml.register("nome", ml_models.autoencoder(12), ["No/Such/ME"], "--metric-key", "mse", "--threshold", "1")
    assert not nome["ready"] and "is not in workspace" in nome["reason"]
    nokey = ml.register("nokey", ml_models.autoencoder(12), [ME1], "--metric-key", "nope", "--threshold", "1")
    assert not nokey["ready"] and "no output 'nope'" in nokey["reason"]
    # Not-ready models are listed with their reason; backfilling one is refused.
    listed = {m.name: m for m in d.ml_models_index.list_all(MLModelsIndexFilters(ready=False, page_size=500)).results}
    assert set(listed) == {"corrupt", "wrongdims", "nome", "nokey"}
    r = ml.backfill("corrupt", check=False)
    assert r.returncode == 2 and "not ready" in r.stderr
    # A model that passes validation (one lumisection) and fails on a whole run.
    fails = ml.register("fails", ml_models.fails_on_batches(12), [ME1], "--metric-key", "mse", "--threshold", "1")
    assert fails["ready"], fails["reason"]
    r = ml.backfill("fails", check=False)
    assert r.returncode == 2 and "failed on 2 run(s)" in r.stderr
    st = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(st) == 2 and all(s["status"] == "FAILED" and "inference failed" in s["error"] for s in st)
    on_disk = json.loads((ml.lake / WS / "models" / "fails" / "1" / "runs" / "380310.json").read_text())
    assert on_disk["status"] == "FAILED" and "index out of bounds" in on_disk["error"]
    dials("ml", "update", *ml.at(), "--model", "fails", "--inactive")
    # Unknown names and ids.
    r = ml.backfill("nosuchmodel", check=False)
    assert r.returncode == 2 and "no model 'nosuchmodel'" in r.stderr
    assert status_of(f"{ml.base}/api/v1/ml-models-index/12345/")[0] == 404
    assert status_of(f"{ml.base}/api/v1/ml-models-index/abc/")[0] == 404
    assert status_of(f"{ml.base}/api/v1/ml-bad-lumisection/1/2/3/4/")[0] == 404
    code, body = status_of(f"{ml.base}/api/v1/ml-bad-lumisection/cert-json/", json.dumps({"model_id__in": [12345], "dataset_id__in": [1], "run_number__in": [1]}).encode())
    assert code == 400 and "model_id__in" in body
    # Missing or malformed parameters: 400, never 500.
    for body in [b"{}", b"not json", json.dumps({"model_id__in": ["x"], "dataset_id__in": [], "run_number__in": []}).encode()]:
        for p in ["cert-json", "golden-json"]:
            assert status_of(f"{ml.base}/api/v1/ml-bad-lumisection/{p}/", body)[0] == 400, (p, body)
    for p in ["cert-json", "golden-json"]:
        assert status_of(f"{ml.base}/api/v1/ml-bad-lumisection/{p}/")[0] == 400
        assert status_of(f"{ml.base}/api/v1/ml-bad-lumisection/{p}/?model_id__in=1&dataset_id__in=x&run_number__in=1")[0] == 400
    assert status_of(f"{ml.base}/api/v1/ml-models-index/?active=maybe")[0] == 400
    assert status_of(f"{ml.base}/api/v1/ml-bad-lumisection/?run_number=x")[0] == 400
    assert status_of(f"{ml.base}/api/v1/ml-bad-lumisection/?me__regex=(")[0] == 400
    # Histograms untouched by all of it.
    assert [(h.file_id, h.run_number, h.ls_number, h.data) for h in th1_rows(d, ME1)] == h_before


def test_reregistering_makes_a_new_revision(ml, models):
    doc = ml.register("pca", models["bytes"]["pca"], [ME1], "--metric-key", "mse", "--threshold", "-1")
    assert doc["revision"] == 2 and doc["ready"] and doc["id"] != models["docs"]["pca"]["id"]
    revs = {m.revision: m for m in ml.d.ml_models_index.list(MLModelsIndexFilters(name="pca")).results}
    assert set(revs) == {1, 2} and revs[2].active and not revs[1].active
    # Backfill twice: the same rows (idempotent).
    ml.backfill("pca")
    first = sorted((r["file_id"], r["run_number"], r["ls_number"], r["score"]) for r in ml.scores(doc["id"]))
    ml.backfill("pca", "--runs", "380310,380311")
    assert sorted((r["file_id"], r["run_number"], r["ls_number"], r["score"]) for r in ml.scores(doc["id"])) == first
    # Polars reads the same rows through the Delta log (removed objects of earlier backfills stay
    # in the folder until vacuum; a directory scan would count them twice).
    pol = pl.scan_delta(str(ml.lake / WS / "ml_scores")).filter(pl.col("model_id") == doc["id"]).collect()
    assert sorted(zip(pol["file_id"], pol["run_number"], pol["ls_number"], pol["score"])) == first
    assert (ml.lake / WS / "ml_scores" / "_delta_log").is_dir()


def test_ingest_scores_new_files_and_survives_failing_models(ml, models):
    """The ingest hook: active, ready models score a newly ingested file (batch = the file's part of
    each run); a model failing at run time records FAILED for the run and the file still FINISHES."""
    from conftest import FIXTURES, LFN
    inbox = ml.root / "inbox2"
    dst = inbox / LFN.format(primary="ZeroBias", name="d")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "small_none.root", dst)
    fails = ml.register("fails2", ml_models.fails_on_batches(12), [ME1], "--metric-key", "mse", "--threshold", "1")
    r = dials("ingest", inbox, "--lake", ml.lake, "--workspaces", ml.config)
    rep = json.loads(r.stdout.splitlines()[-1])
    fid = rep["file_id"]
    # The file is committed whatever the models did.
    files = {f.file_id: f.status for f in ml.d.file_index.list().results}
    assert files[fid] == "FINISHED"
    ae = models["docs"]["ae"]
    rows = [r for r in ml.scores(ae["id"]) if r["file_id"] == fid]
    assert rows and {(r["batch"], r["batch_id"]) for r in rows} == {("file", fid)}
    hs = [h for h in th1_rows(ml.d, ME1) if h.file_id == fid]
    ref = ort_scores(models["bytes"]["ae"], hs, "mse")
    got = {(r["file_id"], r["run_number"], r["ls_number"]): r["score"] for r in rows}
    assert got.keys() == ref.keys()
    np.testing.assert_allclose([got[k] for k in sorted(ref)], [ref[k] for k in sorted(ref)], rtol=1e-5, atol=1e-6)
    assert fails["ready"], fails["reason"]
    runs_dir = ml.lake / WS / "models" / "fails2" / "1" / "runs"
    st = [json.loads(p.read_text()) for p in sorted(runs_dir.glob("*.json"))]
    assert st and all(s["status"] == "FAILED" and s["batch"] == "file" and "index out of bounds" in s["error"] for s in st)
