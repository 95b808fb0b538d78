"""Contributed text made safe for where it is shown: a terminal, or Markdown that the Hub renders as HTML.

A contributor's name or note travels into the dataset card, the explorer page and our own terminals; there it
must stay text. Terminal output gets control, zero-width and bidi characters shown as escapes (an ANSI escape
or a right-to-left override cannot repaint or reorder a line). Markdown gets them removed, and `<`, `>`, `&`,
link brackets, backticks and pipes escaped, and `javascript:` schemes broken, so no tag, link or script survives
rendering. Text holding none of these is returned as it was, so the card of existing data does not change.
"""

from __future__ import annotations

import re

UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
MARKDOWN_SPECIAL = re.compile(r"([\\`\[\]|])")  # code spans, links and table cells; emphasis is harmless
SCRIPT_SCHEME = re.compile(r"(?i)\b(javascript|vbscript|data)\s*:")
MAX_TERMINAL_CHARS = 2000
MAX_MARKDOWN_CHARS = 300


def _cut(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def terminal_safe(text: object, max_chars: int = MAX_TERMINAL_CHARS) -> str:
    """`text` with every control, zero-width and bidi character shown as \\uXXXX, cut to `max_chars`."""
    shown = UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", str(text))
    return _cut(shown, max_chars)


def markdown_safe(text: object, max_chars: int = MAX_MARKDOWN_CHARS) -> str:
    """`text` as inert Markdown on one line: unsafe characters dropped, HTML and link syntax escaped."""
    plain = _cut(UNSAFE.sub(" ", str(text)), max_chars)
    escaped = plain.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = MARKDOWN_SPECIAL.sub(r"\\\1", escaped)
    return SCRIPT_SCHEME.sub(lambda m: f"{m.group(1)}&#58;", escaped)
