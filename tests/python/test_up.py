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


def test_dials_up_compacts_the_lake_once_the_inbox_is_quiet(tmp_path):
    """Many small files into one run: `dials up` merges the run's objects when the inbox goes quiet
    (DIALS_UP_COMPACT_AFTER files), as the scheduled function does when deployed, and every row is
    still served exactly once."""
    import os

    import deltalake

    copies = 9  # compaction merges a partition from 8 small objects on
    port = free_port()
    lake = tmp_path / "lake"
    proc = subprocess.Popen([dials_bin(), "up", "--inbox", str(tmp_path / "inbox"), "--lake", str(lake),
                             "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, DIALS_UP_COMPACT_AFTER=str(copies)))
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        wait_for(lambda: get(base + "/workspaces/"))
        for i in range(copies):
            p = tmp_path / "inbox" / LFN.format(primary="ZeroBias", name=f"part-{i}")
            p.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(FIXTURES / "small_zlib.root", p)
        wait_for(lambda: get(base + "/file-index/count/?status=FINISHED")["count"] == copies, timeout=120)
        # One object per run partition once compacted (the runs 380310 and 380311).
        def compacted():
            t = deltalake.DeltaTable(str(lake / "default" / "th1"))
            return t if len(t.file_uris()) == 2 else None

        table = wait_for(compacted, timeout=120)
        exp = expected_rows()
        want = sum(1 for k, v in exp.items() if v["kind"].startswith("TH1"))
        assert table.to_pyarrow_table(columns=["file_id"]).num_rows == copies * want
        # The API serves every row exactly once from the merged objects.
        rows, url = [], base + "/th1/?page_size=500&run_number=380310"
        while url:
            page = get(url)
            rows += page["results"]
            url = page.get("next")
        want_run = {k: v for k, v in exp.items() if v["kind"].startswith("TH1") and k[0] == 380310}
        assert len(rows) == copies * len(want_run)
        for h in rows:
            assert h["data"] == want_run[(h["run_number"], h["ls_number"], h["me"])]["data"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
