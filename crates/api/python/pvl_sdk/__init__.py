"""pvl_sdk: the Python client of a pvl node's control API.

The contract is the OpenAPI 3.1 document generated from the `pvl-api` crate
(`crates/api/openapi.json`, also served at `GET /v1/openapi.json`); this module follows it
with the standard library only (urllib, json, dataclasses).

    from pvl_sdk import Client
    node = Client.open("/path/to/node-dir")
    published = node.publish(capability="sha256", input="hello", budget=10, wait=True)
    print(published.outcome.status, published.outcome.output)

Agent programs bid and work for a node whose executor has `kind = "agent"`:

    from pvl_sdk import Agent, Offer, Decline, Done
    class Upper(Agent):
        def bid(self, request):            # a dict: intent, input, budget, deadline_ms, ...
            return Offer(cost=len(request["input"] or ""), eta_ms=50, reliability_bps=9900)
        def run(self, task, progress):     # a dict: task, input, deadline_ms
            progress(5000, "half way")
            return Done(output=(task["input"] or "").upper())
    Upper(Client.open(dir), "translate").serve_forever()

A voter program decides the votes of a committee member (`[consensus] agent = true`):

    class Thrifty(Voter):
        def decide(self, proposal):
            cost = int(self.terms(proposal)["cost"])
            return Vote(approve=cost <= 10, reason=f"cost {cost}, my limit 10")
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

__all__ = [
    "ApiError",
    "Client",
    "Outcome",
    "Published",
    "WorkItem",
    "Offer",
    "Decline",
    "Done",
    "Failed",
    "Agent",
    "Voter",
    "Vote",
]

ADDR_FILE = "api.addr"
TOKEN_FILE = "api-token"


class ApiError(Exception):
    """An error answer of the node: HTTP status, machine-readable code, message."""

    def __init__(self, status: int, code: str, message: str, body: dict):
        super().__init__(f"{message} (HTTP {status}, {code})")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


@dataclass
class Outcome:
    """How a run ended (`status` is `completed` or `failed`); the other fields as the node
    sent them (`provider`, `output`, `cost`, `reason`, `detail`, `parts`, ...)."""

    status: str
    fields: dict

    def __getattr__(self, name: str) -> Any:
        try:
            return self.fields[name]
        except KeyError as e:
            raise AttributeError(name) from e

    @property
    def completed(self) -> bool:
        return self.status == "completed"


@dataclass
class Published:
    """The answer to `POST /v1/intents`."""

    trace_id: str
    published: bool
    topics: list
    waited_ms: int
    outcome: Optional[Outcome] = None
    # The providers a directed intent reached (keys, hex); empty when it was gossiped.
    sent_to: list = field(default_factory=list)


@dataclass
class WorkItem:
    """A bid request or a task for an agent program (`kind` is `bid` or `task`)."""

    id: int
    capability: str
    answer_by_ms: int
    kind: str
    work: dict


@dataclass
class Offer:
    """Bid on these terms."""

    cost: int
    eta_ms: int
    reliability_bps: int
    expires_in_ms: Optional[int] = None
    cpu_millicores: Optional[int] = None
    memory_bytes: Optional[int] = None
    disk_bytes: Optional[int] = None

    def to_json(self) -> dict:
        body = {"decision": "offer", "cost": self.cost, "eta_ms": self.eta_ms,
                "reliability_bps": self.reliability_bps}
        for name in ("expires_in_ms", "cpu_millicores", "memory_bytes", "disk_bytes"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        return body


@dataclass
class Decline:
    """Do not bid, for this reason."""

    reason: str

    def to_json(self) -> dict:
        return {"decision": "decline", "reason": self.reason}


@dataclass
class Done:
    """A task's output: text, or bytes (sent as hex)."""

    output: Optional[str] = None
    output_bytes: Optional[bytes] = None

    def to_json(self) -> dict:
        if self.output_bytes is not None:
            return {"status": "done", "output_hex": self.output_bytes.hex()}
        return {"status": "done", "output": self.output or ""}


@dataclass
class Failed:
    """A task that failed, with the reason."""

    reason: str

    def to_json(self) -> dict:
        return {"status": "failed", "reason": self.reason}


@dataclass
class Vote:
    """A voter program's decision on a proposal."""

    approve: bool
    reason: str = ""

    def to_json(self) -> dict:
        return {"approve": self.approve, "reason": self.reason}


def _outcome_of(body: dict) -> Optional[Outcome]:
    if "status" not in body:
        return None
    rest = {
        k: v
        for k, v in body.items()
        if k not in ("trace_id", "published", "topics", "sent_to", "waited_ms")
    }
    return Outcome(status=body["status"], fields=rest)


