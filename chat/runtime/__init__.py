"""The agent runtime kernel: pure asyncio, no Django (ARCHITECTURE.md)."""

from chat.runtime.context import Budget, effective, is_compaction, request_messages
from chat.runtime.ids import new_turn_id, step_id
from chat.runtime.observer import NO_OBSERVER, TurnObserver
from chat.runtime.reconcile import INTERRUPTED_RESULT, reconcile
from chat.runtime.turn import TurnConfig, TurnPorts, TurnRunner, run_turn
from chat.runtime.types import (
    Finish,
    Message,
    PromptProgress,
    Provider,
    ProviderError,
    ProviderEvent,
    ProviderRequest,
    ReasoningDelta,
    StatusChange,
    StepMetrics,
    TextDelta,
    Tool,
    ToolCallReady,
    ToolContext,
    ToolOutcome,
    ToolSpec,
    TurnMetrics,
    Usage,
    UsageReport,
)

__all__ = [
    "INTERRUPTED_RESULT",
    "Budget",
    "NO_OBSERVER",
    "Finish",
    "Message",
    "Provider",
    "ProviderError",
    "ProviderEvent",
    "PromptProgress",
    "ProviderRequest",
    "ReasoningDelta",
    "StatusChange",
    "StepMetrics",
    "TextDelta",
    "Tool",
    "ToolCallReady",
    "ToolContext",
    "ToolOutcome",
    "ToolSpec",
    "TurnConfig",
    "TurnMetrics",
    "TurnObserver",
    "TurnPorts",
    "TurnRunner",
    "Usage",
    "UsageReport",
    "effective",
    "is_compaction",
    "new_turn_id",
    "reconcile",
    "request_messages",
    "run_turn",
    "step_id",
]
