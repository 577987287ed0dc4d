#!/usr/bin/env python3
"""Freshness: time from a DQMIO object's upload to its rows being visible in the API, on LocalStack
(S3 → SQS → `dials worker` → Delta lake in S3 → `dials serve` over the same bucket).

    python3 bench/freshness.py [--files 20] [--ttl-ms 2000,250] [--bin target/release/dials] [--queued]

`--queued`: the worker sends each file's commits to the FIFO commit queue and a second worker drains
it (the deployment's two event sources of the ingest function, docs/lake.md "Queued commits").

For each `--ttl-ms` value (`DIALS_LISTING_TTL_MS`: how old the API's view of the Delta logs may be), one
`dials serve` runs beside the worker; files are uploaded one at a time (a new key each, small_zlib.root,
62 KB) and each one's `/api/v1/file-index/?logical_file_name=...` is polled every 10 ms until it says
FINISHED and `/api/v1/th1/?...` returns its rows. Reports p50/p95 of upload-returned → visible, and the
worker's own ingest time from its log (so the split queue + ingest vs. API follow shows). Servers with
the TTLs run side by side on the same emulator and uploads (one run).
"""

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from emu import LocalStack, free_port, stop  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests/fixtures/data/small_zlib.root"
KEY = "store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/fresh-{i:04d}.root"
DS = "/ZeroBias/Run2024C-PromptReco-v1/DQMIO"


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--ttl-ms", default="2000,250")
    ap.add_argument("--bin", default=os.environ.get("DIALS_BENCH_BIN") or str(REPO / "target/release/dials"))
    ap.add_argument("--queued", action="store_true")
    a = ap.parse_args()
    ttls = [int(t) for t in a.ttl_ms.split(",")]
    procs = []
    with LocalStack(visibility_timeout=30) as ls:
        try:
            full, info, s3, raw, lake = ls.env, ls.info, ls.s3, ls.raw, ls.lake
            # The lake exists before the servers start (one file through the pipeline).
            wlog = open("/tmp/dials-freshness-worker.log", "w")
            worker = [a.bin, "worker", "--queue-url", info["queue_url"], "--lake", lake]
            if a.queued:
                worker += ["--commit-queue-url", info["commit_queue_url"]]
                procs.append(subprocess.Popen([a.bin, "worker", "--queue-url", info["commit_queue_url"], "--lake", lake],
                                              env=dict(full, DIALS_LOG="info"), stdout=wlog, stderr=subprocess.STDOUT))
            procs.append(subprocess.Popen(worker, env=dict(full, DIALS_LOG="info"), stdout=wlog, stderr=subprocess.STDOUT))
            s3.upload_file(str(FIXTURE), raw, KEY.format(i=9999))
            bases = {}
            for ttl in ttls:
                p = free_port()
                procs.append(subprocess.Popen([a.bin, "serve", "--lake", lake, "--listen", f"127.0.0.1:{p}"],
                                              env=dict(full, DIALS_LISTING_TTL_MS=str(ttl)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                bases[ttl] = f"http://127.0.0.1:{p}/api/v1"
            for base in bases.values():
                deadline = time.time() + 120
                while True:
                    try:
                        r = get(base + "/file-index/?logical_file_name=" + urllib.parse.quote("/" + KEY.format(i=9999)))
                        if r["results"] and r["results"][0]["status"] == "FINISHED":
                            break
                    except Exception:
                        pass
                    if time.time() > deadline:
                        sys.exit("the first file never became visible")
                    time.sleep(0.1)
            lat = {ttl: [] for ttl in ttls}
            uploaded, visible = {}, {}
            for i in range(a.files):
                key = KEY.format(i=i)
                lfn = "/" + key
                s3.upload_file(str(FIXTURE), raw, key)
                t0 = time.perf_counter()
                uploaded[key] = time.time()
                pending = set(ttls)
                while pending:
                    for ttl in list(pending):
                        base = bases[ttl]
                        r = get(base + "/file-index/?logical_file_name=" + urllib.parse.quote(lfn))
                        if r["results"] and r["results"][0]["status"] == "FINISHED":
                            rows = get(base + "/th1/?page_size=1&dataset=" + urllib.parse.quote(DS) + "&logical_file_name=" + urllib.parse.quote(lfn))
                            if rows.get("results"):
                                lat[ttl].append(time.perf_counter() - t0)
                                visible.setdefault(ttl, {})[key] = time.time()
                                pending.discard(ttl)
                    if time.perf_counter() - t0 > 60:
                        sys.exit(f"{lfn}: not visible after 60 s")
                    time.sleep(0.01)
                time.sleep(0.3)
            wlog.flush()
            secs = []
            for line in open("/tmp/dials-freshness-worker.log"):
                if "FINISHED" in line and "seconds" in line:
                    try:
                        secs.append(float(line.split("seconds=")[1].split()[0].rstrip(",")))
                    except (IndexError, ValueError):
                        pass
            print(f"binary: {a.bin}; {a.files} uploads of {FIXTURE.name} ({FIXTURE.stat().st_size} B), LocalStack")
            if secs:
                print(f"worker ingest time per file (its log): p50 {statistics.median(secs) * 1000:.0f} ms, p95 {pct(secs, 95) * 1000:.0f} ms")
            breakdown(uploaded, visible, ttls)
            print("| DIALS_LISTING_TTL_MS | upload → visible p50 ms | p95 ms | min ms | max ms |")
            print("|---|---|---|---|---|")
            for ttl in ttls:
                xs = lat[ttl]
                print(f"| {ttl} | {statistics.median(xs) * 1000:.0f} | {pct(xs, 95) * 1000:.0f} | {min(xs) * 1000:.0f} | {max(xs) * 1000:.0f} |")
        finally:
            stop(procs)


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def breakdown(uploaded, visible, ttls):
    """Per stage, from the worker's log: upload returned → SQS message sent (S3 notification) → received
    by the worker → FINISHED logged (ingest and its commits) → visible in the API (per TTL)."""
    sent, received, finished = {}, {}, {}
    for line in open("/tmp/dials-freshness-worker.log"):
        line = ANSI.sub("", line)
        ts = line.split(" ", 1)[0]
        if " received" in line and "keys=" in line:
            m = re.search(r"sent_ms=(?:Some\()?(\d+)\)?.*received_ms=(\d+).*keys=\[\"([^\"]+)\"", line)
            if m:
                sent[m.group(3)] = int(m.group(1)) / 1000
                received[m.group(3)] = int(m.group(2)) / 1000
        elif "FINISHED" in line and "object=" in line:
            m = re.search(r"object=s3://[^/]+/(\S+)", line)
            if m:
                finished[m.group(1)] = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    stages = {"upload → SQS sent": [], "sent → worker received": [], "received → FINISHED logged": []}
    stages.update({f"FINISHED → visible (TTL {t} ms)": [] for t in ttls})
    for key, t_up in uploaded.items():
        if key in sent and key in received and key in finished:
            stages["upload → SQS sent"].append(sent[key] - t_up)
            stages["sent → worker received"].append(received[key] - sent[key])
            stages["received → FINISHED logged"].append(finished[key] - received[key])
            for t in ttls:
                if key in visible.get(t, {}):
                    stages[f"FINISHED → visible (TTL {t} ms)"].append(visible[t][key] - finished[key])
    print("| stage | p50 ms | p95 ms | min ms | max ms |")
    print("|---|---|---|---|---|")
    for name, xs in stages.items():
        if xs:
            print(f"| {name} | {statistics.median(xs) * 1000:.0f} | {pct(xs, 95) * 1000:.0f} | {min(xs) * 1000:.0f} | {max(xs) * 1000:.0f} |")
    print()


if __name__ == "__main__":
    main()
