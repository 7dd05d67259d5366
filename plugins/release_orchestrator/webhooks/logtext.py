"""Request data in log lines: a branch name, commit message, delivery id or repository cannot split a log line,
forge another one, or hide text from the reader.

Every webhook log line that carries what a sender wrote passes it through `logtext`.
"""

from __future__ import annotations

import re

# Line breaks and other control characters (C0, DEL, C1), Unicode line/paragraph separators, bidirectional
# overrides and isolates (text that reads differently than it is), lone surrogates (not encodable), and the
# backslash itself, so an escape in the log always means an escape.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff\\]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escape(match: re.Match) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def logtext(value: object, limit: int = 200) -> str:
    """`value` as one line of printable text, at most `limit` characters of it (then how many more there were)."""
    text = value if isinstance(value, str) else str(value)
    more = len(text) - limit
    if more > 0:
        text = text[:limit]
    text = _UNSAFE.sub(_escape, text)
    return f"{text}...(+{more} characters)" if more > 0 else text
