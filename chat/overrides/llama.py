"""Hooks between the tokens llama-cpp-python evaluates and samples: Llama.generate and
Llama.eval, wrapped.

Replaces nothing of ``llama_cpp.Llama.generate`` (0.3, pinned by tests/test_overrides.py) but
wraps it: ``create_chat_completion`` takes no stopping criteria, and logits processors run
inside a C callback that swallows exceptions, so the token loop itself is the only place to
count prompt and completion tokens and to stop a generation between two tokens.

``Llama.eval`` decodes a prompt in batches of ``n_batch`` tokens, in one call; the wrapper
calls it once per batch instead (the same decodes, in the same order: each call continues at
``n_tokens``), so the watch hears how far the prompt is read, and may stop it, between batches.
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

    def on_prompt(self, done: int, total: int) -> None:
        """``done`` of the ``total`` tokens to evaluate are read; it may raise to stop."""
        ...


class WatchedLlama(llama_cpp.Llama):
    """A Llama whose token loop reports to ``watch`` (set per generation)."""

    watch: TokenWatch | None = None

    def eval(self, tokens: Sequence[int]) -> None:
        watch = self.watch
        if watch is None or len(tokens) <= self.n_batch:
            super().eval(tokens)
            return
        total = len(tokens)
        watch.on_prompt(0, total)
        for start in range(0, total, self.n_batch):
            batch = tokens[start : start + self.n_batch]
            super().eval(batch)
            watch.on_prompt(start + len(batch), total)

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
