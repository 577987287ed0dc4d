"""The lake read directly, with Hive partitioning, by DuckDB, Polars, pyarrow (and Spark when
pyspark is installed by the test script): exactly the committed rows, values equal ROOT's."""

import duckdb
import polars as pl
import pyarrow.dataset as pads

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


def test_duckdb(lake):
    for dim, table in [(1, "th1"), (2, "th2")]:
        path = f"{lake['lake']}/all/{table}/**/*.parquet"
        rel = duckdb.sql(f"SELECT * FROM read_parquet('{path}', hive_partitioning = true) WHERE dataset = '{ZB}'")
        cols = rel.columns
        check([dict(zip(cols, row)) for row in rel.fetchall()], dim)


def test_polars(lake):
    for dim, table in [(1, "th1"), (2, "th2")]:
        df = pl.scan_parquet(f"{lake['lake']}/all/{table}/**/*.parquet", hive_partitioning=True).filter(pl.col("dataset") == ZB).collect()
        check(df.to_dicts(), dim)


def test_pyarrow(lake):
    for dim, table in [(1, "th1"), (2, "th2")]:
        t = pads.dataset(f"{lake['lake']}/all/{table}", format="parquet", partitioning="hive").to_table()
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
            df = spark.read.parquet(f"{lake['lake']}/all/{table}").where(f"dataset = '{ZB}'")
            check([r.asDict(recursive=True) for r in df.collect()], dim)
    finally:
        spark.stop()
