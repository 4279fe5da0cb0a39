"""`warren batch` against a real stack (labels e2e, pipeline): creates
through the API with 429s retried after Retry-After, failures grouped by
reason and a non-zero exit, creates produced straight to Kafka
(--via-kafka, results read back from the events topic), and
`batch kill --metadata` ending exactly the matching sandboxes."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faults  # noqa: E402
from faults import BIN, Stack, check  # noqa: E402


def main():
    faults.require_root()
    with Stack("batch") as stack:
        stack.start()
        # 2 creates/s: a batch of 8 at concurrency 8 must meet 429s
        stack.warren("admin", "team", "set-limit", stack.tag, "creation_rate_per_s", "2")
        process = faults.start_batch(stack, "create", "--count", "8", "--template", "minimal",
                                     "--concurrency", "8", "--timeout", "120", "--metadata", "job=api")
        result = faults.batch_result(process, 120)
        check(process.returncode == 0, f"exit {process.returncode}")
        check(result["created"] == 8 and result["failed"] == 0, f"API batch: {result['failures']}")
        check(result["rate_limited"] > 0, "429s were met and retried")
        check(all(r["attempts"] >= 1 for r in result["results"]), "attempts counted")
        check(sum(r["attempts"] - 1 for r in result["results"]) == result["rate_limited"],
              "every 429 was one more attempt")
        check(0 < result["p50_ms"] <= result["p99_ms"], f"p50 {result['p50_ms']} p99 {result['p99_ms']}")
        print(f"API batch: 8 created, {result['rate_limited']} rate-limited, p50 {result['p50_ms']} ms")

        stack.warren("admin", "team", "set-limit", stack.tag, "creation_rate_per_s", "1000")
        process = faults.start_batch(stack, "create", "--count", "3", "--template", "no-such-template")
        result = faults.batch_result(process, 60)
        check(process.returncode == 1, f"failures exit 1, not {process.returncode}")
        check(result["failures"] == {"HTTP 404: template 'no-such-template' not found": 3},
              f"failures by reason: {result['failures']}")

        process = faults.start_batch(stack, "create", "--count", "4", "--template", "minimal", "--concurrency", "2",
                                     "--timeout", "120", "--metadata", "job=kafka", "--via-kafka", "--team", stack.tag)
        result = faults.batch_result(process, 120)
        check(result["created"] == 4 and result["via"] == "kafka", f"Kafka batch: {result}")
        table = faults.rows(stack)
        for r in result["results"]:
            check(table.get(r["sandbox_id"], ("",))[0] == "running", f"{r['sandbox_id']} running")
            check(table[r["sandbox_id"]][2] == r["request_id"], "the row carries the command's request id")
        print(f"Kafka batch: 4 created, p50 {result['p50_ms']} ms")

        process = faults.start_batch(stack, "kill", "--metadata", "job=api")
        result = faults.batch_result(process, 60)
        check(result["killed"] == 8 and result["failed"] == 0, f"kill: {result}")
        states = stack.psql("SELECT metadata->>'job', state, count(*) FROM sandboxes "
                            "GROUP BY 1, 2 ORDER BY 1, 2").splitlines()
        check(states == ["api|killed|8", "kafka|running|4"], f"rows after the kill: {states}")
        out = subprocess.run([os.path.join(BIN, "warren"), "batch", "create", "--count", "0",
                              "--template", "minimal"], env=faults.batch_env(stack), capture_output=True, text=True)
        check(out.returncode == 2 and "bad value for --count" in out.stderr, f"--count 0: {out.returncode} {out.stderr}")
        stack.kill("worker")
        faults.check_nothing_left(stack)
        print(f"batch: {faults.check_count()} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
