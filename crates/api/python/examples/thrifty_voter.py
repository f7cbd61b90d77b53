"""A voter program for a committee member (`[consensus] agent = true` in its config.toml):
approves an award when it costs at most LIMIT and its estimated time is under a minute.

    python3 thrifty_voter.py NODE_DIR [LIMIT]
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pvl_sdk import Client, Vote, Voter  # noqa: E402


class Thrifty(Voter):
    def __init__(self, client, limit):
        super().__init__(client)
        self.limit = limit

    def decide(self, proposal):
        terms = self.terms(proposal)
        cost, eta = int(terms.get("cost", "0")), int(terms.get("eta_ms", "0"))
        if cost > self.limit:
            return Vote(approve=False, reason=f"cost {cost} is over my limit {self.limit}")
        if eta > 60_000:
            return Vote(approve=False, reason=f"eta {eta} ms is over a minute")
        return Vote(approve=True, reason=f"cost {cost} within {self.limit}")


if __name__ == "__main__":
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    Thrifty(Client.open(sys.argv[1]), limit).serve_forever()
