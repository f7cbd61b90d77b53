"""What an agent-priced offer costs over a builtin one: intent -> offer latency (from the
signed timestamps, as the trace analysis reports them) of a builtin `echo` provider and of an
agent program serving `echo` through the SDK, over sequential rounds that wait for both.

    python3 offer_latency.py REQUESTER_DIR BUILTIN_DIR AGENT_DIR [ROUNDS]

BUILTIN_DIR's node serves `echo` with `--builtin echo:...`, AGENT_DIR's with `--agent echo`.
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pvl_sdk import Agent, Client, Done, Offer  # noqa: E402


class Flat(Agent):
    def bid(self, request):
        return Offer(cost=5, eta_ms=50, reliability_bps=9_500)

    def run(self, task, progress):
        return Done(output=task["input"] or "")


def main(requester_dir, builtin_dir, agent_dir, rounds=40):
    agent = Flat(Client.open(agent_dir), "echo", poll_ms=1_000)
    agent.start()
    requester = Client.open(requester_dir)
    keys = {"builtin": Client.open(builtin_dir).id()["public_key"],
            "agent (Python SDK)": Client.open(agent_dir).id()["public_key"]}
    time.sleep(1)
    latencies = {key: [] for key in keys.values()}
    for i in range(rounds):
        published = requester.publish(capability="echo", input=f"round {i}", budget=100,
                                      window_ms=3_000, min_offers=2, wait=True)
        for offer in requester.analysis(published.trace_id)["offer_latencies"]:
            latencies.setdefault(offer["provider"], []).append(offer["latency_ms"])
    agent.stop()
    for name, key in keys.items():
        v = sorted(latencies[key])
        print(f"{name:20s} n={len(v)} p50={statistics.median(v)} ms "
              f"p90={v[max(0, int(len(v) * 0.9) - 1)]} ms max={v[-1]} ms")


if __name__ == "__main__":
    main(*sys.argv[1:4], *(int(a) for a in sys.argv[4:5]))
