"""Regenerates the UI screenshots under docs/screenshots/ (shown in the README).

    python3 tests/ui/screenshots.py            # builds nothing: uses target/ci/dials (or DIALS_BIN)

Ingests the committed ROOT-written fixtures into a temporary lake (as tests/python/conftest.py does),
starts `dials serve`, and photographs the main pages with headless Chromium (Debian package) through
Playwright.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from conftest import FIXTURES, LFN, REPO, dials_bin, serving  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

OUT = REPO / "docs" / "screenshots"
ZB = "/ZeroBias/Run2024C-PromptReco-v1/DQMIO"


def main():
    root = Path(tempfile.mkdtemp(prefix="dials-shots-"))
    inbox = root / "inbox"
    for primary, name, fx in [("ZeroBias", "a", "small_zlib.root"), ("JetMET0", "c", "small_zstd.root")]:
        dst = inbox / LFN.format(primary=primary, name=name)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / fx, dst)
    bad = inbox / LFN.format(primary="ZeroBias", name="corrupt")
    bad.write_bytes((FIXTURES / "small_zlib.root").read_bytes()[:20000])
    subprocess.run([dials_bin(), "ingest", str(inbox), "--lake", str(root / "lake")], capture_output=True)
    with serving("--lake", str(root / "lake")) as base:
        get = lambda p: json.load(urllib.request.urlopen(base + "/api/v1/" + p))  # noqa: E731
        ds = get(f"dataset-index/?dataset={ZB}")["results"][0]["dataset_id"]
        h1 = get(f"th1/?dataset_id={ds}&run_number=380310&ls_number=1&me=PixelPhase1/Tracks/PXBarrel/charge_PXLayer_2")["results"][0]
        h2 = get(f"th2/?dataset_id={ds}&run_number=380310&ls_number=1&me__regex=digi_occupancy_per_SignedModuleCoord")["results"][0]
        pages = [
            ("overview", "/overview"),
            ("runs", "/runs"),
            ("run", f"/runs/{ds}/380310"),
            ("lumisection", f"/lumisections/{ds}/380310/1"),
            ("histogram-1d", f"/histograms-1d/{ds}/380310/1/{h1['me_id']}?cmp=380310:2,380311:*"),
            ("histogram-2d", f"/histograms-2d/{ds}/380310/1/{h2['me_id']}"),
            ("run-view", f"/runs/{ds}/380310/me/{h1['me_id']}"),
            ("histograms-1d", "/histograms-1d?me__regex=Tracks"),
            ("browser", f"/browser?dataset_id={ds}&run=380310&ls=1"),
            ("browser-folder", f"/browser?dataset_id={ds}&run=380310&ls=1&path=PixelPhase1/Tracks/PXBarrel"),
            ("file-index", "/file-index"),
        ]
        OUT.mkdir(parents=True, exist_ok=True)
        chromium = os.environ.get("DIALS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            pg = b.new_page(viewport={"width": 1280, "height": 800})
            for name, path in pages:
                pg.goto(base + path)
                pg.wait_for_selector("main[data-state=ready]")
                pg.wait_for_timeout(300)
                if name == "histogram-1d":
                    box = pg.locator("#plot canvas").bounding_box()
                    pg.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.5)
                pg.screenshot(path=str(OUT / f"{name}.png"), full_page=name == "run-view")
                print("wrote", OUT / f"{name}.png")
            b.close()
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
