#!/usr/bin/env python3
"""Ingest with and without the tables of issue 13, side by side in one run on the same files.

    python3 bench/kinds_bench.py FILE.root [FILE.root ...] [--repeat 5]

For each file, `dials ingest` (local file -> lake folder, one workspace keeping everything) runs
`--repeat` times in each mode, the modes alternating so that machine load hits both alike:
  dials  DIALS_INGEST_KINDS=dials: TH1x/TH2x per lumisection only (what the lake kept before)
  all    the default: every kind, per lumisection and per run (th3, profile1d/2d, scalar, *_run twins)
Reports median wall and CPU (user + sys) time of the whole process (`/usr/bin/time`), elements ingested
per second, peak RSS,
and the lake's size: Parquet bytes of the data tables, of the index tables, and of the Delta logs.
`DIALS_BENCH_BIN` picks the binary (default target/ci/dials).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIALS = os.environ.get("DIALS_BENCH_BIN") or os.path.join(REPO, "target/ci/dials")
LFN = "store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/{name}"
INDEX = {"file_index", "dataset_index", "lumisection_index", "me_index"}


def lake_sizes(lake):
    """(data parquet bytes, index parquet bytes, delta log bytes, data objects) of workspace `default`."""
    data = index = logs = objects = 0
    ws = os.path.join(lake, "default")
    for table in os.listdir(ws):
        for root, _, files in os.walk(os.path.join(ws, table)):
            for f in files:
                size = os.path.getsize(os.path.join(root, f))
                if "_delta_log" in root:
                    logs += size
                elif f.endswith(".parquet"):
                    if table in INDEX:
                        index += size
                    else:
                        data += size
                        objects += 1
    return data, index, logs, objects


def run_once(path, mode, work):
    inbox = os.path.join(work, "inbox")
    lake = os.path.join(work, "lake")
    shutil.rmtree(work, ignore_errors=True)
    dst = os.path.join(inbox, LFN.format(name=os.path.basename(path)))
    os.makedirs(os.path.dirname(dst))
    os.symlink(os.path.abspath(path), dst)
    env = dict(os.environ)
    if mode == "dials":
        env["DIALS_INGEST_KINDS"] = "dials"
    else:
        env.pop("DIALS_INGEST_KINDS", None)
    with tempfile.NamedTemporaryFile("r") as t:
        p = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", t.name, DIALS, "ingest", inbox, "--lake", lake],
                           capture_output=True, text=True, env=env)
        if p.returncode != 0:
            sys.exit(f"ingest failed: {p.stderr[-2000:]}")
        secs, user, sys_, kb = t.read().split()[-4:]
    elements = None
    for line in p.stdout.splitlines():
        try:
            rep = json.loads(line)
        except ValueError:
            continue
        if isinstance(rep, dict) and "histograms" in rep:
            elements = rep["histograms"]
    return float(secs), float(user) + float(sys_), int(kb) / 1024, elements, lake_sizes(lake), p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="dials-kinds-bench-")
    print(f"binary: {DIALS}")
    print("| file | MB | mode | median wall s (min-max) | median CPU s (min-max) | elements | elements/s (wall) | peak RSS MB | data MB | index MB | delta logs MB | data objects |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for path in a.files:
        runs = {"dials": [], "all": []}
        last = {}
        for _ in range(a.repeat):
            for mode in ("dials", "all"):
                secs, cpu, rss, elements, sizes, out = run_once(path, mode, os.path.join(work, mode))
                runs[mode].append((secs, rss, cpu))
                last[mode] = (elements, sizes, out)
        for mode in ("dials", "all"):
            times = [s for s, _, _ in runs[mode]]
            cpus = [c for _, _, c in runs[mode]]
            med = statistics.median(times)
            elements, (data, index, logs, objects), out = last[mode]
            rate = f"{elements / med:,.0f}" if elements else "?"
            print(f"| {os.path.basename(path)} | {os.path.getsize(path) / 1e6:.1f} | {mode} | {med:.2f} ({min(times):.2f}-{max(times):.2f}) | "
                  f"{statistics.median(cpus):.2f} ({min(cpus):.2f}-{max(cpus):.2f}) | "
                  f"{elements if elements is not None else '?'} | {rate} | {statistics.median(r for _, r, _ in runs[mode]):.0f} | "
                  f"{data / 1e6:.2f} | {index / 1e6:.3f} | {logs / 1e6:.3f} | {objects} |")
            if elements is None:
                print(f"  (no report line with 'histograms' in the output: {out[-300:]!r})")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
