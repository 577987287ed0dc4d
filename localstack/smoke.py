#!/usr/bin/env python3
"""End-to-end check of the S3 → SQS wiring made by init.py; shows the exact event an ingest function gets.

    ~/.cache/dials-emulators/moto-venv/bin/python localstack/smoke.py --endpoint http://127.0.0.1:4566

Uploads a small object (default key with a space and a plus, to show the key encoding) to the raw bucket,
long-polls the ingest queue for up to --wait seconds (default 20) and prints every message body received
as-is, deleting each. An s3:TestEvent (sent when the notification configuration is applied) is printed and
skipped. Checks that the ObjectCreated record names the bucket and, after form-decoding ('+' → space,
then percent-decoding), the uploaded key. Exit status 0 only if that event arrived.

--save-event FILE / --save-test-event FILE write the body JSON (pretty-printed, field order kept).
Same endpoint/name flags and environment variables as init.py.
"""

import argparse
import json
import os
import sys
import time
import urllib.parse

os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("AWS_DEFAULT_REGION", os.environ["AWS_REGION"])

try:
    import boto3
    from botocore.config import Config
except ImportError:  # pragma: no cover
    sys.exit("smoke.py: boto3 missing; run it with the moto venv's python (install.sh moto)")

DEFAULT_KEY = "store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/a b+c.root"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"))
    p.add_argument("--region", default=os.environ["AWS_REGION"])
    p.add_argument("--raw-bucket", default=os.environ.get("DIALS_RAW_BUCKET", "dials-raw"))
    p.add_argument("--queue", default=os.environ.get("DIALS_INGEST_QUEUE", "dials-ingest"))
    p.add_argument("--key", default=DEFAULT_KEY)
    p.add_argument("--wait", type=float, default=20.0, help="seconds to wait for the event (default 20)")
    p.add_argument("--keep-object", action="store_true", help="leave the uploaded object in the bucket")
    p.add_argument("--save-event", metavar="FILE")
    p.add_argument("--save-test-event", metavar="FILE")
    return p.parse_args(argv)


def save(path, body):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(json.loads(body), f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"smoke.py: saved {path}", file=sys.stderr)


def form_decode(key):
    return urllib.parse.unquote_plus(key)


def main(argv=None):
    a = parse_args(argv)
    cfg = Config(s3={"addressing_style": "path"})
    s3 = boto3.client("s3", endpoint_url=a.endpoint, region_name=a.region, config=cfg)
    sqs = boto3.client("sqs", endpoint_url=a.endpoint, region_name=a.region)
    q_url = sqs.get_queue_url(QueueName=a.queue)["QueueUrl"]

    body = b"not a ROOT file: dials smoke test\n"
    t_put = time.monotonic()
    s3.put_object(Bucket=a.raw_bucket, Key=a.key, Body=body)
    print(f"smoke.py: put s3://{a.raw_bucket}/{a.key} ({len(body)} bytes)", file=sys.stderr)

    deadline = t_put + a.wait
    found = False
    while not found:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        resp = sqs.receive_message(
            QueueUrl=q_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=max(1, min(20, int(left))),
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        for m in resp.get("Messages", []):
            raw = m["Body"]
            print(f"smoke.py: message {m['MessageId']} attributes {json.dumps(m.get('Attributes', {}))}", file=sys.stderr)
            print(raw, flush=True)
            sqs.delete_message(QueueUrl=q_url, ReceiptHandle=m["ReceiptHandle"])
            try:
                doc = json.loads(raw)
            except ValueError:
                print("smoke.py: body is not JSON", file=sys.stderr)
                continue
            if doc.get("Event") == "s3:TestEvent":
                print("smoke.py: (s3:TestEvent, skipped)", file=sys.stderr)
                if a.save_test_event:
                    save(a.save_test_event, raw)
                continue
            for rec in doc.get("Records", []):
                s3rec = rec.get("s3", {})
                enc = s3rec.get("object", {}).get("key", "")
                bucket = s3rec.get("bucket", {}).get("name")
                ok = bucket == a.raw_bucket and form_decode(enc) == a.key
                print(
                    f"smoke.py: {rec.get('eventName')} bucket={bucket} key(raw)={enc!r} "
                    f"form-decoded={form_decode(enc)!r} {'OK' if ok else 'MISMATCH'} "
                    f"after {time.monotonic() - t_put:.2f} s",
                    file=sys.stderr,
                )
                if ok:
                    found = True
                    if a.save_event:
                        save(a.save_event, raw)

    if not a.keep_object:
        s3.delete_object(Bucket=a.raw_bucket, Key=a.key)
    if not found:
        print(f"smoke.py: FAILED: no ObjectCreated event for the key within {a.wait:g} s", file=sys.stderr)
        return 1
    print("smoke.py: OK", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
