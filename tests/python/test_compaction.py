"""Compaction and vacuum while queries run (issue 16): `dials compact` merges each run's objects
(one per ingested file) and `dials vacuum` deletes the inputs, while `dials serve` answers a steady
stream of requests. No request fails, none returns a duplicate or a missing row, the tables end with
one object per partition, the removed objects are gone from disk, and Polars reads the same rows."""

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import polars as pl
from deltalake import DeltaTable

from conftest import FIXTURES, dials_bin, serving

FILES = 12
LFN = "store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/f{:02d}.root"


def get(base, path):
    with urllib.request.urlopen(base + "/api/v1" + path, timeout=30) as r:
        return r.status, json.loads(r.read())


def all_pages(base, path):
    out, status = [], 200
    url = base + "/api/v1" + path
    while url:
        with urllib.request.urlopen(url, timeout=30) as r:
            status = max(status, r.status)
            body = json.loads(r.read())
        out.extend(body["results"])
        url = body.get("next")
    return status, out


def parquet_objects(table_dir):
    return sorted(p for p in table_dir.rglob("*.parquet") if "_delta_log" not in p.parts)


def ingest_copies(tmp_path, n):
    """`n` copies of the small fixture under different file names, ingested into a new lake."""
    inbox = tmp_path / "inbox"
    for i in range(n):
        dst = inbox / LFN.format(i)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / "small_zlib.root", dst)
    lake = tmp_path / "lake"
    subprocess.run([dials_bin(), "ingest", str(inbox), "--lake", str(lake)], check=True, capture_output=True)
    return lake


def test_compaction_and_vacuum_while_queries_run(tmp_path):
    lake = ingest_copies(tmp_path, FILES)
    th1 = lake / "default" / "th1"
    before_objects = parquet_objects(th1)
    assert len(before_objects) == 2 * FILES  # two runs per file
    queries = [
        "/th1/?run_number=380310&ls_number=2&page_size=500",
        "/th1/?run_number=380311&page_size=7",  # several pages: pagination across snapshots
        "/th2/?run_number=380310&page_size=500",
        "/file-index/?page_size=5",
        "/lumisection/?page_size=100",
        "/mes/",
    ]

    def key(r):
        return json.dumps(r, sort_keys=True)

    env = dict(os.environ, DIALS_LISTING_TTL_MS="100")
    with serving("--lake", lake, env=env) as base:
        # ME queries: answered from the ME-major copy once compaction wrote it, the same rows.
        _, some = get(base, "/th1/?run_number=380311&ls_number=1&page_size=1")
        me = urllib.parse.quote(some["results"][0]["me"], safe="")
        queries += [f"/th1/?me={me}&run_number=380311&page_size=3"]
        baseline = {}
        for q in queries:
            status, rows = all_pages(base, q) if "page_size" in q else get(base, q)
            assert status == 200
            rows = rows if isinstance(rows, list) else rows.get("results", rows)
            baseline[q] = sorted(map(key, rows))
        assert len(baseline[queries[0]]) == 8 * FILES

        errors, mismatches, answered = [], [], [0]
        stop = threading.Event()

        def hammer():
            while not stop.is_set():
                for q in queries:
                    try:
                        status, rows = all_pages(base, q) if "page_size" in q else get(base, q)
                        rows = rows if isinstance(rows, list) else rows.get("results", rows)
                        got = sorted(map(key, rows))
                        if got != baseline[q]:
                            mismatches.append((q, len(got), len(baseline[q])))
                        answered[0] += 1
                    except Exception as e:  # noqa: BLE001 (every failure is reported below)
                        errors.append((q, repr(e)))

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            time.sleep(1)
            r = subprocess.run([dials_bin(), "compact", "--lake", str(lake), "--min-objects", "2"], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            report = [json.loads(line) for line in r.stdout.splitlines()]
            assert all(t["deferred"] == 0 for t in report), report
            assert {t["table"] for t in report if t["merged"]} >= {"th1", "th2", "lumisection_index", "me_index", "file_index"}
            # One ME-major copy per run partition of th1 and th2, none for the other tables.
            assert {t["table"]: t["copies"] for t in report if t["copies"]} == {"th1": 2, "th2": 2}, report
            time.sleep(2.5)  # queries move to the compacted snapshot (listing TTL 0.1 s)
            r = subprocess.run([dials_bin(), "vacuum", "--lake", str(lake), "--retention-hours", "0.0005"], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            deleted = sum(json.loads(line)["deleted"] for line in r.stdout.splitlines())
            assert deleted >= len(before_objects)
            time.sleep(2)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        assert not errors, errors[:5]
        assert not mismatches, mismatches[:5]
        assert answered[0] >= 3 * len(queries)

    after = parquet_objects(th1)
    assert len(after) == 2, after  # one merged object per run partition
    assert not any(p.exists() for p in before_objects)
    uris = DeltaTable(str(th1)).file_uris()
    assert sorted(u.removeprefix("file://") for u in uris) == sorted(map(str, after))
    df = pl.read_delta(str(th1))
    assert df.height == 8 * 5 * FILES  # 8 TH1 x 5 lumisections x files
    assert df.select(["run_number", "ls_number", "me", "file_id"]).unique().height == df.height
    # The copy is a Delta table too: the same rows, each run's object in (me_id, ls_number) order.
    by_me = pl.read_delta(str(lake / "default" / "th1_by_me"))
    cols = sorted(c for c in df.columns if c not in ("data", "sumw2", "x_edges", "x_labels"))
    assert by_me.select(cols).sort(cols).equals(df.select(cols).sort(cols))
    for obj in parquet_objects(lake / "default" / "th1_by_me"):
        keys = pl.read_parquet(obj).select(["me_id", "ls_number"])
        assert keys.equals(keys.sort(["me_id", "ls_number"])), obj


def test_rows_of_a_file_not_finished_are_not_served(tmp_path):
    """While a file's record says anything but FINISHED (a re-ingest running, a failure whose row
    removal has not landed), its rows are not served, and the other files' rows are."""
    lake = ingest_copies(tmp_path, 3)
    fi = lake / "default" / "file_index"
    records = pl.read_delta(str(fi))
    victim = int(records["file_id"][0])
    # The record of one file turns STARTED (as a re-ingest's first commit does); its rows stay.
    started = records.filter(pl.col("file_id") == victim).with_columns(pl.lit("STARTED").alias("status"))
    dt = DeltaTable(str(fi))
    dt.delete(f"file_id = {victim}")
    started.write_delta(str(fi), mode="append")
    assert pl.read_delta(str(lake / "default" / "th1")).filter(pl.col("file_id") == victim).height == 8 * 5
    with serving("--lake", lake) as base:
        _, rows = all_pages(base, "/th1/?run_number=380310&page_size=500")
        assert len(rows) == 8 * 3 * 2  # 8 TH1 x 3 lumisections of run 380310 x the 2 finished files
        _, lumis = all_pages(base, "/lumisection/?page_size=100")
        assert lumis
        status, n = get(base, "/file-index/count/?status=FINISHED")
        assert n["count"] == 2
