#!/usr/bin/env python3
"""How many S3 requests per second the local LocalStack answers on this machine, and how a prefix
LIST's latency grows with the number of objects in the bucket (the Delta log is listed on every
commit and every follow). Used to read the burst benchmark: its files need ~30 PUTs each.

    python3 bench/localstack_rate.py [--objects 20000] [--threads 16]
"""

import argparse
import concurrent.futures
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from emu import LocalStack  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=16)
    a = ap.parse_args()
    body = b"x" * 3000
    with LocalStack() as ls:
        bucket = ls.info.get("lake_bucket", "dials-lake")
        log_prefix = "lake/default/th1/_delta_log/"
        for i in range(50):
            ls.s3.put_object(Bucket=bucket, Key=f"{log_prefix}{i:020d}.json", Body=b"{}")

        def list_ms(n=20):
            out = []
            for _ in range(n):
                t = time.perf_counter()
                ls.s3.list_objects_v2(Bucket=bucket, Prefix=log_prefix, StartAfter=f"{log_prefix}{40:020d}.json")
                out.append((time.perf_counter() - t) * 1000)
            return statistics.median(out)

        print(f"LIST of a 50-entry log (10 after start-after), bucket of 50 objects: {list_ms():.1f} ms median")
        done = 0
        step = a.objects // 4
        for round_ in range(4):
            keys = [f"lake/default/th1/run_number={k % 200}/part-{k}.parquet" for k in range(done, done + step)]
            t = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(a.threads) as pool:
                list(pool.map(lambda k: ls.s3.put_object(Bucket=bucket, Key=k, Body=body), keys))
            el = time.perf_counter() - t
            done += step
            print(f"PUT {step} × 3 KB with {a.threads} threads: {step / el:.0f} PUT/s; "
                  f"bucket now {done + 50} objects: LIST of the log {list_ms():.1f} ms median")


if __name__ == "__main__":
    main()
