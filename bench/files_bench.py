#!/usr/bin/env python3
"""Query cost against the number of ingested files: the same runs and lumisections ingested as one
DQMIO file per run and as `--split` files per run (as PromptReco writes them: one per job), served by
the same binary, measured in one run.

    python3 bench/files_bench.py [--runs 20] [--lumis 100] [--split 100] [--th1 100] [--th2 10] [--requests 30]

The many-files lake is measured again after `dials compact`. Per lake: ingest wall time, first answer after `dials serve` starts (spawn → first 200 of a
one-lumisection page), warm p50/p95 of a one-lumisection th1 page, a file-index page and one ME x
one run. `DIALS_BENCH_BIN` picks the binary (A/B of two builds on the same files). Files are written
by ROOT (tests/fixtures/gen_dqmio.py --bench, in-process), cached under /tmp/dials-bench/files-*.
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

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DIALS = os.environ.get("DIALS_BENCH_BIN") or os.path.join(REPO, "target/release/dials")
DS = "/ZeroBias/Run2024C-PromptReco-v1/DQMIO"


def lfn(src, run, name):
    return os.path.join(src, f"store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/{run // 1000}/{run % 1000:03d}/00000/{name}.root")


def generate(src, a, per_run):
    marker = os.path.join(src, ".done")
    if os.path.exists(marker):
        return
    sys.path.insert(0, os.path.join(REPO, "tests/fixtures"))
    import gen_dqmio  # noqa: E402 (ROOT loads once for every file)
    chunk = a.lumis // per_run
    for r in range(a.runs):
        run = 380000 + r
        for k in range(per_run):
            out = lfn(src, run, f"f{k:03d}")
            os.makedirs(os.path.dirname(out), exist_ok=True)
            gen_dqmio.main([out, "--bench", "--first-run", str(run), "--first-lumi", str(1 + k * chunk), "--lumis", str(chunk),
                            "--bench-th1", str(a.th1), "--bench-th2", str(a.th2), "--seed", str(1 + r * 1000 + k)])
    open(marker, "w").close()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def measure(lake, a, label):
    port = 19000 + os.getpid() % 500 + (0 if label == "few" else 500)
    t0 = time.perf_counter()
    srv = subprocess.Popen([DIALS, "serve", "--lake", lake, "--listen", f"127.0.0.1:{port}"], stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/api/v1"
    run, ls = 380000 + a.runs // 2, a.lumis // 2
    first_page = f"/th1/?run_number={run}&ls_number={ls}&page_size=500"
    try:
        while True:
            try:
                body = json.loads(urllib.request.urlopen(base + first_page, timeout=60).read())
                break
            except Exception:
                if time.perf_counter() - t0 > 120:
                    raise
                time.sleep(0.005)
        first = time.perf_counter() - t0
        assert len(body["results"]) == a.th1, (label, len(body["results"]))
        me = body["results"][0]["me"]
        queries = [
            ("one lumisection x all TH1 (page of 500)", first_page),
            ("file-index page (100)", "/file-index/?page_size=100"),
            ("one ME x one run", f"/th1/?me={urllib.parse.quote(me)}&run_number={run}&page_size=500"),
        ]
        out = {"first": first}
        for name, path in queries:
            ts = []
            for i in range(a.requests + 3):
                t = time.perf_counter()
                json.loads(urllib.request.urlopen(base + path, timeout=60).read())
                if i >= 3:
                    ts.append(time.perf_counter() - t)
            out[name] = (pct(ts, 50), pct(ts, 95))
        return out
    finally:
        srv.terminate()
        srv.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--lumis", type=int, default=100)
    ap.add_argument("--split", type=int, default=100)
    ap.add_argument("--th1", type=int, default=100)
    ap.add_argument("--th2", type=int, default=10)
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--lakes", nargs="+", metavar="LAKE",
                    help="only measure these existing lakes (e.g. another binary on lakes an earlier run left)")
    a = ap.parse_args()
    if a.lakes:
        print(f"binary: {DIALS}")
        print("| lake | first answer ms | " + " | ".join(f"{k}: warm p50 (p95) ms" for k in ("one LS x all TH1", "file-index page", "one ME x one run")) + " |")
        print("|---|---|---|---|---|")
        for lake in a.lakes:
            m = measure(lake, a, "few")
            cells = [f"{v[0] * 1e3:.1f} ({v[1] * 1e3:.1f})" for v in m.values() if isinstance(v, tuple)]
            print(f"| {lake} | {m['first'] * 1e3:.0f} | " + " | ".join(cells) + " |")
        return
    work = f"/tmp/dials-bench/files-{a.runs}x{a.lumis}-{a.th1}-{a.th2}"
    results = {}
    for label, per_run in (("few", 1), ("many", a.split)):
        src = os.path.join(work, f"src-{per_run}")
        t = time.time()
        generate(src, a, per_run)
        gen_s = time.time() - t
        lake = os.path.join(work, f"lake-{per_run}-{os.path.basename(os.path.dirname(os.path.dirname(DIALS)))}")
        shutil.rmtree(lake, ignore_errors=True)
        t = time.time()
        subprocess.run([DIALS, "ingest", src, "--lake", lake, "--concurrency", "2"], check=True, capture_output=True)
        ingest_s = time.time() - t
        m = measure(lake, a, label)
        m["ingest"], m["files"], m["gen"] = ingest_s, a.runs * per_run, gen_s
        results[label] = m
        print(f"{label}: {m['files']} files, generated in {gen_s:.0f} s, ingested in {ingest_s:.1f} s", file=sys.stderr)
        if label == "many":
            # The same lake after `dials compact` (what the scheduled maintenance does).
            t = time.time()
            subprocess.run([DIALS, "compact", "--lake", lake], check=True, capture_output=True)
            c = measure(lake, a, "compacted")
            c["ingest"], c["files"], c["gen"] = time.time() - t, m["files"], 0
            results["compacted"] = c
            print(f"compacted in {c['ingest']:.1f} s", file=sys.stderr)
    few, many, comp = results["few"], results["many"], results["compacted"]
    print(f"binary: {DIALS}")
    print(f"{a.runs} runs x {a.lumis} lumisections x ({a.th1} TH1 + {a.th2} TH2); {a.requests} warm requests each")
    print()
    print(f"| | {few['files']} files | {many['files']} files | ratio | {many['files']} files, compacted | ratio |")
    print("|---|---|---|---|---|---|")
    print(f"| ingest wall time s (--concurrency 2); compaction | {few['ingest']:.1f} | {many['ingest']:.1f} | {many['ingest'] / few['ingest']:.1f} | {comp['ingest']:.1f} | |")
    print(f"| first answer after start ms | {few['first'] * 1e3:.0f} | {many['first'] * 1e3:.0f} | {many['first'] / few['first']:.1f} | {comp['first'] * 1e3:.0f} | {comp['first'] / few['first']:.1f} |")
    for k in few:
        if isinstance(few[k], tuple):
            print(f"| {k}: warm p50 (p95) ms | {few[k][0] * 1e3:.1f} ({few[k][1] * 1e3:.1f}) | {many[k][0] * 1e3:.1f} ({many[k][1] * 1e3:.1f}) | {many[k][0] / few[k][0]:.1f} "
                  f"| {comp[k][0] * 1e3:.1f} ({comp[k][1] * 1e3:.1f}) | {comp[k][0] / few[k][0]:.1f} |")


if __name__ == "__main__":
    main()