class Client:
    """A client of one node's control API (bearer token, JSON, errors as ApiError)."""

    def __init__(self, addr: str, token: str, timeout: float = 30.0):
        self.base = "http://" + addr.strip()
        self.token = token.strip()
        self.timeout = timeout

    @classmethod
    def open(cls, node_dir: str, timeout: float = 30.0) -> "Client":
        """The client of the node running in `node_dir` (its api.addr and api-token)."""
        with open(os.path.join(node_dir, ADDR_FILE)) as f:
            addr = f.read()
        with open(os.path.join(node_dir, TOKEN_FILE)) as f:
            token = f.read()
        return cls(addr, token, timeout)

    def _call(self, method: str, path: str, body: Any = None, timeout: Optional[float] = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", "Bearer " + self.token)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                raw = response.read()
                if response.status == 204 or not raw:
                    return None
                if response.headers.get_content_type() == "application/json":
                    return json.loads(raw)
                return raw
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"error": raw.decode(errors="replace"), "code": "internal"}
            raise ApiError(e.code, body.get("code", "internal"), body.get("error", ""), body) from None

    # --- the node -----------------------------------------------------------------------
    def id(self) -> dict:
        return self._call("GET", "/v1/id")

    def status(self) -> dict:
        return self._call("GET", "/v1/status")

    def peers(self) -> list:
        return self._call("GET", "/v1/peers")

    def capabilities(self) -> list:
        """The capability directory: capabilities on the network, providers cheapest first."""
        return self._call("GET", "/v1/capabilities")

    def openapi(self) -> dict:
        return self._call("GET", "/v1/openapi.json")

    def metrics(self) -> str:
        """`GET /metrics`: the node's Prometheus metrics, in the OpenMetrics text format."""
        answer = self._call("GET", "/metrics")
        return answer.decode() if isinstance(answer, bytes) else str(answer)

    def ui_login(self) -> dict:
        """`POST /v1/ui/login`: a one-time address (`url`, valid `expires_in_ms`) that signs a
        browser in to the node's read-only web view."""
        return self._call("POST", "/v1/ui/login", {})

    # --- coordination -------------------------------------------------------------------
    def publish(self, capability: str = "", wait: bool = False, **fields: Any) -> Published:
        """`POST /v1/intents` with the PublishIntent fields (input, budget, deadline_ms,
        strategy, pattern, committee, window_ms, min_offers, workflow, parallel, ...)."""
        if capability:
            fields["capability"] = capability
        return self._publish("/v1/intents", fields, wait)

    def _publish(self, path: str, fields: dict, wait: bool) -> Published:
        body = {k: v for k, v in fields.items() if v is not None}
        timeout = None
        if wait:
            body["wait"] = True
            timeout = max(self.timeout, (body.get("wait_timeout_ms") or 120_000) / 1000 + 5)
        answer = self._call("POST", path, body, timeout=timeout)
        return Published(
            trace_id=answer["trace_id"],
            published=answer["published"],
            topics=answer["topics"],
            waited_ms=answer["waited_ms"],
            outcome=_outcome_of(answer),
            sent_to=answer.get("sent_to", []),
        )

    def run_workflow(self, workflow: str, wait: bool = False, **fields: Any) -> Published:
        """`POST /v1/workflows`: a workflow file's text (TOML) and the round fields."""
        return self._publish("/v1/workflows", dict(fields, workflow=workflow), wait)

    def run_parallel(self, capability: str, shards: int, wait: bool = False, **fields: Any) -> Published:
        """`POST /v1/parallel`: the input split into at most `shards` tasks."""
        return self._publish("/v1/parallel", dict(fields, capability=capability, parallel=shards), wait)

    def run_committee(self, capability: str, committee: list, wait: bool = False, **fields: Any) -> Published:
        """`POST /v1/committees`: the award goes to `committee` (keys or peer ids) first."""
        return self._publish("/v1/committees", dict(fields, capability=capability, committee=committee), wait)

    def outcome(self, trace: str, timeout_ms: int = 120_000) -> Outcome:
        """Waits for the outcome of a run this node coordinates (`trace`: id or 8+ digits)."""
        path = f"/v1/intents/{urllib.parse.quote(trace)}/outcome?timeout_ms={timeout_ms}"
        return _outcome_of(self._call("GET", path, timeout=timeout_ms / 1000 + 5))

    def cancel(self, trace: str, reason: Optional[str] = None) -> Outcome:
        """Ends a run this node coordinates now; its trace gets a signed event saying why."""
        body = {} if reason is None else {"reason": reason}
        return _outcome_of(self._call("POST", f"/v1/intents/{urllib.parse.quote(trace)}/cancel", body))

    def traces(self, limit: int = 50) -> list:
        return self._call("GET", f"/v1/traces?limit={limit}")

    def trace(self, trace: str) -> dict:
        return self._call("GET", f"/v1/traces/{urllib.parse.quote(trace)}")

    def analysis(self, trace: str) -> dict:
        return self._call("GET", f"/v1/traces/{urllib.parse.quote(trace)}/analysis")

    def export(self, trace: str, format: str = "json") -> bytes:
        path = f"/v1/traces/{urllib.parse.quote(trace)}/export?format={format}"
        answer = self._call("GET", path)
        return answer if isinstance(answer, bytes) else json.dumps(answer).encode()

    # --- agent programs -----------------------------------------------------------------
    def next_work(self, capability: str, timeout_ms: int = 30_000) -> Optional[WorkItem]:
        """The next bid request or task for `capability` (None when nothing came)."""
        query = urllib.parse.urlencode({"capability": capability, "timeout_ms": timeout_ms})
        return self._poll(f"/v1/agents/work?{query}", timeout_ms)

    def _poll(self, path: str, timeout_ms: int) -> Optional[WorkItem]:
        item = self._call("GET", path, timeout=timeout_ms / 1000 + 10)
        if item is None:
            return None
        work = dict(item["work"])
        return WorkItem(id=item["id"], capability=item["capability"],
                        answer_by_ms=item["answer_by_ms"], kind=work.pop("kind"), work=work)

    def bid(self, item: int, answer) -> None:
        self._call("POST", f"/v1/agents/work/{item}/bid", answer.to_json())

    def progress(self, item: int, fraction_bps: Optional[int] = None, message: str = "") -> None:
        self._call("POST", f"/v1/agents/work/{item}/progress",
                   {"fraction_bps": fraction_bps, "message": message})

    def finish(self, item: int, answer) -> None:
        self._call("POST", f"/v1/agents/work/{item}/result", answer.to_json())

    def next_vote(self, timeout_ms: int = 30_000) -> Optional[WorkItem]:
        """The next proposal to vote on (the node needs `[consensus] agent = true`)."""
        return self._poll(f"/v1/agents/votes?timeout_ms={timeout_ms}", timeout_ms)

    def vote(self, item: int, decision: "Vote") -> None:
        self._call("POST", f"/v1/agents/work/{item}/vote", decision.to_json())


