#!/usr/bin/env python3
"""Creates the DIALS ingest plumbing in an S3 + SQS emulator (LocalStack or moto). Idempotent.

    ~/.cache/dials-emulators/moto-venv/bin/python localstack/init.py --endpoint http://127.0.0.1:4566

(any Python with boto3 works; the moto venv has it because moto depends on boto3).

Creates
  - buckets  dials-raw (uploads) and dials-lake (Parquet lake)
  - queues   dials-ingest-dlq, and dials-ingest with VisibilityTimeout=60 and
             RedrivePolicy {maxReceiveCount: 3 → dials-ingest-dlq}
  - a queue policy on dials-ingest that lets s3.amazonaws.com send from the raw bucket
  - the raw bucket's notification: s3:ObjectCreated:* with suffix .root → dials-ingest
  - FIFO queues dials-commits-dlq.fifo, and dials-commits.fifo with the same visibility timeout and
    redrive policy (queued commits: `dials worker --commit-queue-url`, docs/lake.md)
and prints one JSON line: endpoint, region, buckets, queue/DLQ URLs and ARNs.

Names: flags, else DIALS_RAW_BUCKET, DIALS_LAKE_BUCKET, DIALS_INGEST_QUEUE, DIALS_INGEST_DLQ.
Endpoint: --endpoint, else AWS_ENDPOINT_URL, else http://127.0.0.1:4566. Region us-east-1 and credentials
test/test unless set in the environment.

Note: applying a notification configuration makes S3 (real, and LocalStack) put one s3:TestEvent message
on the queue; consumers must ignore it.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("AWS_DEFAULT_REGION", os.environ["AWS_REGION"])

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError
except ImportError:  # pragma: no cover
    sys.exit("init.py: boto3 missing; run it with the moto venv's python (install.sh moto)")

NOTIFICATION_ID = "dials-ingest-root"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"))
    p.add_argument("--region", default=os.environ["AWS_REGION"])
    p.add_argument("--raw-bucket", default=os.environ.get("DIALS_RAW_BUCKET", "dials-raw"))
    p.add_argument("--lake-bucket", default=os.environ.get("DIALS_LAKE_BUCKET", "dials-lake"))
    p.add_argument("--queue", default=os.environ.get("DIALS_INGEST_QUEUE", "dials-ingest"))
    p.add_argument("--dlq", default=os.environ.get("DIALS_INGEST_DLQ", "dials-ingest-dlq"))
    p.add_argument("--commit-queue", default=os.environ.get("DIALS_COMMIT_QUEUE", "dials-commits.fifo"))
    p.add_argument("--commit-dlq", default=os.environ.get("DIALS_COMMIT_DLQ", "dials-commits-dlq.fifo"))
    p.add_argument("--suffix", default=".root", help="key suffix filter of the notification (default .root)")
    p.add_argument("--visibility-timeout", type=int, default=60)
    p.add_argument("--max-receive-count", type=int, default=3)
    return p.parse_args(argv)


def clients(endpoint, region):
    cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"})
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region, config=cfg)
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=region, config=cfg)
    return s3, sqs


def ensure_bucket(s3, name, region):
    kwargs = {"Bucket": name}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as e:
        if e.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def ensure_queue(sqs, name):
    """Returns the queue URL, creating the queue without attributes if missing (attributes are then set with
    SetQueueAttributes, so a re-run with other values updates instead of failing with QueueAlreadyExists).
    A name ending in .fifo makes a FIFO queue (fixed at creation)."""
    try:
        return sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as e:
        if "NonExistentQueue" not in e.response["Error"]["Code"] and "QueueDoesNotExist" not in e.response["Error"]["Code"]:
            raise
    attrs = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
    return sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]


def queue_arn(sqs, url):
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def main(argv=None):
    a = parse_args(argv)
    s3, sqs = clients(a.endpoint, a.region)

    ensure_bucket(s3, a.raw_bucket, a.region)
    ensure_bucket(s3, a.lake_bucket, a.region)

    dlq_url = ensure_queue(sqs, a.dlq)
    dlq_arn = queue_arn(sqs, dlq_url)
    q_url = ensure_queue(sqs, a.queue)
    q_arn = queue_arn(sqs, q_url)

    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowS3SendFromRawBucket",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": q_arn,
                "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{a.raw_bucket}"}},
            }
        ],
    }
    sqs.set_queue_attributes(
        QueueUrl=q_url,
        Attributes={
            "VisibilityTimeout": str(a.visibility_timeout),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(a.max_receive_count)}),
            "Policy": json.dumps(policy),
        },
    )

    commit_dlq_url = ensure_queue(sqs, a.commit_dlq)
    commit_url = ensure_queue(sqs, a.commit_queue)
    sqs.set_queue_attributes(
        QueueUrl=commit_url,
        Attributes={
            "VisibilityTimeout": str(a.visibility_timeout),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": queue_arn(sqs, commit_dlq_url), "maxReceiveCount": str(a.max_receive_count)}),
        },
    )

    # PutBucketNotificationConfiguration replaces the whole configuration, so re-running is idempotent.
    s3.put_bucket_notification_configuration(
        Bucket=a.raw_bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "Id": NOTIFICATION_ID,
                    "QueueArn": q_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": a.suffix}]}},
                }
            ]
        },
    )

    print(
        json.dumps(
            {
                "endpoint": a.endpoint,
                "region": a.region,
                "raw_bucket": a.raw_bucket,
                "lake_bucket": a.lake_bucket,
                "queue_url": q_url,
                "queue_arn": q_arn,
                "dlq_url": dlq_url,
                "dlq_arn": dlq_arn,
                "commit_queue_url": commit_url,
                "commit_dlq_url": commit_dlq_url,
            }
        )
    )


if __name__ == "__main__":
    main()
