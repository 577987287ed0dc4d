#!/usr/bin/env python3
"""ME-major copy: warm latency of the ME access patterns with and without the copy, side by side in one run.

    python3 bench/me_major_bench.py LAKE [--requests 20] [--bin target/release/dials]

LAKE is a compacted lake (`dials compact` wrote `th1_by_me`/`th2_by_me`). The script makes a second
lake beside it, the same objects without the copy tables (hard links), serves both with `dials serve`
and measures, alternating the two servers request by request:
  - one ME x one run (page of 500),
  - one ME across all runs (first page of 500),
  - one lumisection x all TH1 (page of 500; must not change: the copy is not read for it),
and DuckDB (in-process, warm) answering "one ME x one run" on the same th1 Parquet objects (the LS-major
main table and, second, the ME-major copy), as the reference.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emu import REPO, free_port  # noqa: E402


def serve(binary, lake):
    port = free_port()
    p = subprocess.Popen([binary, "serve", "--lake", lake, "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/api/v1"
    for _ in range(600):
        try:
            urllib.request.urlopen(base + "/workspaces/", timeout=1)
            return p, base
        except Exception:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def get(url):
    with urllib.request.urlopen(url, timeout=120) as r:
        return json.loads(r.read())


def linked_copy_without_copies(lake, dst):
    if os.path.exists(dst):
        shutil.rmtree(dst)
    for root, dirs, files in os.walk(lake):
        rel = os.path.relpath(root, lake)
        if any(part.endswith("_by_me") for part in rel.split(os.sep)):
            continue
        os.makedirs(os.path.join(dst, rel), exist_ok=True)
        for f in files:
            os.link(os.path.join(root, f), os.path.join(dst, rel, f))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("lake")
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--bin", default=os.environ.get("DIALS_BENCH_BIN") or str(REPO / "target/release/dials"))
    a = ap.parse_args()
    lake = os.path.abspath(a.lake)
    plain = lake.rstrip("/") + "-without-copy"
    linked_copy_without_copies(lake, plain)
    procs = []
    try:
        servers = {}
        for label, path in [("with copy", lake), ("without copy", plain)]:
            p, base = serve(a.bin, path)
            procs.append(p)
            servers[label] = base
        base = servers["with copy"]
        runs = sorted(r["run_number"] for r in get(base + "/run/?page_size=500")["results"])
        run = runs[len(runs) // 2]
        first = get(base + f"/th1/?run_number={run}&page_size=1")["results"][0]
        me, ls = first["me"], first["ls_number"]
        q = urllib.parse.quote(me, safe="")
        queries = [
            ("one ME x one run", f"/th1/?me={q}&run_number={run}&page_size=500"),
            ("one ME, all runs (first 500)", f"/th1/?me={q}&page_size=500"),
            ("one LS x all TH1 (500)", f"/th1/?run_number={run}&ls_number={ls}&page_size=500"),
        ]
        print(f"binary {a.bin}; lake {lake} ({len(runs)} runs); ME {me}, run {run}; {a.requests} warm requests each, alternating")
        print("| query | rows | with copy p50 (p95) ms | without copy p50 (p95) ms | ratio |")
        print("|---|---|---|---|---|")
        for name, path in queries:
            ts = {k: [] for k in servers}
            rows = {}
            for i in range(a.requests + 3):
                for label, b in servers.items():
                    t = time.perf_counter()
                    body = get(b + path)
                    dt = time.perf_counter() - t
                    if i >= 3:
                        ts[label].append(dt)
                    rows[label] = body["results"]
            if rows["with copy"] != rows["without copy"]:
                sys.exit(f"{name}: the two lakes answer differently")
            p = {k: (statistics.median(v) * 1e3, sorted(v)[int(0.95 * (len(v) - 1))] * 1e3) for k, v in ts.items()}
            print(f"| {name} | {len(rows['with copy'])} | {p['with copy'][0]:.1f} ({p['with copy'][1]:.1f}) | "
                  f"{p['without copy'][0]:.1f} ({p['without copy'][1]:.1f}) | {p['without copy'][0] / p['with copy'][0]:.1f}x |")
        try:
            import duckdb
        except ImportError:
            return
        con = duckdb.connect()
        for label, table in [("LS-major th1", "th1"), ("ME-major th1_by_me", "th1_by_me")]:
            # Every object of the table folder: after vacuum only committed ones are left.
            glob = os.path.join(lake, "default", table, "*", "*.parquet")
            sql = f"SELECT * FROM read_parquet('{glob}', hive_partitioning=true) WHERE me = ? AND run_number = ?"
            ts = []
            for i in range(a.requests + 3):
                t = time.perf_counter()
                n = len(con.execute(sql, [me, run]).fetchall())
                if i >= 3:
                    ts.append(time.perf_counter() - t)
            print(f"DuckDB {duckdb.__version__}, one ME x one run on {label}: {n} rows, p50 {statistics.median(ts) * 1e3:.1f} ms")
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)


if __name__ == "__main__":
    main()
