"""An agent program for a pvl node: bids one unit per input byte on `translate` intents
(declining empty inputs), then answers each task with its input upper-cased.

    python3 upper_agent.py NODE_DIR
"""

import sys
import os

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pvl_sdk import Agent, Client, Decline, Done, Offer  # noqa: E402


class Upper(Agent):
    def bid(self, request):
        text = request["input"] or ""
        if not text:
            return Decline(reason="nothing to translate")
        print(f"bid {len(text)} on intent {request['intent'][:8]} (budget {request['budget']})", flush=True)
        return Offer(cost=len(text), eta_ms=50, reliability_bps=9_900)

    def run(self, task, progress):
        progress(5_000, "half way")
        print(f"task {task['task'][:8]} done", flush=True)
        return Done(output=(task["input"] or "").upper())


if __name__ == "__main__":
    Upper(Client.open(sys.argv[1]), "translate").serve_forever()