class _Program:
    """What agent and voter programs share: a loop over work items until stopped."""

    def __init__(self, client: Client, poll_ms: int):
        self.client = client
        self.poll_ms = poll_ms
        self._stop = threading.Event()

    def serve_once(self) -> bool:
        raise NotImplementedError

    def serve_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.serve_once()
            except ApiError as e:
                if e.code != "not_found":  # an answer that came too late is not fatal
                    raise

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()


class Agent(_Program):
    """An agent program: override `bid` (return Offer or Decline) and `run` (return Done or
    Failed; call `progress(fraction_bps, message)` as it goes), then `serve_forever()` or
    `start()` it in a thread. An exception in `bid` declines, in `run` fails the task."""

    def __init__(self, client: Client, capability: str, poll_ms: int = 1_000):
        super().__init__(client, poll_ms)
        self.capability = capability

    def bid(self, request: dict):
        raise NotImplementedError

    def run(self, task: dict, progress: Callable[[Optional[int], str], None]):
        raise NotImplementedError

    def serve_once(self) -> bool:
        """Handles at most one work item; whether there was one."""
        item = self.client.next_work(self.capability, self.poll_ms)
        if item is None:
            return False
        if item.kind == "bid":
            try:
                answer = self.bid(item.work)
            except Exception as e:  # the program's own failure: decline, saying why
                answer = Decline(reason=f"the agent failed: {e}")
            self.client.bid(item.id, answer)
        elif item.kind == "task":
            report = lambda fraction, message="": self.client.progress(item.id, fraction, message)
            try:
                answer = self.run(item.work, report)
            except Exception as e:
                answer = Failed(reason=f"the agent failed: {e}")
            self.client.finish(item.id, answer)
        return True


class Voter(_Program):
    """A voter program for a committee member (`[consensus] agent = true`): override
    `decide(proposal)` (a dict: proposal, proposer, subject, round, action, members,
    threshold, deadline_ms) to return a Vote, then `serve_forever()` or `start()`. An
    exception in `decide` rejects, saying why."""

    def __init__(self, client: Client, poll_ms: int = 1_000):
        super().__init__(client, poll_ms)

    def decide(self, proposal: dict) -> Vote:
        raise NotImplementedError

    @staticmethod
    def terms(proposal: dict) -> dict:
        """The `key=value` terms of a proposal's action line (SPEC.md §9), e.g. `cost`."""
        return dict(t.split("=", 1) for t in proposal["action"].split() if "=" in t)

    def serve_once(self) -> bool:
        item = self.client.next_vote(self.poll_ms)
        if item is None:
            return False
        try:
            decision = self.decide(item.work)
        except Exception as e:
            decision = Vote(approve=False, reason=f"the voter failed: {e}")
        self.client.vote(item.id, decision)
        return True
