"""A credential's sampling settings, and the bundled model's defaults.

Each provider sends the settings its API takes (chat/config.py, README): an unset value
leaves the server's own default. ``max_tokens`` is not here: it is the runtime's (it needs it
for the context budget) and travels on each request.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from chat.config import CredentialConfig


@dataclass(frozen=True)
class Sampling:
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    repeat_penalty: float | None = None

    @classmethod
    def of(cls, credential: CredentialConfig) -> Sampling:
        """The settings the credential's config gives."""
        return cls(**{key: getattr(credential, key) for key in cls.__dataclass_fields__})

    def given(self) -> dict[str, Any]:
        """The settings that are set, by name."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    def over(self, defaults: Sampling) -> Sampling:
        """These settings, and ``defaults`` where these leave one unset."""
        return replace(defaults, **self.given())


DEFAULT_SAMPLING = Sampling()  # the server's own defaults

# SmolLM2-135M-Instruct's model card samples with temperature 0.2 and top_p 0.9. It does not
# name a repetition penalty, and without one the model loops within a few hundred tokens (a
# story, an explanation and a list, 400 tokens each: 34-67 % distinct 4-grams at 1.0, 93-100 %
# at 1.1); 1.1 is llama.cpp's long-standing default. Its answers may use the whole window.
EMBEDDED_SAMPLING = Sampling(temperature=0.2, top_p=0.9, repeat_penalty=1.1)
