"""ML the serverless way (issue 11) on an emulated S3 + SQS (moto): the queue drained by `dials worker`,
which runs the ingest function's handler in-process with the same ML extension as the function.
A model folder dropped under `<lake>/<workspace>/models/<name>/` is registered and backfilled by its
upload event; a file ingested later is scored by the hook; a replaced revision document is checked
again (ready: false with the reason); a bad upload never crashes anything; `ml_scores` is a Delta
table the `deltalake` package reads."""

import json
import re
import subprocess

import boto3
import numpy as np
import pytest
from deltalake import DeltaTable

import ml_models
from conftest import FIXTURES, dials_bin
from test_emulators import KEY, emulator  # noqa: F401 (the fixture)

LAKE = "s3://dials-lake/lake"
WS = "default"
ME1 = "PixelPhase1/Tracks/PXBarrel/charge_PXLayer_2"


def notify(sqs, queue, key):
    """The notification S3 sends for the lake bucket's `model.json` uploads (sam-template.yaml)."""
    body = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "dials-lake"}, "object": {"key": key}}}]}
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))


def drain(env, queue):
    """Runs `dials worker` until the queue is idle; with DIALS_ML_QUEUE_URL set (as the function has it
    in AWS), backfills fan out one message per run to the same queue and the worker scores them."""
    env = dict(env, DIALS_ML_QUEUE_URL=queue)
    r = subprocess.run([dials_bin(), "worker", "--queue-url", queue, "--lake", LAKE, "--idle-exit", "4"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def models(env):
    r = subprocess.run([dials_bin(), "ml", "list", "--lake", LAKE], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return {(d["name"], d["revision"]): d for d in map(json.loads, r.stdout.splitlines())}


@pytest.mark.parametrize("emulator", ["moto"], indirect=True)
def test_models_dropped_into_the_bucket(emulator):
    env = emulator["env"]
    creds = dict(endpoint_url=emulator["endpoint"], region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    s3 = boto3.client("s3", **creds)
    sqs = boto3.client("sqs", **creds)
    raw = emulator["info"].get("raw_bucket", "dials-raw")
    queue = emulator["info"]["queue_url"]
    opts = {"AWS_ENDPOINT_URL": emulator["endpoint"], "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test", "AWS_ALLOW_HTTP": "true"}

    s3.upload_file(str(FIXTURES / "small_zlib.root"), raw, KEY.format(primary="ZeroBias", name="a"))
    drain(env, queue)

    # A model folder dropped under the workspace's models prefix: ONNX first, the document last.
    prefix = f"lake/{WS}/models/ae/"
    s3.put_object(Bucket="dials-lake", Key=prefix + "model.onnx", Body=ml_models.autoencoder(12))
    s3.put_object(Bucket="dials-lake", Key=prefix + "model.json", Body=json.dumps(
        {"inputs": [ME1], "metric_key": "mse", "anomaly_threshold": 1e9, "description": "dropped", "tags": [{"name": "k", "value": "v"}]}))
    notify(sqs, queue, prefix + "model.json")
    # A bad upload: not an ONNX file. Registered, not ready, with the reason.
    s3.put_object(Bucket="dials-lake", Key=f"lake/{WS}/models/junk/model.onnx", Body=b"not onnx")
    s3.put_object(Bucket="dials-lake", Key=f"lake/{WS}/models/junk/model.json", Body=json.dumps({"inputs": [ME1], "metric_key": "mse", "anomaly_threshold": 1}))
    notify(sqs, queue, f"lake/{WS}/models/junk/model.json")
    r = drain(env, queue)
    # Two notifications, then one backfill message per run (two runs) through the queue.
    handled = sum(int(n) for n in re.findall(r"worker: (\d+) message", r.stderr))
    assert handled == 4, r.stderr[-3000:]

    docs = models(env)
    ae = docs[("ae", 1)]
    assert ae["ready"] and ae["active"] and ae["description"] == "dropped", ae
    junk = docs[("junk", 1)]
    assert not junk["ready"] and "ONNX" in junk["reason"], junk
    left = [o["Key"] for o in s3.list_objects_v2(Bucket="dials-lake", Prefix=f"lake/{WS}/models/ae/").get("Contents", [])]
    assert prefix + "model.json" not in left and prefix + "1/model.json" in left, left

    # The upload's backfill scored every run, whole runs per batch, into the Delta table.
    table = f"{LAKE}/{WS}/ml_scores"
    rows = [r for r in DeltaTable(table, storage_options=opts).to_pyarrow_table().to_pylist() if r["model_id"] == ae["id"]]
    assert rows and {r["batch"] for r in rows} == {"run"}
    assert {r["run_number"] for r in rows} == {380310, 380311}
    backfilled = len(rows)

    # A file ingested later: the hook scores its lumisections (batch = the file).
    s3.upload_file(str(FIXTURES / "small_zstd.root"), raw, KEY.format(primary="ZeroBias", name="b"))
    drain(env, queue)
    rows = [r for r in DeltaTable(table, storage_options=opts).to_pyarrow_table().to_pylist() if r["model_id"] == ae["id"]]
    assert {r["batch"] for r in rows} == {"run", "file"}
    assert len([r for r in rows if r["batch"] == "run"]) == backfilled
    assert all(np.isfinite(r["score"]) for r in rows)

    # Replacing the revision's document: checked again; an invalid edit is listed not ready with the reason.
    doc_key = prefix + "1/model.json"
    edited = dict(ae, flagging_key="flag")  # two threshold modes
    s3.put_object(Bucket="dials-lake", Key=doc_key, Body=json.dumps(edited))
    notify(sqs, queue, doc_key)
    drain(env, queue)
    ae2 = models(env)[("ae", 1)]
    assert not ae2["ready"] and "threshold mode" in ae2["reason"], ae2
    # Fixed again: ready, and the threshold edit is kept (no re-run).
    fixed = dict(ae, anomaly_threshold=0.5)
    s3.put_object(Bucket="dials-lake", Key=doc_key, Body=json.dumps(fixed))
    notify(sqs, queue, doc_key)
    drain(env, queue)
    ae3 = models(env)[("ae", 1)]
    assert ae3["ready"] and ae3["anomaly_threshold"] == 0.5 and ae3["reason"] is None, ae3
