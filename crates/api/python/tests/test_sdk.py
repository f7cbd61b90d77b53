"""pvl_sdk against real nodes: run by `node/tests/python_sdk.rs`, which starts a requester, a
provider serving `echo` with the builtin executor at price 5, a provider whose `echo` is served
by agent programs, and a committee member whose votes a voter program decides; it passes their
directories and keys in PVL_* variables."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pvl_sdk import Agent, ApiError, Client, Decline, Done, Offer, Vote, Voter  # noqa: E402


class Upper(Agent):
    """Bids 1 (5 for inputs starting with "pricey"), declines inputs starting with "decline",
    answers the input upper-cased after reporting half-way progress; while `stall` is set it
    takes tasks and never answers them."""

    stall = False

    def bid(self, request):
        text = request["input"] or ""
        if text.startswith("decline"):
            return Decline(reason="not my kind of input")
        return Offer(cost=5 if text.startswith("pricey") else 1, eta_ms=50, reliability_bps=9_900)

    def run(self, task, progress):
        if self.stall:
            time.sleep(3)
            return Done(output="too late")
        progress(5_000, "half way")
        return Done(output=(task["input"] or "").upper())


class AtMostThree(Voter):
    """Approves awards costing at most 3."""

    def decide(self, proposal):
        cost = int(self.terms(proposal)["cost"])
        return Vote(approve=cost <= 3, reason=f"cost {cost}, my limit 3")


@unittest.skipUnless(os.environ.get("PVL_REQUESTER_DIR"), "needs running nodes")
class SdkAgainstNodes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.requester = Client.open(os.environ["PVL_REQUESTER_DIR"])
        cls.agent = Upper(Client.open(os.environ["PVL_AGENT_DIR"]), "echo", poll_ms=300)
        cls.agent.start()
        cls.voter = AtMostThree(Client.open(os.environ["PVL_MEMBER_DIR"]), poll_ms=300)
        cls.voter.start()
        cls.member = os.environ["PVL_MEMBER_KEY"]
        cls.agent_key = os.environ["PVL_AGENT_KEY"]
        cls.builtin_key = os.environ["PVL_BUILTIN_KEY"]

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()
        cls.voter.stop()

    def round(self, text, **fields):
        """An echo round that waits for both offers (1.5 s at most)."""
        return self.requester.publish(
            capability="echo", input=text, budget=100, window_ms=1_500, min_offers=2,
            wait=True, **fields)

    def test_a_python_agent_underbids_the_builtin_and_does_the_work(self):
        published = self.round("hello")
        self.assertTrue(published.published)
        outcome = published.outcome
        self.assertTrue(outcome.completed, outcome)
        self.assertEqual(outcome.provider, self.agent_key)
        self.assertEqual(outcome.output, "HELLO")
        self.assertEqual(outcome.cost, 1)
        self.assertTrue(outcome.receipt_countersigned)
        # The trace by an 8-digit prefix: both offers and the agent's progress are in it.
        trace = self.requester.trace(published.trace_id[:8])
        kinds = [o["kind"] for o in trace["objects"]]
        self.assertEqual(kinds.count("offer"), 2, kinds)
        self.assertIn("task_progress", kinds)
        self.assertEqual(self.requester.analysis(published.trace_id)["trace"], published.trace_id)
        again = self.requester.outcome(published.trace_id[:8])
        self.assertEqual(again.output, "HELLO")

    def test_an_agent_that_declines_is_not_awarded(self):
        outcome = self.round("decline this").outcome
        self.assertTrue(outcome.completed, outcome)
        self.assertEqual(outcome.provider, self.builtin_key)
        self.assertEqual(outcome.output, "decline this")

    def test_an_agent_that_stops_mid_task_is_replaced(self):
        self.agent.stall = True
        try:
            outcome = self.round("stall").outcome
        finally:
            self.agent.stall = False
        self.assertTrue(outcome.completed, outcome)
        self.assertEqual(outcome.provider, self.builtin_key)
        self.assertEqual(outcome.output, "stall")
        self.assertEqual(outcome.awards, 2)

    def test_a_python_voter_approves_or_rejects_with_its_reason(self):
        approved = self.requester.run_committee(
            "echo", [self.member], input="hi", threshold=1, window_ms=1_500, min_offers=2,
            wait=True)
        self.assertTrue(approved.outcome.completed, approved.outcome)
        self.assertEqual(approved.outcome.output, "HI")
        rejected = self.requester.run_committee(
            "echo", [self.member], input="pricey", threshold=1, window_ms=1_500,
            min_offers=2, wait=True)
        self.assertEqual(rejected.outcome.status, "failed")
        self.assertEqual(rejected.outcome.reason, "rejected-by-committee")
        votes = [o for o in self.requester.trace(rejected.trace_id)["objects"] if o["kind"] == "vote"]
        self.assertEqual(votes[0]["body"]["reason"], "cost 5, my limit 3")

    def test_errors_carry_their_code(self):
        with self.assertRaises(ApiError) as refused:
            self.requester.publish(capability="echo", colour="blue")
        self.assertEqual(refused.exception.status, 422)
        self.assertEqual(refused.exception.code, "invalid_request")
        with self.assertRaises(ApiError) as short:
            self.requester.trace("0000000")
        self.assertEqual(short.exception.code, "bad_request")
        self.assertEqual(self.requester.openapi()["openapi"], "3.1.0")

    def test_metrics_and_the_web_view_sign_in(self):
        self.round("counted")
        text = self.requester.metrics()
        self.assertTrue(text.endswith("# EOF\n"), text[-200:])
        started = [line for line in text.splitlines()
                   if line.startswith('pvl_rounds_started_total{pattern="contract-net"} ')]
        self.assertEqual(len(started), 1, text)
        self.assertGreaterEqual(float(started[0].split()[-1]), 1)
        login = self.requester.ui_login()
        self.assertIn("/ui/login?code=", login["url"])
        self.assertGreater(login["expires_in_ms"], 0)

    def test_the_directory_lists_the_builtin_and_the_agent(self):
        deadline = time.monotonic() + 30
        while True:
            listed = {c["capability"]: c["providers"] for c in self.requester.capabilities()}
            providers = {p["provider"]: p for p in listed.get("echo", [])}
            if len(providers) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(providers[self.builtin_key]["price_base"], 5)
        self.assertEqual(providers[self.agent_key]["input_desc"], "decided by an agent program")


if __name__ == "__main__":
    unittest.main()
