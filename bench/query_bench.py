#!/usr/bin/env python3
"""Query benchmark: warm latency of the DIALS API (`dials serve`, DataFusion) vs DuckDB answering the same
questions on the same Parquet, in one run.

    python3 bench/query_bench.py [--runs 20] [--lumis 200] [--requests 30]

Builds (once, cached in /tmp/dials-bench/qlake) a lake of runs x lumis x (1000 TH1 + 100 TH2) histograms from
ROOT-generated files (gen_dqmio.py --bench), ingested with target/release/dials. Reports p50/p95 per query.
DuckDB runs in-process with one warm connection (no HTTP, no JSON); ours includes HTTP + JSON.
"""

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DIALS = os.environ.get("DIALS_BENCH_BIN") or os.path.join(REPO, "target/release/dials")  # A/B: another build
DS = "/ZeroBias/Run2024C-PromptReco-v1/DQMIO"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def build_lake(work, runs, lumis):
    lake = os.path.join(work, "qlake")
    marker = os.path.join(lake, f".built-{runs}x{lumis}")
    if os.path.exists(marker):
        return lake
    src = os.path.join(work, "qsrc")
    os.makedirs(src, exist_ok=True)
    for i in range(runs):
        run = 380000 + i
        p = os.path.join(src, f"store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/{run // 1000}/{run % 1000:03d}/00000/f{i}.root")
        if not os.path.exists(p):
            os.makedirs(os.path.dirname(p), exist_ok=True)
            subprocess.run([sys.executable, f"{REPO}/tests/fixtures/gen_dqmio.py", p, "--bench", "--lumis", str(lumis),
                            "--first-run", str(run), "--seed", str(i + 1)], check=True, capture_output=True)
    t = time.time()
    subprocess.run([DIALS, "ingest", src, "--lake", lake, "--concurrency", "2"], check=True, capture_output=True)
    print(f"lake built: {runs} runs x {lumis} lumis, ingest {time.time() - t:.1f} s", file=sys.stderr)
    open(marker, "w").close()
    return lake


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--lumis", type=int, default=200)
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--s3", action="store_true", help="serve the lake from LocalStack (uploaded once) instead of the folder")
    a = ap.parse_args()
    work = "/tmp/dials-bench"
    os.makedirs(work, exist_ok=True)
    lake = build_lake(work, a.runs, a.lumis)
    import duckdb
    import pyarrow as pa
    import pyarrow.ipc  # noqa: F401
    con = duckdb.connect()
    th1 = f"read_parquet('{lake}/default/th1/**/*.parquet', hive_partitioning = true)"
    li = f"read_parquet('{lake}/default/lumisection_index/*.parquet')"
    n_hist = con.execute(f"SELECT COUNT(*) FROM {th1}").fetchone()[0] + con.execute(
        f"SELECT COUNT(*) FROM read_parquet('{lake}/default/th2/**/*.parquet', hive_partitioning = true)").fetchone()[0]
    me = con.execute(f"SELECT me FROM {th1} WHERE me LIKE 'PixelPhase1/%' LIMIT 1").fetchone()[0]
    run = 380000 + a.runs // 2
    ls = a.lumis // 2
    port = 18000 + os.getpid() % 1000
    serve_lake, env = lake, dict(os.environ)
    if a.s3:
        env.update(AWS_ENDPOINT_URL="http://127.0.0.1:4566", AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="test",
                   AWS_SECRET_ACCESS_KEY="test", AWS_ALLOW_HTTP="true")
        subprocess.run(["bash", f"{REPO}/localstack/start-localstack.sh"], check=True, capture_output=True)
        py = os.path.expanduser("~/.cache/dials-emulators/moto-venv/bin/python")
        subprocess.run([py, f"{REPO}/localstack/init.py"], check=True, capture_output=True, env=env)
        import boto3
        s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
        for root, _, files in os.walk(lake):
            for f in files:
                if f.endswith(".parquet"):
                    full = os.path.join(root, f)
                    s3.upload_file(full, "dials-lake", "qlake/" + os.path.relpath(full, lake))
        serve_lake = "s3://dials-lake/qlake"
    srv = subprocess.Popen([DIALS, "serve", "--lake", serve_lake, "--listen", f"127.0.0.1:{port}"], stderr=subprocess.DEVNULL, env=env)
    base = f"http://127.0.0.1:{port}/api/v1"
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/workspaces/", timeout=1)
            break
        except Exception:
            time.sleep(0.1)
    q = urllib.parse.quote
    cols = "dataset, me, dataset_id, file_id, run_number, ls_number, me_id, x_min, x_max, x_bin, entries, data"
    queries = [
        ("one ME x one run, all lumisections",
         f"/th1/?me={q(me)}&run_number={run}&page_size=500",
         f"SELECT {cols} FROM {th1} WHERE me = '{me}' AND run_number = {run} ORDER BY dataset_id, run_number, ls_number, me_id"),
        ("one lumisection x all MEs (first 500)",
         f"/th1/?run_number={run}&ls_number={ls}&page_size=500",
         f"SELECT {cols} FROM {th1} WHERE run_number = {run} AND ls_number = {ls} ORDER BY dataset_id, run_number, ls_number, me_id LIMIT 500"),
        ("me__regex list page (100)",
         f"/th1/?me__regex={q('Tracking/.*_00[0-4]')}&page_size=100",
         f"SELECT {cols} FROM {th1} WHERE regexp_matches(me, 'Tracking/.*_00[0-4]') ORDER BY dataset_id, run_number, ls_number, me_id LIMIT 100"),
        ("one lumisection x all MEs (all 1,000), Arrow: format=arrow vs DuckDB to_arrow_table()",
         f"/th1/?run_number={run}&ls_number={ls}&format=arrow",
         f"SELECT {cols} FROM {th1} WHERE run_number = {run} AND ls_number = {ls} ORDER BY dataset_id, run_number, ls_number, me_id"),
        ("run list",
         "/run/?page_size=100",
         f"SELECT dataset_id, run_number, COUNT(DISTINCT ls_number) FROM {li} GROUP BY 1, 2 ORDER BY 1, 2 LIMIT 100"),
        ("lumisection list of a run",
         f"/lumisection/?run_number={run}&page_size=500",
         f"SELECT dataset_id, run_number, ls_number, SUM(th1_count), SUM(th2_count) FROM {li} WHERE run_number = {run} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 LIMIT 500"),
    ]
    rows = []
    try:
        for name, path, sql in queries:
            ours, recv, duck = [], [], []
            arrow = "format=arrow" in path
            body = res = raw = None
            for i in range(a.requests + 3):
                # As timeit does: the garbage collector off while a call is timed, and the previous
                # results freed first, so neither side pays for collecting the other's objects.
                body = raw = None
                gc.collect()
                gc.disable()
                t = time.perf_counter()
                raw = urllib.request.urlopen(base + path, timeout=60).read()
                t_recv = time.perf_counter() - t
                body = pa.ipc.open_stream(raw).read_all() if arrow else json.loads(raw)
                dt = time.perf_counter() - t
                gc.enable()
                if i == 0:
                    first = dt
                if i >= 3:
                    ours.append(dt)
                    recv.append(t_recv)
                res = None
                gc.collect()
                gc.disable()
                t = time.perf_counter()
                res = con.execute(sql).to_arrow_table() if arrow else con.execute(sql).fetchall()
                dt = time.perf_counter() - t
                gc.enable()
                if i >= 3:
                    duck.append(dt)
            if arrow:
                body = {"results": range(body.num_rows)}
                res = range(res.num_rows)
            n_ours = len(body["results"]) if isinstance(body, dict) else len(body)
            rows.append((name, n_ours, len(res), first, pct(recv, 50), pct(ours, 50), pct(ours, 95), pct(duck, 50), pct(duck, 95)))
    finally:
        srv.terminate()
    du = subprocess.run(["du", "-sb", lake], capture_output=True, text=True).stdout.split()[0]
    print(f"ours served from: {serve_lake}; DuckDB reads the local folder")
    print(f"lake: {n_hist:,} histograms, {int(du) / 1e9:.2f} GB, {a.runs} runs x {a.lumis} lumisections; {a.requests} warm requests each")
    print()
    print("Ours: body received (HTTP) and parsed into Python objects (json.loads); DuckDB: fetchall() into Python tuples.")
    print("Python's garbage collector is off during each timed call (as timeit does), previous results freed first.")
    print("The Arrow row: ours format=arrow read into a pyarrow Table; DuckDB to_arrow_table() (a pyarrow Table too).")
    print()
    print("| query | rows (ours / DuckDB) | ours first request ms | ours p50 ms, body received | ours p50 ms, parsed | ours p95 ms, parsed | DuckDB p50 ms | DuckDB p95 ms | p50 ratio (parsed) ours/DuckDB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, n1, n2, f1, r50, o50, o95, d50, d95 in rows:
        print(f"| {name} | {n1} / {n2} | {f1 * 1e3:.1f} | {r50 * 1e3:.1f} | {o50 * 1e3:.1f} | {o95 * 1e3:.1f} | {d50 * 1e3:.1f} | {d95 * 1e3:.1f} | {o50 / d50:.2f} |")


if __name__ == "__main__":
    main()
