"""pvl_sdk against real nodes: run by `node/tests/python_sdk.rs`, which starts a requester and
a provider whose `translate` capability is served by agent programs, and passes their
directories in PVL_REQUESTER_DIR and PVL_PROVIDER_DIR."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pvl_sdk import Agent, ApiError, Client, Decline, Done, Offer, Vote, Voter  # noqa: E402


class Upper(Agent):
    """Bids one unit per input byte, declines inputs starting with "decline", answers the
    input upper-cased after reporting half-way progress."""

    def bid(self, request):
        text = request["input"] or ""
        if text.startswith("decline"):
            return Decline(reason="not my language")
        return Offer(cost=len(text), eta_ms=50, reliability_bps=9_900)

    def run(self, task, progress):
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
        cls.agent = Upper(Client.open(os.environ["PVL_PROVIDER_DIR"]), "translate", poll_ms=300)
        cls.agent.start()
        cls.voter = AtMostThree(Client.open(os.environ["PVL_MEMBER_DIR"]), poll_ms=300)
        cls.voter.start()
        cls.member = os.environ["PVL_MEMBER_KEY"]

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()
        cls.voter.stop()

    def test_a_python_agent_bids_and_works_for_a_python_requester(self):
        published = self.requester.publish(
            capability="translate", input="hello", budget=100, window_ms=1_500,
            min_offers=1, wait=True)
        self.assertTrue(published.published)
        outcome = published.outcome
        self.assertTrue(outcome.completed, outcome)
        self.assertEqual(outcome.output, "HELLO")
        self.assertEqual(outcome.cost, 5)
        self.assertTrue(outcome.receipt_countersigned)
        # The trace by an 8-digit prefix: the agent's progress is in it.
        trace = self.requester.trace(published.trace_id[:8])
        kinds = [o["kind"] for o in trace["objects"]]
        self.assertIn("task_progress", kinds)
        self.assertEqual(self.requester.analysis(published.trace_id)["trace"], published.trace_id)
        again = self.requester.outcome(published.trace_id[:8])
        self.assertEqual(again.output, "HELLO")

    def test_a_decline_leaves_the_round_without_offers(self):
        published = self.requester.publish(
            capability="translate", input="decline this", window_ms=1_000, wait=True)
        self.assertEqual(published.outcome.status, "failed")
        self.assertEqual(published.outcome.reason, "no-offers")

    def test_a_python_voter_approves_or_rejects_with_its_reason(self):
        approved = self.requester.run_committee(
            "translate", [self.member], input="hi", threshold=1,
            window_ms=1_000, min_offers=1, wait=True)
        self.assertTrue(approved.outcome.completed, approved.outcome)
        self.assertEqual(approved.outcome.output, "HI")
        rejected = self.requester.publish(
            capability="translate", input="hello", committee=[self.member], threshold=1,
            window_ms=1_000, min_offers=1, wait=True)
        self.assertEqual(rejected.outcome.status, "failed")
        self.assertEqual(rejected.outcome.reason, "rejected-by-committee")
        votes = [o for o in self.requester.trace(rejected.trace_id)["objects"] if o["kind"] == "vote"]
        self.assertEqual(votes[0]["body"]["reason"], "cost 5, my limit 3")

    def test_errors_carry_their_code(self):
        with self.assertRaises(ApiError) as refused:
            self.requester.publish(capability="translate", colour="blue")
        self.assertEqual(refused.exception.status, 422)
        self.assertEqual(refused.exception.code, "invalid_request")
        with self.assertRaises(ApiError) as short:
            self.requester.trace("0000000")
        self.assertEqual(short.exception.code, "bad_request")
        self.assertEqual(self.requester.openapi()["openapi"], "3.1.0")

    def test_the_directory_lists_the_agent_capability(self):
        deadline = time.monotonic() + 30
        while True:
            listed = {c["capability"]: c["providers"] for c in self.requester.capabilities()}
            if "translate" in listed or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertIn("translate", listed)
        self.assertEqual(listed["translate"][0]["input_desc"], "decided by an agent program")


if __name__ == "__main__":
    unittest.main()
