#!/usr/bin/env python3
"""Decode benchmark, side by side in one run: our reader vs ROOT's compiled C++ vs the PyROOT path.

    python3 bench/run.py [--file F] [--repeat 5] [--py-repeat 3]

Generates the benchmark file with real ROOT if it is missing (50 lumisections x (1000 TH1 of 100 bins +
100 TH2 of 50x50), TH1F/S/D/I and TH2F/S/D/I mixed, zlib), builds nothing itself: run
`cargo build --release -p dials-dqmio --example decode_bench` first. Prints a Markdown table of medians
and ratios (paste it into docs/benchmarks.md) and checks every reader reports the same checksum.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT_DIR = os.path.dirname(HERE)


def run_lines(cmd, reps, env=None):
    out = []
    for _ in range(reps):
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        out += [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", default="/tmp/dials-bench/bench.root")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--py-repeat", type=int, default=3)
    a = ap.parse_args()
    if not os.path.exists(a.file):
        os.makedirs(os.path.dirname(a.file), exist_ok=True)
        subprocess.run([sys.executable, f"{ROOT_DIR}/tests/fixtures/gen_dqmio.py", a.file, "--bench"], check=True)
    rust = f"{ROOT_DIR}/target/release/examples/decode_bench"
    env = dict(os.environ, ROOT_DIR=ROOT_DIR)
    results = {}
    results["dials-rs, 1 thread"] = run_lines([rust, a.file, "--threads", "1", "--repeat", str(a.repeat)], 1)
    results["dials-rs, 2 threads"] = run_lines([rust, a.file, "--threads", "2", "--repeat", str(a.repeat)], 1)
    results["dials-rs, read+inflate only (1 thread)"] = run_lines([rust, a.file, "--inflate-only", "--repeat", str(a.repeat)], 1)
    aclic = "/tmp/dials-bench/aclic"
    os.makedirs(aclic, exist_ok=True)
    cxx = ["root", "-l", "-b", "-q", "-e", f'gSystem->SetBuildDir("{aclic}", true)', f'{HERE}/reference/read_dqmio.C+("{a.file}")']
    run_lines(cxx, 1)  # compile once (ACLiC), not timed
    results["ROOT 6.40 compiled C++ (ACLiC)"] = run_lines(cxx, a.repeat)
    results["PyROOT, DIALS ETL path"] = run_lines([sys.executable, f"{HERE}/reference/read_pyroot.py", a.file], a.py_repeat)
    sums = {k: {r["checksum"] for r in v} for k, v in results.items() if "inflate" not in k}
    flat = set().union(*sums.values())
    med = {k: statistics.median(r["hist_per_s"] for r in v) for k, v in results.items()}
    secs = {k: statistics.median(r["seconds"] for r in v) for k, v in results.items()}
    ref = med["ROOT 6.40 compiled C++ (ACLiC)"]
    py = med["PyROOT, DIALS ETL path"]
    n = results["dials-rs, 1 thread"][0]["histograms"]
    print(f"file: {a.file} ({os.path.getsize(a.file)} bytes), {n} histograms, checksums agree: {len(flat) == 1} ({flat})")
    print()
    print("| reader | runs | median s | median hist/s | vs ROOT C++ | vs PyROOT |")
    print("|---|---|---|---|---|---|")
    for k in results:
        print(f"| {k} | {len(results[k])} | {secs[k]:.3f} | {med[k]:,.0f} | {med[k] / ref:.2f}x | {med[k] / py:.1f}x |")
    share = secs["dials-rs, read+inflate only (1 thread)"] / secs["dials-rs, 1 thread"]
    print()
    print(f"read+inflate share of the 1-thread decode time: {share:.0%}; 2-thread speed-up: "
          f"{med['dials-rs, 2 threads'] / med['dials-rs, 1 thread']:.2f}x")
    if len(flat) != 1:
        sys.exit("checksums differ between readers")


if __name__ == "__main__":
    main()
