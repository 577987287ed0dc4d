"""S3 → SQS → function → lake on real emulators (LocalStack and moto, started by this test from the
venvs localstack/install.sh made): uploads with CMS-shaped keys, the queue drained by `dials worker`
(in-process handler, and for LocalStack also the function binary itself behind cargo-lambda's Lambda
runtime API),
then the lake in the emulated bucket served by `dials serve --lake s3://...` and checked value by value."""

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import boto3
import pytest

from conftest import FIXTURES, REPO, dials_bin, expected_rows, free_port

EMU = {"localstack": ("start-localstack.sh", "LOCALSTACK_PORT"), "moto": ("start-moto.sh", "MOTO_PORT")}
KEY = "store/data/Run2024C/{primary}/DQMIO/PromptReco-v1/000/380/310/00000/{name}.root"


@pytest.fixture(params=["localstack", "moto", "localstack+lambda", "localstack+queued", "localstack+lambda+queued"])
def emulator(request, tmp_path):
    name = request.param.split("+")[0]
    via_lambda = "+lambda" in request.param
    # Queued commits (docs/lake.md): the ingests send their commits to a FIFO queue that a second
    # worker drains, as the deployed function's second event source does.
    queued = request.param.endswith("+queued")
    port = free_port()
    script, port_var = EMU[name]
    env = dict(os.environ, **{port_var: str(port)})
    subprocess.run(["bash", str(REPO / "localstack" / script)], check=True, env=env, capture_output=True)
    endpoint = f"http://127.0.0.1:{port}"
    aws = {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_ALLOW_HTTP": "true"}
    emu_home = Path(os.environ.get("DIALS_EMU_HOME", Path.home() / ".cache/dials-emulators"))
    py = emu_home / "moto-venv/bin/python"
    out = subprocess.run([str(py), str(REPO / "localstack/init.py"), "--endpoint", endpoint, "--visibility-timeout", "5"],
                         check=True, capture_output=True, text=True, env=dict(os.environ, **aws))
    info = json.loads(out.stdout.strip().splitlines()[-1])
    full_env = dict(os.environ, **aws)
    watch = None
    invoke_url = None
    if via_lambda:
        # The ingest function binary itself, behind cargo-lambda's Lambda runtime API emulator.
        lport = free_port()
        fn_env = dict(full_env, DIALS_LAKE="s3://dials-lake/lake", DIALS_MAX_RECEIVES="3")
        if queued:  # as sam-template.yaml sets it: the function sends, and later commits, queued commits
            fn_env["DIALS_COMMIT_QUEUE_URL"] = info["commit_queue_url"]
        watch = subprocess.Popen(
            # `--bin` without `-p`: the workspace's feature set, so the binary the build stage made is reused
            # (with `-p` the function's dependencies alone decide features and DataFusion is compiled again).
            ["cargo", "lambda", "watch", "--profile", os.environ.get("DIALS_CARGO_PROFILE", "ci"),
             "--bin", "dials-ingest", "-A", "127.0.0.1", "-P", str(lport), "--ignore-changes"],
            cwd=REPO, env=fn_env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "watch.log", "w"))
        invoke_url = f"http://127.0.0.1:{lport}/2015-03-31/functions/dials-ingest/invocations"
        deadline = time.time() + 600
        while time.time() < deadline:
            try:
                urllib.request.urlopen(urllib.request.Request(invoke_url, data=b'{"Records":[]}', method="POST"), timeout=120)
                break
            except Exception:
                if watch.poll() is not None:
                    raise RuntimeError((tmp_path / "watch.log").read_text()[-3000:])
                time.sleep(1)
    yield {"name": name, "endpoint": endpoint, "env": full_env, "info": info, "invoke_url": invoke_url, "queued": queued}
    if watch:
        watch.terminate()
        watch.wait(timeout=20)
    subprocess.run(["bash", str(REPO / "localstack/stop.sh"), name], env=env, capture_output=True)


