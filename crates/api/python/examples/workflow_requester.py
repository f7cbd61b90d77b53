"""A requester that runs a three-stage workflow (echo -> sha256 -> wordcount) and prints each
stage's provider, time and output.

    python3 workflow_requester.py NODE_DIR "some input"
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pvl_sdk import Client  # noqa: E402

WORKFLOW = """
[[stage]]
name = "fetch"
capability = "echo"

[[stage]]
name = "hash"
capability = "sha256"
inputs = ["fetch"]

[[stage]]
name = "count"
capability = "wordcount"
inputs = ["hash"]
"""

if __name__ == "__main__":
    node = Client.open(sys.argv[1])
    published = node.run_workflow(WORKFLOW, input=sys.argv[2], wait=True)
    outcome = published.outcome
    print(f"trace {published.trace_id}: {outcome.status}")
    for part in outcome.parts:
        print(f"  {part['label']:<6} {part['capability']:<10} by {(part['provider'] or '-')[:8]}"
              f" {part['duration_ms']} ms  {part['output']!r}")
    if outcome.completed:
        print(f"output {outcome.output!r}")
