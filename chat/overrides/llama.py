"""A hook between the tokens llama-cpp-python samples: Llama.generate, wrapped.

Replaces nothing of ``llama_cpp.Llama.generate`` (0.3, pinned by tests/test_overrides.py) but
wraps it: ``create_chat_completion`` takes no stopping criteria, and logits processors run
inside a C callback that swallows exceptions, so the token loop itself is the only place to
count prompt and completion tokens and to stop a generation between two tokens.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, Protocol

import llama_cpp


class TokenWatch(Protocol):
    prompt_tokens: int

    def on_token(self, token: int) -> bool:
        """A token was sampled; False stops the generation before it is used."""
        ...


class WatchedLlama(llama_cpp.Llama):
    """A Llama whose token loop reports to ``watch`` (set per generation)."""

    watch: TokenWatch | None = None

    def generate(  # type: ignore[override]
        self, tokens: Sequence[int], **kwargs: Any
    ) -> Generator[int, Sequence[int] | None, None]:
        watch = self.watch
        tokens = list(tokens)
        if watch is not None:
            watch.prompt_tokens = len(tokens)
        inner = super().generate(tokens, **kwargs)
        try:
            for token in inner:
                if watch is not None and not watch.on_token(token):
                    return
                yield token
        finally:
            inner.close()
