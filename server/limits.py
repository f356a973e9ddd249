"""Static limits of every request, with no heavy imports: the protocol models, the settings and the CLI read them."""

from __future__ import annotations

MAX_IMAGES = 8  # images per request
MAX_PROMPT_CHARS = 2000  # far past the 77-token window; longer prompts are truncated, not rejected
MAX_SEED = 2**32 - 1
MAX_GUIDANCE = 20.0
MAX_SIDE = 4096  # a static bound; the model's own limits (ModelInfo.check_size) apply after it
MAX_TIMEOUT_MS = 600_000
# Of a body with unknown fields where the model forbids them: up to this many are each refused by name; past it the
# body is one 422 counting them, refused before pydantic makes (and FastAPI copies) an error per key.
MAX_UNKNOWN_FIELDS = 32
SHOWN_CHARS = 100  # of a name the client chose (a field, a path), in a message
# A prompt must have a character outside this set: JSON Schema's (ECMA-262's) whitespace, spelled out so the spec's
# pattern and the server's check agree (Python's own \s and str.strip() also count \x1c-\x1f as blank).
WHITESPACE = "\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
NOT_BLANK = f"[^{WHITESPACE}]"


def clip(text: str) -> str:
    """A name the client chose, cut to SHOWN_CHARS for a message."""
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."
