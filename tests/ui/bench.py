"""Lumisection page timing: 1,000 TH1 (100 bins) + 100 TH2 (50x50) thumbnails, in headless Chromium.

    python3 tests/ui/bench.py [--runs 5]      # uses target/ci/dials (or DIALS_BIN)

Writes (once) a bench file with real ROOT (`tests/fixtures/gen_dqmio.py --bench --lumis 5`, not committed),
ingests it, serves it, then opens lumisection 1 in a fresh browser context per run and reads the
page's own timing (`main[data-timing]`): API data in (Arrow, one request per table; or JSON pages of 500
with `fmt=json`), first thumbnail drawn, page ready. Also times drawing all 1,100 thumbnails and a
scroll through the whole grid. Prints a Markdown table (docs/benchmarks.md).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from conftest import REPO, dials_bin, serving  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

BENCH = Path(os.environ.get("DIALS_UI_BENCH", "/tmp/dials-ui-bench/bench.root"))
DATASET = "/Bench/Run2024X-PromptReco-v1/DQMIO"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if not BENCH.exists():
        BENCH.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(REPO / "tests/fixtures/gen_dqmio.py"), str(BENCH), "--bench", "--lumis", "5"], check=True)
    root = Path(tempfile.mkdtemp(prefix="dials-ui-bench-"))
    subprocess.run([dials_bin(), "ingest", str(BENCH), "--lake", str(root / "lake"), "--dataset", DATASET], check=True, capture_output=True)
    with serving("--lake", str(root / "lake")) as base:
        ds = json.load(urllib.request.urlopen(base + "/api/v1/dataset-index/"))["results"][0]["dataset_id"]
        run = json.load(urllib.request.urlopen(base + f"/api/v1/run/?dataset_id={ds}"))["results"][0]["run_number"]
        url = f"{base}/lumisections/{ds}/{run}/1?ws=default"
        chromium = os.environ.get("DIALS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
        rows = {}
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            for fmt in ("arrow", "json"):
                got = []
                for i in range(args.runs + 1):  # the first run warms the server's caches
                    ctx = b.new_context(viewport={"width": 1400, "height": 900})
                    pg = ctx.new_page()
                    pg.goto(url + ("&fmt=json" if fmt == "json" else ""))
                    pg.wait_for_selector("main[data-timing]")
                    t = json.loads(pg.get_attribute("main", "data-timing"))
                    assert pg.locator(".card").count() == 1100
                    if fmt == "arrow":
                        # Draw every thumbnail once (offscreen) and scroll through the whole grid.
                        t["draw_all_ms"] = pg.evaluate("""async () => {
                          const m = await import('/ui/plot.js'); const api = await import('/ui/api.js');
                          const q = Object.fromEntries(location.pathname.split('/').slice(2).map((v, i) => [['dataset_id','run_number','ls_number'][i], v]));
                          const [a, b] = await Promise.all([api.bulk('th1/', q), api.bulk('th2/', q)]);
                          const { decodeArrow } = await import('/ui/arrow.js');
                          const bufs = await Promise.all(['th1/', 'th2/'].map(t => fetch('/api/v1/' + t + '?' + new URLSearchParams({...q, format: 'arrow'})).then(r => r.arrayBuffer())));
                          const d0 = performance.now(); bufs.forEach(decodeArrow); const decode = performance.now() - d0;
                          const c = document.createElement('canvas'); const t0 = performance.now();
                          for (const r of a) m.thumb1D(c, r); for (const r of b) m.thumb2D(c, r);
                          return [Math.round(performance.now() - t0), Math.round(decode)]; }""")
                        t["scroll_ms"] = pg.evaluate("""async () => {
                          const t0 = performance.now(); const step = innerHeight; let frames = 0;
                          for (let y = 0; y < document.body.scrollHeight; y += step) { scrollTo(0, y); await new Promise(r => requestAnimationFrame(() => r())); frames++; }
                          return [Math.round(performance.now() - t0), frames]; }""")
                    ctx.close()
                    if i:
                        got.append(t)
                rows[fmt] = got
            b.close()
        med = lambda fmt, k: statistics.median(r[k] for r in rows[fmt])  # noqa: E731
        print(f"| fetch | runs | data in (ms) | first thumbnail (ms) | page ready (ms) | first thumbnail since navigation (ms) |")
        print("|---|---|---|---|---|---|")
        for fmt, label in (("arrow", "Arrow, 1 request per table"), ("json", "JSON, pages of 500")):
            print(f"| {label} | {args.runs} | {med(fmt, 'data_ms'):.0f} | {med(fmt, 'first_thumb_ms'):.0f} | {med(fmt, 'page_ms'):.0f} | {med(fmt, 'since_navigation_ms'):.0f} |")
        sc = [r["scroll_ms"] for r in rows["arrow"]]
        print(f"\ndecode both Arrow responses: median {statistics.median(r['draw_all_ms'][1] for r in rows['arrow']):.0f} ms; "
              f"draw all 1,100 thumbnails: median {statistics.median(r['draw_all_ms'][0] for r in rows['arrow']):.0f} ms; "
              f"scroll through the grid: median {statistics.median(s[0] for s in sc):.0f} ms for {sc[0][1]} screens "
              f"({statistics.median(s[0] / s[1] for s in sc):.1f} ms per screen incl. drawing)")
        for fmt in rows:
            print(fmt, json.dumps(rows[fmt]))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
