#!/usr/bin/env python3
"""Reference reader for the benchmark: the PyROOT path DIALS's ETL uses (cms-DQM/dials,
etl/python/common/dqmio_reader.py + pipelines/file_ingesting/transform_load.py).

Default mode ("dials") reproduces what DIALS does per file:
  * read the Indices tree with GetEntry into {(run, lumi): [(type, first, last), ...]}, skipping Lumi == 0;
  * for TH1 types, then for TH2 types, for every (run, lumi) and every matching index entry:
      tree.GetEntry(0); SetBranchStatus("*", 0); SetBranchStatus("FullName", 1)
      for x in first..last: GetEntry(x) -> str(FullName); GetEntry(x, 1); h = tree.Value.Clone()
      th1_from_cppyy / th2_from_cppyy: GetEntries, GetNbinsX/Y, GetBinLowEdge(...) and
      data = [GetBinContent(i) ...] (2D: rows [[GetBinContent(x, y) for x] for y]).
  DIALS's type table stops at 11; here TH1Is (12) and TH2Is (13) are read too so the histogram count
  matches the C++ reference.
"--simple" mode is the plain loop: for each TH1/TH2 tree, for i in range(t.GetEntries()):
  t.GetEntry(i); h = t.Value; [h.GetBinContent(j) ...].

Timed: from just after TFile.Open to the end of the loops. Prints one JSON line:
  {"reader":"pyroot","histograms":N,"seconds":S,"hist_per_s":R,"checksum":C}
"""

import argparse
import json
import sys
import time
import warnings
from collections import defaultdict

warnings.filterwarnings("ignore", message=r"\s*This distribution of ROOT")

import ROOT  # noqa: E402

TREE_NAMES = {3: "TH1Fs", 4: "TH1Ss", 5: "TH1Ds", 6: "TH2Fs", 7: "TH2Ss", 8: "TH2Ds", 12: "TH1Is", 13: "TH2Is"}
TH1_TYPES = (3, 4, 5, 12)
TH2_TYPES = (6, 7, 8, 13)


def th1_from_cppyy(name, h):
    nx = int(h.GetNbinsX())
    return {
        "me": name,
        "x_min": h.GetXaxis().GetBinLowEdge(1),
        "x_max": h.GetXaxis().GetBinLowEdge(nx + 1),
        "x_bin": nx,
        "entries": int(h.GetEntries()),
        "data": [h.GetBinContent(i) for i in range(1, nx + 1)],
    }


def th2_from_cppyy(name, h):
    nx, ny = int(h.GetNbinsX()), int(h.GetNbinsY())
    xa, ya = h.GetXaxis(), h.GetYaxis()
    return {
        "me": name,
        "x_min": xa.GetBinLowEdge(1),
        "x_max": xa.GetBinLowEdge(nx) + xa.GetBinWidth(nx),
        "x_bin": nx,
        "y_min": ya.GetBinLowEdge(1),
        "y_max": ya.GetBinLowEdge(ny) + ya.GetBinWidth(ny),
        "y_bin": ny,
        "entries": int(h.GetEntries()),
        "data": [[h.GetBinContent(j, i) for j in range(1, nx + 1)] for i in range(1, ny + 1)],
    }


def read_dials(f):
    idx = f.Get("Indices")
    index = defaultdict(list)
    for i in range(idx.GetEntries()):
        idx.GetEntry(i)
        run, lumi, typ = idx.Run, idx.Lumi, idx.Type
        if lumi == 0:
            continue
        index[(run, lumi)].append((typ, idx.FirstIndex, idx.LastIndex))
    n, checksum = 0, 0.0
    trees = {}  # DIALS does getattr(file, name) each time; PyROOT 6.40 TFile has no attribute lookup
    for types, convert in ((TH1_TYPES, th1_from_cppyy), (TH2_TYPES, th2_from_cppyy)):
        for runlumi, entries in index.items():
            for typ, first, last in entries:
                if typ not in types:
                    continue
                if typ not in trees:
                    trees[typ] = f.Get(TREE_NAMES[typ])
                tree = trees[typ]
                tree.GetEntry(0)
                tree.SetBranchStatus("*", 0)
                tree.SetBranchStatus("FullName", 1)
                for x in range(first, last + 1):
                    tree.GetEntry(x)
                    name = str(tree.FullName)
                    tree.GetEntry(x, 1)
                    value = tree.Value.Clone()
                    rec = convert(name, value)
                    data = rec["data"]
                    checksum += sum(data) if types is TH1_TYPES else sum(map(sum, data))
                    n += 1
    return n, checksum


def read_simple(f):
    n, checksum = 0, 0.0
    for typ in TH1_TYPES + TH2_TYPES:
        t = f.Get(TREE_NAMES[typ])
        if not t:
            continue
        two_d = typ in TH2_TYPES
        for i in range(t.GetEntries()):
            t.GetEntry(i)
            h = t.Value
            nx = h.GetNbinsX()
            if two_d:
                ny = h.GetNbinsY()
                checksum += sum([h.GetBinContent(x, y) for y in range(1, ny + 1) for x in range(1, nx + 1)])
            else:
                checksum += sum([h.GetBinContent(j) for j in range(1, nx + 1)])
            n += 1
    return n, checksum


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file")
    ap.add_argument("--simple", action="store_true", help="plain GetEntry loop instead of DIALS's access pattern")
    args = ap.parse_args()
    ROOT.TH1.AddDirectory(False)
    f = ROOT.TFile.Open(args.file, "READ")
    if not f or f.IsZombie():
        sys.exit(f"cannot open {args.file}")
    t0 = time.perf_counter()
    n, checksum = (read_simple if args.simple else read_dials)(f)
    s = time.perf_counter() - t0
    print(json.dumps({"reader": "pyroot" if not args.simple else "pyroot_simple", "histograms": n,
                      "seconds": round(s, 6), "hist_per_s": round(n / s, 1) if s > 0 else 0.0, "checksum": checksum}))


if __name__ == "__main__":
    main()
