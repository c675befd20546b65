"""Entry points that fail, one way each (tests/chat/test_plugins.py)."""

from __future__ import annotations

from chat.runtime import ToolOutcome, ToolSpec

NOT_A_FUNCTION = 42


def raising_tools():
    raise RuntimeError("the plugin's own bug")


def not_a_tool():
    return ["just a string"]


class _Tool:
    concurrency_safe = False

    def __init__(self, name: str, parameters=None) -> None:
        self.spec = ToolSpec(name, f"the {name} tool", parameters or {"type": "object"})

    async def run(self, input, ctx):
        return ToolOutcome(self.spec.name)


def bad_name_tools():
    return [_Tool("has spaces")]


def bad_schema_tools():
    return [_Tool("bad_schema", parameters={"type": "string"})]


class _SyncTool(_Tool):
    def run(self, input, ctx):  # not async
        return ToolOutcome("sync")


def sync_run_tools():
    return [_SyncTool("sync_run")]


def builtin_name_tools():
    return [_Tool("read_file")]


def twin_tools():
    return [_Tool("twin")]  # two entry points, one tool name


class _Misbehaving(_Tool):
    async def run(self, input, ctx):
        if input.get("how") == "raise":
            raise ValueError("misbehaved")
        return "a plain string, not a ToolOutcome"


def misbehaving_tools():
    return _Misbehaving("misbehave")  # one tool, not a list: accepted too


def fragile_provider(credential):
    raise RuntimeError(f"cannot reach the service for {credential.name}")
