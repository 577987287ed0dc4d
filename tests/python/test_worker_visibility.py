"""`dials worker` keeps a running batch's messages invisible: a batch that outlives the queue's
visibility timeout is not delivered a second time to another worker (it would be ingested twice and
count towards the dead-letter queue's maxReceiveCount).

Two workers on one queue (moto, started here) with a 2 s visibility timeout; the "function" behind
`--invoke-url` is a stub in this test that takes 5 s per batch and records every message it gets.
Without the heartbeat the second worker receives the first worker's messages after 2 s."""

import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

from conftest import REPO, dials_bin, free_port


def test_a_batch_longer_than_the_visibility_timeout_is_delivered_once(tmp_path):
    port = free_port()
    env = dict(os.environ, MOTO_PORT=str(port))
    subprocess.run(["bash", str(REPO / "localstack/start-moto.sh")], check=True, env=env, capture_output=True)
    endpoint = f"http://127.0.0.1:{port}"
    aws = {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_ALLOW_HTTP": "true"}
    seen = []
    lock = threading.Lock()

    class Stub(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                seen.extend(r["messageId"] for r in event["Records"])
            time.sleep(5)
            body = json.dumps({"batchItemFailures": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    stub_port = free_port()
    stub = ThreadingHTTPServer(("127.0.0.1", stub_port), Stub)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    try:
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="test", aws_secret_access_key="test")
        queue = sqs.create_queue(QueueName="slow-batches", Attributes={"VisibilityTimeout": "2"})["QueueUrl"]
        sent = sqs.send_message_batch(QueueUrl=queue, Entries=[
            {"Id": str(i), "MessageBody": json.dumps({"Records": []})} for i in range(3)])
        ids = sorted(m["MessageId"] for m in sent["Successful"])
        assert len(ids) == 3
        worker = [dials_bin(), "worker", "--queue-url", queue, "--lake", str(tmp_path / "lake"),
                  "--invoke-url", f"http://127.0.0.1:{stub_port}/invoke", "--max-receives", "3", "--idle-exit", "8"]
        procs = [subprocess.Popen(worker, env=dict(os.environ, **aws), stdout=subprocess.DEVNULL,
                                  stderr=open(tmp_path / f"worker{i}.log", "w")) for i in range(2)]
        for p in procs:
            assert p.wait(timeout=120) == 0, (tmp_path / "worker0.log").read_text()[-2000:]
        with lock:
            assert sorted(seen) == ids, f"each message delivered once, got {seen}"
        attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        assert attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0", attrs
    finally:
        stub.shutdown()
        subprocess.run(["bash", str(REPO / "localstack/stop.sh"), "moto"], env=env, capture_output=True)
