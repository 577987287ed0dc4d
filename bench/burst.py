#!/usr/bin/env python3
"""Burst: N DQMIO files land in the bucket at once; how long until every one is committed and
visible in the API (LocalStack: S3 → SQS → `dials worker` × K → Delta lake in S3 → `dials serve`).

    python3 bench/burst.py [--files 1000] [--workers 2] [--bin target/release/dials]

Files: small_zlib.root (62 KB, 2 runs × 2 lumisections, 24 MEs) under N distinct CMS keys, uploaded
by 16 threads. Each worker is one `dials worker` process (one SQS batch at a time, as one Lambda
instance; K workers = Lambda concurrency K) committing to the same Delta tables. Reports: upload
time, time from the first upload to the last file FINISHED in the API, files/s, and the lake's log
size (commits per table) at the end. `--count`: the workers count their requests to the lake
(`DIALS_STORE_COUNT=1`) and the report gives them per file, by kind.
"""

import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from emu import REPO, LocalStack, free_port, stop  # noqa: E402

FIXTURE = REPO / "tests/fixtures/data/small_zlib.root"
KEY = "store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/{run3}/{run_lo}/00000/burst-{i:05d}.root"


def get(url):
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


def per_file(workers, done):
    """Each worker's last process-wide count of lake requests (its log's last FINISHED line), summed,
    per file FINISHED."""
    total = {}
    for w in range(workers):
        last = None
        for line in open(f"/tmp/dials-burst-worker-{w}.log", errors="replace"):
            line = re.sub(r"\x1b\[[0-9;]*m", "", line)  # the log's colours
            m = re.search(r'lake_requests_total"?[=:]"?Requests \{ ([^}]*) \}', line)
            if m:
                last = m.group(1)
        for part in (last or "").split(","):
            k, _, v = part.strip().partition(": ")
            if k:
                total[k] = total.get(k, 0) + int(v)
    return {k: round(v / max(done, 1), 1) for k, v in total.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--bin", default=os.environ.get("DIALS_BENCH_BIN") or str(REPO / "target/release/dials"))
    ap.add_argument("--limit-s", type=float, default=1800)
    ap.add_argument("--batch-size", type=int, default=10, help="dials worker --batch-size (Lambda's BatchSize)")
    ap.add_argument("--count", action="store_true", help="count the workers' lake requests (DIALS_STORE_COUNT=1)")
    ap.add_argument("--queued", action="store_true",
                    help="the workers send their commits to the FIFO commit queue, drained by one more worker (docs/lake.md)")
    a = ap.parse_args()
    body = FIXTURE.read_bytes()
    procs = []
    with LocalStack(visibility_timeout=120) as ls:
        try:
            t0 = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda i: ls.s3.put_object(Bucket=ls.raw, Key=KEY.format(run3=380 + i // 1000, run_lo=f"{i % 1000:03d}", i=i),
                                                         Body=body), range(a.files)))
            t_up = time.perf_counter() - t0
            logs = []
            for w in range(a.workers + (1 if a.queued else 0)):
                log = open(f"/tmp/dials-burst-worker-{w}.log", "w")
                logs.append(log)
                if w == a.workers:
                    # The commit queue's consumer (FIFO: ten messages at a time).
                    args = [a.bin, "worker", "--queue-url", ls.info["commit_queue_url"], "--lake", ls.lake]
                else:
                    args = [a.bin, "worker", "--queue-url", ls.info["queue_url"], "--lake", ls.lake, "--batch-size", str(a.batch_size)]
                    if a.queued:
                        args += ["--commit-queue-url", ls.info["commit_queue_url"]]
                procs.append(subprocess.Popen(args,
                                              env=dict(ls.env, DIALS_LOG="warn,deltalake_core::kernel::transaction=off"
                                                       + (",dials_lake::events=info" if a.count else ""),
                                                       **({"DIALS_STORE_COUNT": "1"} if a.count else {})),
                                              stdout=log, stderr=subprocess.STDOUT))
            port = free_port()
            procs.append(subprocess.Popen([a.bin, "serve", "--lake", ls.lake, "--listen", f"127.0.0.1:{port}"], env=ls.env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            base = f"http://127.0.0.1:{port}/api/v1"
            done, last_print = 0, 0.0
            while done < a.files:
                time.sleep(2)
                try:
                    r = get(base + "/file-index/count/?status=FINISHED")
                    done = r.get("count", 0)
                except Exception:
                    continue
                el = time.perf_counter() - t0
                if el - last_print > 30:
                    print(f"  {el:.0f} s: {done} / {a.files} FINISHED", file=sys.stderr)
                    last_print = el
                if el > a.limit_s:
                    break
            total = time.perf_counter() - t0
            commits = {}
            for table in ["th1", "file_index"]:
                r = ls.s3.list_objects_v2(Bucket=ls.info.get("lake_bucket", "dials-lake"), Prefix=f"lake/default/{table}/_delta_log/")
                n = r.get("KeyCount", 0)
                while r.get("IsTruncated"):
                    r = ls.s3.list_objects_v2(Bucket=ls.info.get("lake_bucket", "dials-lake"), Prefix=f"lake/default/{table}/_delta_log/",
                                              ContinuationToken=r["NextContinuationToken"])
                    n += r.get("KeyCount", 0)
                commits[table] = n
            print(f"binary: {a.bin}; {a.files} files of {len(body)} B, {a.workers} workers, batch ≤ {a.batch_size}, LocalStack"
                  + (", commits queued (one consumer)" if a.queued else ""))
            print(f"upload {t_up:.1f} s; first upload → {done} FINISHED in the API: {total:.1f} s "
                  f"({done / total:.2f} files/s); log objects: {commits}")
            if a.count and not a.queued:  # queued: the ingest workers log no FINISHED line
                stop(procs)
                print(f"lake requests per file FINISHED, workers: {per_file(a.workers, done)}")
            if done < a.files:
                sys.exit(f"only {done} of {a.files} visible after {total:.0f} s")
        finally:
            stop(procs)


if __name__ == "__main__":
    main()