def get(base, path, workspace=None):
    req = urllib.request.Request(base + path, headers={"Workspace": workspace} if workspace else {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def test_bucket_to_lake_through_the_queue(emulator, tmp_path):
    env = emulator["env"]
    creds = dict(endpoint_url=emulator["endpoint"], region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    s3 = boto3.client("s3", **creds)
    sqs = boto3.client("sqs", **creds)
    raw = emulator["info"].get("raw_bucket", "dials-raw")
    queue = emulator["info"]["queue_url"]
    dlq = emulator["info"]["dlq_url"]
    a = KEY.format(primary="ZeroBias", name="a b+c")  # space and plus: each emulator encodes them differently
    for _ in range(3):  # re-uploads: the lake must not change
        s3.upload_file(str(FIXTURES / "small_zlib.root"), raw, a)
    s3.upload_file(str(FIXTURES / "small_zstd.root"), raw, KEY.format(primary="JetMET0", name="j"))
    s3.put_object(Bucket=raw, Key=KEY.format(primary="ZeroBias", name="corrupt"), Body=(FIXTURES / "small_zlib.root").read_bytes()[:30000])
    s3.put_object(Bucket=raw, Key="inbox/unnamed.root", Body=(FIXTURES / "small_lz4.root").read_bytes())

    # The worker takes the last delivery from the queue's redrive policy (init.py: maxReceiveCount 3);
    # an operator's count that disagrees stops it at start instead of recording failures at the wrong time.
    bad = subprocess.run([dials_bin(), "worker", "--queue-url", queue, "--lake", "s3://dials-lake/lake", "--idle-exit", "1",
                          "--max-receives", "5"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2, bad.stderr
    assert "after 3 receives (maxReceiveCount 3)" in bad.stderr, bad.stderr

    worker = [dials_bin(), "worker", "--queue-url", queue, "--lake", "s3://dials-lake/lake", "--idle-exit", "4"]
    if emulator["invoke_url"]:
        worker += ["--invoke-url", emulator["invoke_url"]]
    commits = emulator["info"]["commit_queue_url"]
    if emulator["queued"]:
        worker += ["--commit-queue-url", commits]
        env = dict(env, DIALS_LOG="dials_lake=info")
    r = subprocess.run(worker, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    if emulator["queued"]:
        # Every good file's commits wait in the commit queue: none of its rows is in the lake yet.
        if not emulator["invoke_url"]:  # the function logs to cargo-lambda's output instead
            assert "QUEUED" in r.stderr, r.stderr[-3000:]
        attrs = sqs.get_queue_attributes(QueueUrl=commits, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
        assert int(attrs["ApproximateNumberOfMessages"]) >= 2, attrs
        th1_log = s3.list_objects_v2(Bucket="dials-lake", Prefix="lake/default/th1/_delta_log/").get("KeyCount", 0)
        assert th1_log == 0, "no th1 commit before the commit queue is drained"
        consumer = [dials_bin(), "worker", "--queue-url", commits, "--lake", "s3://dials-lake/lake", "--idle-exit", "3"]
        if emulator["invoke_url"]:
            consumer += ["--invoke-url", emulator["invoke_url"]]
        r = subprocess.run(consumer, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        if not emulator["invoke_url"]:
            assert "FINISHED" in r.stderr, r.stderr[-3000:]
    for q in (queue, dlq) + ((commits, emulator["info"]["commit_dlq_url"]) if emulator["queued"] else ()):
        attrs = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        assert attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0", (q, attrs)

    port = free_port()
    srv = subprocess.Popen([dials_bin(), "serve", "--lake", "s3://dials-lake/lake", "--listen", f"127.0.0.1:{port}"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        for _ in range(100):
            try:
                get(base, "/workspaces/")
                break
            except Exception:
                time.sleep(0.1)
        files = {f["logical_file_name"]: f for f in get(base, "/file-index/?page_size=50")["results"]}
        assert files["/" + a]["status"] == "FINISHED"
        assert files["/" + KEY.format(primary="JetMET0", name="j")]["status"] == "FINISHED"
        assert files["/" + KEY.format(primary="ZeroBias", name="corrupt")]["status"] == "ROOTFILE_ERROR"
        assert files["inbox/unnamed.root"]["status"] == "PARSING_ERROR"  # no dataset: never guessed
        assert len(files) == 4
        exp = expected_rows()
        rows = []
        url = "/th1/?dataset=/ZeroBias/Run2024C-PromptReco-v1/DQMIO&page_size=500"
        rows = get(base, url)["results"]
        want = {k: v for k, v in exp.items() if v["kind"].startswith("TH1")}
        assert len(rows) == len(want)  # 3 uploads of one file = one copy of its rows
        for h in rows:
            w = want[(h["run_number"], h["ls_number"], h["me"])]
            assert (h["x_min"], h["x_max"], h["x_bin"], h["entries"], h["data"]) == (w["x_min"], w["x_max"], w["x_bin"], w["entries"], w["data"])
        runs = get(base, "/run/")["results"]
        assert sorted((r["dataset"], r["run_number"]) for r in runs) == sorted(
            (d, run) for d in ("/ZeroBias/Run2024C-PromptReco-v1/DQMIO", "/JetMET0/Run2024C-PromptReco-v1/DQMIO") for run in (380310, 380311))
    finally:
        srv.terminate()
        srv.wait(timeout=10)
