"""An agent program for a pvl node: prices `translate` intents by input size and by its own
load (one unit per byte, plus 50 % per task it is already running), declines empty inputs
and intents whose budget its price is over, then answers each task with its input
upper-cased.

    python3 upper_agent.py NODE_DIR
"""

import sys
import os

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pvl_sdk import Agent, Client, Decline, Done, Offer  # noqa: E402


class Upper(Agent):
    running = 0

    def bid(self, request):
        text = request["input"] or ""
        if not text:
            return Decline(reason="nothing to translate")
        price = len(text) * (2 + self.running) // 2
        budget = request["budget"]
        if budget is not None and price > budget:
            return Decline(reason=f"my price {price} is over the budget {budget}")
        print(f"bid {price} on intent {request['intent'][:8]} (budget {budget})", flush=True)
        return Offer(cost=price, eta_ms=50 * (1 + self.running), reliability_bps=9_900)

    def run(self, task, progress):
        self.running += 1
        try:
            progress(5_000, "half way")
            print(f"task {task['task'][:8]} done", flush=True)
            return Done(output=(task["input"] or "").upper())
        finally:
            self.running -= 1


if __name__ == "__main__":
    Upper(Client.open(sys.argv[1]), "translate").serve_forever()
