"""A Dispatch plugin: an ``echo`` tool, and an ``echo`` provider kind whose model repeats the
user's last message (docs/plugins.md)."""

from __future__ import annotations

import os

from chat.runtime import Finish, TextDelta, ToolOutcome, ToolSpec, Usage, UsageReport


class Echo:
    spec = ToolSpec(
        name="echo",
        description="Repeat a text back.",
        parameters={
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
    )
    concurrency_safe = True

    async def run(self, input, ctx):
        if not isinstance(input.get("text"), str):
            return ToolOutcome("echo: 'text' must be a string", is_error=True)
        return ToolOutcome(f"echo: {input['text']} (in {os.path.basename(ctx.cwd)})")


def tools():
    return [Echo()]


class EchoProvider:
    def __init__(self, greeting: str) -> None:
        self.greeting = greeting

    async def stream(self, request):
        last = request.messages[-1]
        text = " ".join(c["text"] for c in last.chunks if c["type"] == "text")
        yield TextDelta(f"{self.greeting}: ")
        yield TextDelta(text)
        yield UsageReport(Usage(input_tokens=len(text.split()), output_tokens=3))
        yield Finish("stop")


def provider(credential):
    return EchoProvider(credential.options.get("greeting", "you said"))
