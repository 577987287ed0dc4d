"""Delta commits on emulated S3 (LocalStack and moto, started here): the primitive they rest on
(`If-None-Match: *` — of many concurrent PUTs of one new key exactly one succeeds), then many
`dials ingest` processes committing into the same S3 lake at once: every row exactly once, every
file FINISHED, and the tables read back by the `deltalake` package straight from the bucket."""

import subprocess
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.exceptions import ClientError
from deltalake import DeltaTable

from conftest import FIXTURES, dials_bin, emulator_running, expected_rows

LFN = "store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/c{i:02d}.root"
PROCESSES = 12


@pytest.fixture(params=["localstack", "moto"])
def s3(request):
    with emulator_running(request.param) as (endpoint, env):
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
        client.create_bucket(Bucket="delta-lake")
        yield {"name": request.param, "endpoint": endpoint, "env": env, "client": client}


def test_conditional_put_has_exactly_one_winner(s3):
    client = s3["client"]

    def put(i, key):
        try:
            client.put_object(Bucket="delta-lake", Key=key, Body=f"writer {i}".encode(), IfNoneMatch="*")
            return i
        except ClientError as e:
            assert e.response["Error"]["Code"] in ("PreconditionFailed", "ConditionalRequestConflict"), e.response
            return None

    for rep in range(5):
        key = f"race/_delta_log/{rep:020d}.json"
        with ThreadPoolExecutor(max_workers=25) as pool:
            won = [w for w in pool.map(lambda i: put(i, key), range(50)) if w is not None]
        assert len(won) == 1, f"{s3['name']}: {len(won)} writers created {key}"
        body = client.get_object(Bucket="delta-lake", Key=key)["Body"].read().decode()
        assert body == f"writer {won[0]}"


def test_concurrent_ingests_into_one_s3_lake_land_exactly_once(s3, tmp_path):
    lake = "s3://delta-lake/lake"
    inputs = []
    for i in range(PROCESSES):
        p = tmp_path / LFN.format(i=i)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes((FIXTURES / "small_zlib.root").read_bytes())
        inputs.append(p)
    procs = [subprocess.Popen([dials_bin(), "ingest", str(p), "--lake", lake], env=s3["env"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for p in inputs]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    opts = {"AWS_ENDPOINT_URL": s3["endpoint"], "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test", "AWS_ALLOW_HTTP": "true"}
    exp = expected_rows()
    th1 = DeltaTable(f"{lake}/default/th1", storage_options=opts).to_pyarrow_table().to_pylist()
    want = {k for k, v in exp.items() if v["kind"].startswith("TH1")}
    per_key = {}
    for r in th1:
        k = (r["run_number"], r["ls_number"], r["me"])
        per_key[k] = per_key.get(k, 0) + 1
    assert set(per_key) == want and set(per_key.values()) == {PROCESSES}, "every row once per file"
    files = DeltaTable(f"{lake}/default/file_index", storage_options=opts).to_pyarrow_table().to_pylist()
    assert len(files) == PROCESSES and {f["status"] for f in files} == {"FINISHED"}
    lumis = DeltaTable(f"{lake}/default/lumisection_index", storage_options=opts).to_pyarrow_table().to_pylist()
    per_file = {}
    for r in lumis:
        per_file.setdefault(r["file_id"], []).append((r["run_number"], r["ls_number"]))
    assert len(per_file) == PROCESSES
    first = sorted(next(iter(per_file.values())))
    assert len(set(first)) == len(first) and all(sorted(v) == first for v in per_file.values())
