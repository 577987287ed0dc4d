#!/usr/bin/env python3
"""Ingest benchmark, side by side in one run on the same files: ROOT's compiled C++ decode-only rate vs
`dials ingest` (decode + Parquet) from a local file and from emulated S3 (LocalStack) into emulated S3.

    python3 bench/ingest_bench.py [--lumis 50 200 800] [--repeat 3]

Needs: target/release/dials (cargo build --release -p dials-cli), localstack/install.sh done, PyROOT.
Reports per file size: wall time and histograms/s, peak RSS (/usr/bin/time), S3 requests and bytes read,
and the bytes fetched when a workspace keeps 10 % of the MEs (one of ten ME folders).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DIALS = os.environ.get("DIALS_BENCH_BIN") or os.path.join(REPO, "target/release/dials")  # A/B: another build
KEY = "store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/bench-{n}.root"
AWS = {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566", "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test",
       "AWS_SECRET_ACCESS_KEY": "test", "AWS_ALLOW_HTTP": "true"}


def timed(cmd, env=None):
    """Runs cmd under /usr/bin/time; returns (stdout, seconds, peak RSS MB)."""
    with tempfile.NamedTemporaryFile("r") as t:
        p = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", t.name] + cmd, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            sys.exit(f"{cmd} failed: {p.stderr[-2000:]}")
        secs, kb = t.read().split()[-2:]
    return p.stdout, float(secs), int(kb) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lumis", type=int, nargs="+", default=[50, 200, 800])
    ap.add_argument("--realistic", type=int, nargs="*", default=[],
                    help="also files of N lumis x (5,000 TH1F + 200 TH2F): ME folders are long runs of one tree")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-local", action="store_true", help="skip the local-file row")
    a = ap.parse_args()
    work = "/tmp/dials-bench"
    os.makedirs(work, exist_ok=True)
    env = dict(os.environ, **AWS)
    subprocess.run(["bash", f"{REPO}/localstack/start-localstack.sh"], check=True, capture_output=True)
    py = os.path.expanduser("~/.cache/dials-emulators/moto-venv/bin/python")
    subprocess.run([py, f"{REPO}/localstack/init.py", "--endpoint", AWS["AWS_ENDPOINT_URL"]], check=True, capture_output=True, env=env)
    ten = os.path.join(work, "ws10.json")
    with open(ten, "w") as f:
        json.dump({"default": "px", "workspaces": [{"name": "px", "me_prefixes": ["PixelPhase1/"]}]}, f)
    import boto3
    s3 = boto3.client("s3", endpoint_url=AWS["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    aclic = os.path.join(work, "aclic")
    os.makedirs(aclic, exist_ok=True)
    rows = []
    files = [(str(n), f"ingest-{n}.root", ["--lumis", str(n)]) for n in a.lumis]
    files += [(f"{n} (realistic)", f"ingest-real-{n}.root",
               ["--lumis", str(n), "--bench-float-only", "--bench-th1", "5000", "--bench-th2", "200"]) for n in a.realistic]
    for n, name, gen in files:
        path = os.path.join(work, name)
        if not os.path.exists(path):
            subprocess.run([sys.executable, f"{REPO}/tests/fixtures/gen_dqmio.py", path, "--bench"] + gen, check=True, capture_output=True)
        size = os.path.getsize(path)
        key = KEY.format(n=name.removesuffix(".root"))
        s3.upload_file(path, "dials-raw", key)
        cxx = ["root", "-l", "-b", "-q", "-e", f'gSystem->SetBuildDir("{aclic}", true)', f'{HERE}/reference/read_dqmio.C+("{path}")']
        subprocess.run(cxx, capture_output=True)
        root_rate = statistics.median(
            json.loads([l for l in subprocess.run(cxx, capture_output=True, text=True).stdout.splitlines() if l.startswith("{")][0])["hist_per_s"]
            for _ in range(a.repeat))
        res = {}
        cases = [] if a.no_local else [
            ("local file -> lake folder", [DIALS, "ingest", path, "--lake", os.path.join(work, f"lake-{name}"), "--dataset", "/ZeroBias/Run2024C-PromptReco-v1/DQMIO"])]
        for label, cmd in cases + [
            ("S3 -> S3 (LocalStack)", [DIALS, "ingest", f"s3://dials-raw/{key}", "--lake", "s3://dials-lake/bench"]),
            ("S3 -> S3, workspace keeps 10 %", [DIALS, "ingest", f"s3://dials-raw/{key}", "--lake", "s3://dials-lake/bench10", "--workspaces", ten]),
        ]:
            runs = []
            for _ in range(a.repeat):
                out, secs, rss = timed(cmd, env)
                rep = json.loads(out.strip().splitlines()[-1])
                runs.append((secs, rss, rep))
            secs = statistics.median(r[0] for r in runs)
            rss = max(r[1] for r in runs)
            rep = runs[-1][2]
            res[label] = (secs, rss, rep)
            rows.append((n, size, label, secs, rep["histograms"], rss, rep["read_requests"], rep["bytes_read"], root_rate))
    print("| lumis | file MB | path | median s | hist/s | vs ROOT C++ decode-only | peak RSS MB | read requests | bytes read / file |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, size, label, secs, h, rss, req, br, rr in rows:
        rate = h / secs if secs else 0
        print(f"| {n} | {size / 1e6:.1f} | {label} | {secs:.2f} | {rate:,.0f} | {rate / rr:.2f}x (ROOT {rr:,.0f}/s) | {rss:.0f} | {req} | {br / size:.1%} |")
    subprocess.run(["bash", f"{REPO}/localstack/stop.sh", "localstack"], capture_output=True)


if __name__ == "__main__":
    main()
