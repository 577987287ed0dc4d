#!/usr/bin/env python3
"""Ingest many small files into a fresh local lake with several `dials` builds or settings, back to
back in one run, and report wall time, peak RSS and how the Delta commits were shared.

    python3 bench/group_commit.py SRC_DIR --case new=target/release/dials \
        --case old=/tmp/dials-old --case per-file=target/release/dials:DIALS_COMMIT_BATCH=1,DIALS_INGEST_IN_FLIGHT=2 \
        [--concurrency 2] [--rounds 1]

A case is NAME=BINARY[:ENV=V,ENV=V]. Cases alternate within each round (noisy machines). Commits
"carrying files" are the log entries with at least one `dials.file.*` application transaction.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def commits(table: Path):
    out = []
    for c in sorted((table / "_delta_log").glob("*.json")):
        n = 0
        for line in c.read_text().splitlines():
            if '"txn"' in line and json.loads(line).get("txn", {}).get("appId", "").startswith("dials.file."):
                n += 1
        if n:
            out.append(n)
    return out


def run_case(binary, env_extra, src, concurrency):
    lake = Path(tempfile.mkdtemp(prefix="gc-lake-"))
    env = dict(os.environ, **env_extra)
    env.setdefault("RUST_LOG", "warn")
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(
        ["/usr/bin/time", "-f", "%M", binary, "ingest", str(src), "--lake", str(lake), "--concurrency", str(concurrency)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"{binary} failed:\n{p.stderr[-2000:]}")
    rss_mb = int(p.stderr.strip().splitlines()[-1]) / 1024
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    th1 = commits(lake / "default" / "th1")
    fi = commits(lake / "default" / "file_index")
    shutil.rmtree(lake, ignore_errors=True)
    return {"wall": wall, "cpu": cpu, "rss": rss_mb, "th1": th1, "file_index": fi}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("--case", action="append", required=True)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    cases = []
    for c in a.case:
        name, rest = c.split("=", 1)
        binary, _, envs = rest.partition(":")
        env = dict(kv.split("=", 1) for kv in envs.split(",") if kv)
        cases.append((name, binary, env))
    nfiles = sum(1 for _ in Path(a.src).rglob("*.root"))
    res = {n: [] for n, _, _ in cases}
    for r in range(a.rounds):
        for name, binary, env in cases:
            out = run_case(binary, env, a.src, a.concurrency)
            res[name].append(out)
            print(f"round {r + 1} {name}: {out['wall']:.1f} s wall, {out['cpu']:.1f} s CPU, {out['rss']:.0f} MB, "
                  f"th1 {len(out['th1'])} commits, file_index {len(out['file_index'])} commits", flush=True)
    print(f"\n{nfiles} files, concurrency {a.concurrency}, {a.rounds} round(s); medians")
    print("| case | wall s | per file s | CPU s | peak RSS MB | th1 commits (mean / max files) | file_index commits (mean / max) |")
    print("|---|---|---|---|---|---|---|")
    for name, _, _ in cases:
        rs = res[name]
        wall = statistics.median(x["wall"] for x in rs)
        cpu = statistics.median(x["cpu"] for x in rs)
        rss = statistics.median(x["rss"] for x in rs)
        th1, fi = rs[-1]["th1"], rs[-1]["file_index"]
        fmt = lambda c: f"{len(c)} ({sum(c) / max(len(c), 1):.2f} / {max(c, default=0)})"
        print(f"| {name} | {wall:.1f} | {wall / nfiles:.3f} | {cpu:.1f} | {rss:.0f} | {fmt(th1)} | {fmt(fi)} |")


if __name__ == "__main__":
    main()
