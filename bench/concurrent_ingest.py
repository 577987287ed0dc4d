#!/usr/bin/env python3
"""Many writers into the same Delta tables at once: N `dials ingest` processes (as N Lambda
invocations would be), each ingesting one copy of FILE under its own logical file name, all started
together against one lake. Checks that every file landed exactly once and reports, per process, the
ingest time, how much of it was committing (`commit_seconds` of the JSON report) and how many
commits were decided again after another writer moved the table (`commit_retries`), beside one
process ingesting the same file alone (before and after, same run).

    python3 bench/concurrent_ingest.py /tmp/kinds-bench/bench.root --writers 50 [--bin target/release/dials]
        [--localstack]   # the lake in LocalStack S3 (conditional puts over HTTP) instead of a folder
        [--alone K]      # K processes one after the other before the writers (medians of K), default 1
        [DIALS_STORE_COUNT=1]  # also each process's requests to the lake, by kind (medians)
        [--nice N]       # writers (and the alone runs) at `nice -n N`: the emulator is served first,
                         # as S3's capacity is not shared with a function's CPU (2 cores here)
        [--barrier]      # the writers decode and write their objects, then all commit at the same
                         # instant (DIALS_BENCH_COMMIT_BARRIER): commits as N Lambda instances
                         # finishing together meet them, each with its own CPU; their commit time is
                         # then set against the ingest time of one process alone
        [--queued]       # with --localstack: every ingest sends its commits to the FIFO commit queue
                         # (DIALS_COMMIT_QUEUE_URL) that one `dials worker` drains, as deployed;
                         # also reports upload-to-committed times from the consumer's log
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parent.parent
LFN = "store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/w-{i:03d}.root"


NICE = 0


def ingest(binary, path, lake, env):
    t0 = time.perf_counter()
    prefix = ["nice", "-n", str(NICE)] if NICE else []
    p = subprocess.Popen(prefix + [binary, "ingest", str(path), "--lake", lake, "--concurrency", "1"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.dials_name = Path(path).name
    return p, t0


def report(p, t0):
    out, err = p.communicate()
    if os.environ.get("BENCH_LOG_DIR"):
        Path(os.environ["BENCH_LOG_DIR"], p.dials_name + ".log").write_text(err)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"ingest failed ({p.returncode}):\n{err[-2000:]}")
    rep = json.loads(out.strip().splitlines()[-1])
    return {"queued": rep.get("commit_queued", False), "wall": wall, "seconds": rep["seconds"], "commit": rep["commit_seconds"], "retries": rep.get("commit_retries", 0), "rebases": rep.get("commit_rebases", 0), "carried": rep.get("commits_carried", 0), "handed": rep.get("commits_handed", 0), "rows": rep["workspaces"][0]["rows"],
            "requests": rep.get("lake_requests"), "requests_committing": rep.get("lake_requests_committing")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--writers", type=int, default=50)
    ap.add_argument("--bin", default=os.environ.get("DIALS_BENCH_BIN") or str(REPO / "target/release/dials"))
    ap.add_argument("--localstack", action="store_true")
    ap.add_argument("--alone", type=int, default=1)
    ap.add_argument("--nice", type=int, default=0)
    ap.add_argument("--barrier", action="store_true")
    ap.add_argument("--queued", action="store_true")
    a = ap.parse_args()
    global NICE
    NICE = a.nice
    src = Path(tempfile.mkdtemp(prefix="conc-src-"))
    paths = []
    for i in range(a.writers + a.alone + 1):
        p = src / LFN.format(i=i)
        p.parent.mkdir(parents=True, exist_ok=True)
        os.link(a.file, p) if os.stat(a.file).st_dev == os.stat(src).st_dev else shutil.copy(a.file, p)
        paths.append(p)
    # BENCH_DIALS_LOG=dials_lake=debug BENCH_LOG_DIR=D: each process's log in D/<file>.log.
    level = os.environ.get("BENCH_DIALS_LOG", "warn")
    env = dict(os.environ, RUST_LOG=level, DIALS_LOG=level)
    ls = None
    if a.localstack:
        from emu import LocalStack
        ls = LocalStack().__enter__()
        env.update(ls.env)
        lake = ls.lake
    else:
        lake_dir = Path(tempfile.mkdtemp(prefix="conc-lake-"))
        lake = str(lake_dir)
    consumer = None
    if a.queued:
        if ls is None:
            raise SystemExit("--queued needs --localstack (the commit queue is an SQS FIFO queue)")
        env = dict(env, DIALS_COMMIT_QUEUE_URL=ls.info["commit_queue_url"])
        consumer_log = Path(tempfile.mkdtemp(prefix="conc-consumer-")) / "worker.log"
        consumer = subprocess.Popen([a.bin, "worker", "--queue-url", ls.info["commit_queue_url"], "--lake", lake],
                                    env=dict(env, DIALS_LOG="dials_lake=info", DIALS_COMMIT_QUEUE_URL=""),
                                    stdout=subprocess.DEVNULL, stderr=open(consumer_log, "w"))

    def committed_at():
        # Wall-clock time (s) of each file's FINISHED line in the consumer's log, by file name.
        import re
        from datetime import datetime
        out = {}
        for line in consumer_log.read_text().splitlines():
            line = re.sub(r"\x1b\[[0-9;]*m", "", line)
            if " FINISHED" not in line:
                continue
            m = re.search(r"object=\S*?(w-\d+\.root)", line)
            if m:
                out[m.group(1)] = datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
        return out

    def wait_committed(names, limit=600):
        t = time.time()
        while time.time() - t < limit:
            done = committed_at()
            if all(n in done for n in names):
                return done
            time.sleep(0.05)
        raise SystemExit(f"commit queue not drained in {limit} s:\n{consumer_log.read_text()[-3000:]}")

    try:
        befores = []
        for k in range(a.alone):
            befores.append(report(*ingest(a.bin, paths[a.writers + k], lake, env)))
            if consumer is not None and befores[-1]["queued"]:
                wait_committed([paths[a.writers + k].name])
        alone_before = befores[0]
        t0 = time.perf_counter()
        gate = None
        wenv = env
        if a.barrier:
            gate = Path(tempfile.mkdtemp(prefix="conc-gate-")) / "go"
            wenv = dict(env, DIALS_BENCH_COMMIT_BARRIER=str(gate))
        procs = [ingest(a.bin, paths[i], lake, wenv) for i in range(a.writers)]
        if gate is not None:
            # Every writer has written its objects (its marker is there): open the gate at once.
            while len(list(gate.parent.glob("go.*"))) < a.writers:
                if any(p.poll() not in (None, 0) for p, _ in procs):
                    break
                time.sleep(0.005)
            gate.touch()
            t0 = time.perf_counter()
            gate_wall = time.time()
        reps = [report(p, t) for p, t in procs]
        total = time.perf_counter() - t0
        if gate is not None:
            shutil.rmtree(gate.parent, ignore_errors=True)
        visible = None
        if consumer is not None:
            names = [paths[i].name for i in range(a.writers) if reps[i]["queued"]]
            done = wait_committed(names)
            start = gate_wall if gate is not None else time.time() - total
            visible = sorted(done[n] - start for n in names)
        alone_after = report(*ingest(a.bin, paths[-1], lake, env))
        if consumer is not None and alone_after["queued"]:
            wait_committed([paths[-1].name])
            consumer.terminate()
            consumer.wait(timeout=20)
        # Exactly once: every table holds writers + 2 copies of one file's rows.
        import deltalake

        opts = {}
        if ls is not None:
            opts = {"AWS_ENDPOINT_URL": ls.env["AWS_ENDPOINT_URL"], "AWS_REGION": ls.env.get("AWS_DEFAULT_REGION", "us-east-1"),
                    "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_ALLOW_HTTP": "true"}
        files = a.writers + a.alone + 1
        ok = True
        for table, n in alone_before["rows"].items():
            got = deltalake.DeltaTable(f"{lake}/default/{table}", storage_options=opts).to_pyarrow_table(columns=["file_id"]).num_rows
            want = n * files
            ok &= got == want
            print(f"{table}: {got} rows, want {want} ({'ok' if got == want else 'WRONG'})")
        fi = deltalake.DeltaTable(f"{lake}/default/file_index", storage_options=opts).to_pyarrow_table()
        statuses = fi.column("status").to_pylist()
        print(f"file_index: {len(statuses)} records, {statuses.count('FINISHED')} FINISHED (want {files})")
        ok &= statuses.count("FINISHED") == files == len(statuses)
        med = lambda xs: statistics.median(xs)
        print(f"\nbinary {a.bin}; {Path(a.file).name} ({os.path.getsize(a.file) / 1e6:.1f} MB); lake {'LocalStack S3' if ls else 'local folder'}")
        print("| | ingest s (median) | commit s (median) | commit share | max ingest s | max commit s | commits decided again (median, total) | other files' commits gone past (median, total) | changes carried / handed over (total) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name, rs in [(f"alone, before ({a.alone})", befores), (f"{a.writers} at once", reps), ("alone, after", [alone_after])]:
            s, c = [r["seconds"] for r in rs], [r["commit"] for r in rs]
            rt, rb = [r["retries"] for r in rs], [r["rebases"] for r in rs]
            cr, hd = sum(r["carried"] for r in rs), sum(r["handed"] for r in rs)
            print(f"| {name} | {med(s):.2f} | {med(c):.2f} | {med(c) / med(s) * 100:.0f} % | {max(s):.2f} | {max(c):.2f} | {med(rt):g}, {sum(rt)} | {med(rb):g}, {sum(rb)} | {cr} / {hd} |")
        if gate is not None:
            # Commits at one instant against one ingest alone (its own commit included).
            alone = med([r["seconds"] for r in befores[1:] or befores] + [alone_after["seconds"]])
            c = sorted(r["commit"] for r in reps)
            p90 = c[min(len(c) - 1, int(round(0.9 * (len(c) - 1))))]
            print(f"\nbarrier: {a.writers} commits started at one instant; commit s p50 {med(c):.3f}, p90 {p90:.3f}, max {c[-1]:.3f}; "
                  f"one ingest alone {alone:.3f} s (median of the alone runs after the first); "
                  f"commit p50 / ingest alone = {med(c) / alone * 100:.0f} %, max / ingest alone = {c[-1] / alone * 100:.0f} %")
        if consumer is not None and not visible:
            print(f"\nqueued commits: none of the {a.writers} files queued (no crowd seen)")
        if visible:
            print(f"\nqueued commits: {len(visible)} of {a.writers} files queued (DIALS_COMMIT_QUEUE_WHEN={os.environ.get('DIALS_COMMIT_QUEUE_WHEN', 'crowded')}), "
                  f"committed by the consumer {med(visible):.3f} s (p50), {visible[-1]:.3f} s (last) "
                  f"after the {'gate' if gate is not None else 'first start'}")
        if reps[0]["requests"]:
            # DIALS_STORE_COUNT=1: each process's lake requests (medians), all and while committing.
            print("\n| lake requests per process (median) | get | put | list | all | of them committing (get / put / list) |")
            print("|---|---|---|---|---|---|")
            for name, rs in [(f"alone, before ({a.alone})", befores), (f"{a.writers} at once", reps), ("alone, after", [alone_after])]:
                k = lambda r, key: r["requests"][key]
                allr = [sum(r["requests"].values()) for r in rs]
                comm = [sum(r["requests_committing"].values()) for r in rs]
                c = lambda key: med([r["requests_committing"][key] for r in rs])
                print(f"| {name} | {med([k(r, 'get') for r in rs]):g} | {med([k(r, 'put') for r in rs]):g} | {med([k(r, 'list') for r in rs]):g} | {med(allr):g} | {med(comm):g} ({c('get'):g} / {c('put'):g} / {c('list'):g}) |")
        print(f"\n{a.writers} processes: {total:.1f} s from the {'gate' if gate else 'first start'} to the last exit; exactly once: {'yes' if ok else 'NO'}")
        if not ok:
            sys.exit(1)
    finally:
        if consumer is not None and consumer.poll() is None:
            consumer.kill()
        if ls is not None:
            ls.__exit__(None, None, None)
        shutil.rmtree(src, ignore_errors=True)


if __name__ == "__main__":
    main()
