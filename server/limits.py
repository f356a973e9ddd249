"""Static limits of every request, with no heavy imports: the protocol models, the settings and the CLI read them."""

from __future__ import annotations

MAX_IMAGES = 8  # images per request
MAX_PROMPT_CHARS = 2000  # far past the 77-token window; longer prompts are truncated, not rejected
MAX_SEED = 2**32 - 1
MAX_GUIDANCE = 20.0
MAX_SIDE = 4096  # a static bound; the model's own limits (ModelInfo.check_size) apply after it
MAX_TIMEOUT_MS = 600_000
