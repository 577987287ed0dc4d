"""The lake read directly as Delta Lake tables: Polars (`scan_delta`), pyarrow and DuckDB through
the `deltalake` package, Spark over the snapshot's file list (delta-spark's jars are not reachable
here; docs/lake.md shows the native reader): exactly the committed rows, values equal ROOT's. A
stray object in a table folder (what a failed attempt leaves until vacuum) is never read."""

import shutil
from pathlib import Path

import duckdb
import polars as pl
from deltalake import DeltaTable

from conftest import expected_rows

ZB = "/ZeroBias/Run2024C-PromptReco-v1/DQMIO"


def want(dim):
    exp = expected_rows()
    return {k: v for k, v in exp.items() if v["kind"].startswith("TH1" if dim == 1 else "TH2")}


def check(rows, dim):
    """rows: iterable of dicts with run_number, ls_number, me, x_min, x_max, x_bin, entries, data."""
    w = want(dim)
    seen = {}
    for r in rows:
        key = (int(r["run_number"]), int(r["ls_number"]), r["me"])
        seen[key] = seen.get(key, 0) + 1
        e = w[key]
        assert (r["x_min"], r["x_max"], r["x_bin"], r["entries"]) == (e["x_min"], e["x_max"], e["x_bin"], e["entries"])
        data = [list(x) for x in r["data"]] if dim == 2 else list(r["data"])
        assert data == e["data"]
    # two ZeroBias files in workspace "all": every ROOT row twice, nothing else
    assert set(seen) == set(w) and set(seen.values()) == {2}


def table_path(lake, table):
    return f"{lake['lake']}/all/{table}"


def test_committed_objects_only(lake):
    """Objects in a table folder that no commit names are not part of the table."""
    for table in ["th1", "th2"]:
        dt = DeltaTable(table_path(lake, table))
        uris = dt.file_uris()
        assert uris and all("/run_number=" in u for u in uris)
        assert dt.protocol().min_reader_version == 1
        assert dt.metadata().partition_columns == ["run_number"]
        # A stray copy of a committed object (as a failed attempt leaves): the tests below must
        # still see every row exactly as committed.
        first = Path(uris[0].removeprefix("file://"))
        shutil.copy(first, first.with_name("part-stray-0000000000000000.parquet"))


def test_duckdb(lake):
    for dim, table in [(1, "th1"), (2, "th2")]:
        ds = DeltaTable(table_path(lake, table)).to_pyarrow_dataset()  # noqa: F841 (DuckDB scans it by name)
        rel = duckdb.sql(f"SELECT * FROM ds WHERE dataset = '{ZB}'")
        cols = rel.columns
        check([dict(zip(cols, row)) for row in rel.fetchall()], dim)


def test_polars(lake):
    for dim, table in [(1, "th1"), (2, "th2")]:
        df = pl.scan_delta(table_path(lake, table)).filter(pl.col("dataset") == ZB).collect()
        check(df.to_dicts(), dim)


def test_pyarrow(lake):
    for dim, table in [(1, "th1"), (2, "th2")]:
        t = DeltaTable(table_path(lake, table)).to_pyarrow_table()
        rows = [r for r in t.to_pylist() if r["dataset"] == ZB]
        check(rows, dim)


def test_spark(lake):
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        import pytest
        pytest.fail("pyspark is not installed (tests/run.sh installs it)")
    spark = (SparkSession.builder.master("local[1]").appName("dials-lake-test")
             .config("spark.ui.enabled", "false").config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1").getOrCreate())
    try:
        for dim, table in [(1, "th1"), (2, "th2")]:
            # The snapshot's files (what delta-spark would read), partition columns from the paths.
            files = DeltaTable(table_path(lake, table)).file_uris()
            df = (spark.read.option("basePath", table_path(lake, table)).parquet(*files)
                  .where(f"dataset = '{ZB}'"))
            check([r.asDict(recursive=True) for r in df.collect()], dim)
    finally:
        spark.stop()
