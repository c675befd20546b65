"""Reconcile history before it is fed to a provider (docs/protocol.md#4-the-turn). Never used on history reads."""

from __future__ import annotations

from chat.runtime.types import Message

INTERRUPTED_RESULT = "interrupted: tool execution did not complete"


def reconcile(messages: list[Message]) -> list[Message]:
    """Drop error chunks and emptied assistant messages; give unanswered tool calls a result."""
    answered = {
        chunk["toolCallId"]
        for message in messages
        for chunk in message.chunks
        if chunk["type"] == "tool-result"
    }
    out: list[Message] = []
    for message in messages:
        chunks = [c for c in message.chunks if c["type"] != "error"]
        if message.role == "assistant" and not chunks:
            continue
        out.append(Message(message.role, chunks))
        missing = [
            c for c in chunks if c["type"] == "tool-call" and c["toolCallId"] not in answered
        ]
        if missing:
            out.append(Message("tool", [_interrupted_result(c) for c in missing]))
    return _merge_adjacent_tool_messages(out)


def _interrupted_result(call: dict) -> dict:
    result = {
        "type": "tool-result",
        "toolCallId": call["toolCallId"],
        "toolName": call["toolName"],
        "content": INTERRUPTED_RESULT,
        "isError": True,
    }
    if "stepId" in call:
        result["stepId"] = call["stepId"]
    return result


def _merge_adjacent_tool_messages(messages: list[Message]) -> list[Message]:
    merged: list[Message] = []
    for message in messages:
        if merged and message.role == "tool" and merged[-1].role == "tool":
            merged[-1] = Message("tool", merged[-1].chunks + message.chunks)
        else:
            merged.append(message)
    return merged
