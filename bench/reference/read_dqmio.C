// Reference reader for the benchmark: ROOT's own compiled C++ path over a DQMIO file.
//
//   root -l -b -q 'read_dqmio.C+("file.root")'
//   root -l -b -q -e 'gSystem->SetBuildDir("/tmp/aclic", true)' 'read_dqmio.C+("file.root")'  # no .so here
//   python3 -c 'import ROOT; ROOT.gROOT.ProcessLine(".L read_dqmio.C+"); ROOT.read_dqmio("file.root")'
//
// For every TH1x/TH2x tree (TH1F/S/D/I, TH2F/S/D/I) present in the file: TTree::GetEntry over all
// entries (all branches: FullName, Flags, Value), then GetBinContent over every in-range bin
// (1..nx[, 1..ny], as DIALS extracts them), summed into a checksum so nothing is optimised away.
// Timed: from just after TFile::Open to the end of the loop (tree lookup + decoding + bin reads).
// Prints one JSON line: {"reader":"root_cxx","histograms":N,"seconds":S,"hist_per_s":R,"checksum":C}

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "TFile.h"
#include "TH1.h"
#include "TH2.h"
#include "TTree.h"

namespace {

template <class T>
Long64_t readTree(TFile& f, const char* treeName, int dim, double& checksum) {
  TTree* t = nullptr;
  f.GetObject(treeName, t);
  if (!t) return 0;  // older layouts have no TH1Is/TH2Is
  T* h = nullptr;
  std::string* name = nullptr;
  UInt_t flags = 0;
  t->SetBranchAddress("FullName", &name);
  t->SetBranchAddress("Flags", &flags);
  t->SetBranchAddress("Value", &h);
  const Long64_t n = t->GetEntries();
  for (Long64_t i = 0; i < n; ++i) {
    if (t->GetEntry(i) <= 0 || !h) {
      std::fprintf(stderr, "%s: entry %lld unreadable\n", treeName, i);
      continue;
    }
    const int nx = h->GetNbinsX();
    if (dim == 1) {
      for (int x = 1; x <= nx; ++x) checksum += h->GetBinContent(x);
    } else {
      const int ny = h->GetNbinsY();
      for (int y = 1; y <= ny; ++y)
        for (int x = 1; x <= nx; ++x) checksum += h->GetBinContent(x, y);
    }
    if (name->empty()) checksum += flags;  // keeps FullName/Flags "used"; never true for DQMIO MEs
  }
  t->ResetBranchAddresses();
  delete h;
  delete name;
  delete t;
  return n;
}

}  // namespace

void read_dqmio(const char* path) {
  TH1::AddDirectory(false);
  std::unique_ptr<TFile> f(TFile::Open(path, "READ"));
  if (!f || f->IsZombie()) {
    std::fprintf(stderr, "cannot open %s\n", path);
    return;
  }
  double checksum = 0;
  Long64_t n = 0;
  const auto t0 = std::chrono::steady_clock::now();
  n += readTree<TH1F>(*f, "TH1Fs", 1, checksum);
  n += readTree<TH1S>(*f, "TH1Ss", 1, checksum);
  n += readTree<TH1D>(*f, "TH1Ds", 1, checksum);
  n += readTree<TH1I>(*f, "TH1Is", 1, checksum);
  n += readTree<TH2F>(*f, "TH2Fs", 2, checksum);
  n += readTree<TH2S>(*f, "TH2Ss", 2, checksum);
  n += readTree<TH2D>(*f, "TH2Ds", 2, checksum);
  n += readTree<TH2I>(*f, "TH2Is", 2, checksum);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("{\"reader\":\"root_cxx\",\"histograms\":%lld,\"seconds\":%.6f,\"hist_per_s\":%.1f,\"checksum\":%.17g}\n",
              n, s, s > 0 ? n / s : 0.0, checksum);
  std::fflush(stdout);
}
