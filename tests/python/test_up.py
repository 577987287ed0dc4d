"""The embedded default, as a user runs it: `dials up` watching an inbox folder, files dropped in while it
runs, Parquet in the lake folder, the API on localhost — values equal ROOT's, new files appear."""

import json
import shutil
import subprocess
import time
import urllib.request

from conftest import FIXTURES, LFN, dials_bin, expected_rows, free_port


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def wait_for(fn, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            v = fn()
            if v:
                return v
        except Exception:
            pass
        time.sleep(0.3)
    raise AssertionError("timed out")


def test_dials_up_ingests_dropped_files_and_serves_them(tmp_path):
    port = free_port()
    proc = subprocess.Popen([dials_bin(), "up", "--inbox", str(tmp_path / "inbox"), "--lake", str(tmp_path / "lake"),
                             "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        wait_for(lambda: get(base + "/workspaces/"))
        # The web UI comes with it: nothing else to install or build.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/runs") as r:
            assert r.headers["Content-Type"].startswith("text/html") and b"/ui/app.js" in r.read()
        first = tmp_path / "inbox" / LFN.format(primary="ZeroBias", name="one")
        first.parent.mkdir(parents=True)
        shutil.copy(FIXTURES / "small_zlib.root", first)
        runs = wait_for(lambda: get(base + "/run/")["results"])
        assert sorted(r["run_number"] for r in runs) == [380310, 380311]
        rows = get(base + "/th1/?page_size=500")["results"]
        exp = expected_rows()
        want = {k: v for k, v in exp.items() if v["kind"].startswith("TH1")}
        assert len(rows) == len(want)
        for h in rows:
            assert h["data"] == want[(h["run_number"], h["ls_number"], h["me"])]["data"]
        # Parquet really is in the lake folder, Hive-partitioned by run, committed to a Delta log.
        assert list((tmp_path / "lake" / "default" / "th1").glob("run_number=380310/*.parquet"))
        assert list((tmp_path / "lake" / "default" / "th1" / "_delta_log").glob("*.json"))
        # A second file dropped while it runs shows up; a broken one gets a status, not rows.
        second = tmp_path / "inbox" / LFN.format(primary="JetMET0", name="two")
        second.parent.mkdir(parents=True)
        shutil.copy(FIXTURES / "small_lz4.root", second)
        bad = tmp_path / "inbox" / LFN.format(primary="ZeroBias", name="broken")
        bad.write_bytes(b"not a ROOT file")
        stray = tmp_path / "inbox" / "notes.root"  # no CMS name and no --dataset: PARSING_ERROR, never a guess
        stray.write_bytes((FIXTURES / "small_zlib.root").read_bytes())
        wait_for(lambda: get(base + "/file-index/count/?status=FINISHED")["count"] == 2)
        # Each file's record goes STARTED -> its end status in two commits: wait until all four ended
        # (a file stuck in STARTED fails here after the timeout).
        def ended():
            fs = get(base + "/file-index/?page_size=50")["results"]
            return fs if len(fs) == 4 and all(f["status"] != "STARTED" for f in fs) else None

        files = wait_for(ended)
        assert sorted(f["status"] for f in files) == ["FINISHED", "FINISHED", "PARSING_ERROR", "ROOTFILE_ERROR"]
        assert len(get(base + "/dataset-index/")["results"]) == 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)
