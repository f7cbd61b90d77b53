"""The official MCP Python client (`mcp` on PyPI) against `pvl mcp`.

Started by node/tests/mcp.rs with a real testnet running: PVL_BIN is the pvl binary,
PVL_REQUESTER_DIR the directory of the node the MCP server talks to, PVL_WORKFLOW a workflow
file. Lists the tools, waits for `echo` in the capability directory, publishes an intent
through the tools and checks its outcome, then runs the workflow and reads the trace back.
Prints 'N passed, N failed'.
"""

import asyncio
import json
import os
import sys
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

EXPECTED_TOOLS = {
    "list_capabilities",
    "publish_intent",
    "run_workflow",
    "show_trace",
    "analyze_trace",
}

passed = 0
failed = 0


def check(what, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print(f"ok   {what}")
    else:
        failed += 1
        print(f"FAIL {what}: {detail}")


def field(obj, snake, camel):
    """A field of an MCP type: snake_case in mcp 2, camelCase in mcp 1."""
    return getattr(obj, snake) if hasattr(obj, snake) else getattr(obj, camel)


def answer(result):
    """The JSON text answer of a tool call (a tool error is shown in full)."""
    text = "".join(c.text for c in result.content if getattr(c, "type", "") == "text")
    if field(result, "is_error", "isError"):
        raise AssertionError(f"tool error: {text}")
    data = json.loads(text)
    structured = field(result, "structured_content", "structuredContent")
    # An object answer also comes as structured content, the same as the text.
    if isinstance(data, dict) and structured != data:
        raise AssertionError(f"structured content {structured} differs from the text {data}")
    return data


async def main():
    server = StdioServerParameters(
        command=os.environ["PVL_BIN"],
        args=["mcp", "--dir", os.environ["PVL_REQUESTER_DIR"]],
    )
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            info = field(init, "server_info", "serverInfo")
            check("server says who it is", info.name == "pvl", info)

            tools = {t.name: t for t in (await session.list_tools()).tools}
            check("every tool is listed", EXPECTED_TOOLS <= set(tools), sorted(tools))
            output = field(tools["publish_intent"], "output_schema", "outputSchema") or {}
            check(
                "publish_intent answers the API's Published (its output schema)",
                "trace_id" in output.get("properties", {}),
                output,
            )
            schema = field(tools["publish_intent"], "input_schema", "inputSchema")
            check(
                "publish_intent takes the API's PublishIntent",
                "capability" in schema.get("properties", {})
                and "input" in schema["properties"],
                schema,
            )

            deadline = time.time() + 30
            providers = []
            while time.time() < deadline:
                listed = answer(await session.call_tool("list_capabilities", {}))
                providers = [
                    p for c in listed if c["capability"] == "echo" for p in c["providers"]
                ]
                if providers:
                    break
                await asyncio.sleep(0.5)
            check("list_capabilities shows the echo provider", len(providers) >= 1, listed)

            published = answer(
                await session.call_tool(
                    "publish_intent",
                    {"capability": "echo", "input": "hello from mcp", "window_ms": 1000},
                )
            )
            check(
                "publish_intent waits for a completed outcome",
                published.get("status") == "completed"
                and published.get("output") == "hello from mcp",
                published,
            )
            trace = published["trace_id"]

            shown = answer(await session.call_tool("show_trace", {"id": trace}))
            kinds = {o["kind"] for o in shown["objects"]}
            check(
                "show_trace has the intent, offer, award and receipt",
                {"intent", "offer", "task_start", "receipt"} <= kinds,
                kinds,
            )
            analysis = answer(await session.call_tool("analyze_trace", {"id": trace[:12]}))
            check(
                "analyze_trace names the pattern and the provider's task",
                analysis.get("trace") == trace and len(analysis["tasks_per_agent"]) == 1,
                analysis,
            )

            ran = answer(
                await session.call_tool(
                    "run_workflow",
                    {"file": os.environ["PVL_WORKFLOW"], "input": "one two three"},
                )
            )
            check(
                "run_workflow runs every stage",
                ran.get("status") == "completed" and len(ran.get("parts", [])) == 2,
                ran,
            )

            bad = await session.call_tool("show_trace", {"id": "00000000"})
            check(
                "a failing call is a tool error with the node's reason",
                field(bad, "is_error", "isError"),
                bad,
            )


asyncio.run(main())
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
