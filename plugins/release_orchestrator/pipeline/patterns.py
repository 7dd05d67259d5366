"""Include/exclude glob patterns, as the branch, tag and file path filters of every kind of trigger use them.

Excludes win over includes; an empty `includes` lets everything through that is not excluded. Imports nothing
of ours, so the git trigger filters (webhooks/filters.py) and the event-driven triggers (events/) both use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache


@lru_cache(maxsize=1024)
def _glob_regex(pattern: str) -> re.Pattern:
    """`*` and `?` stay within one path segment, `**` crosses them, `[abc]`/`[!abc]` are character classes."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")  # zero or more directories: "**/x.py" matches "x.py" too
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def glob_match(pattern: str, value: str) -> bool:
    return _glob_regex(pattern).match(value) is not None


@dataclass(frozen=True)
class Patterns:
    includes: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()

    def rejects(self, value: str) -> str | None:
        """Why `value` does not pass (excludes first), or None when it passes."""
        for pattern in self.excludes:
            if glob_match(pattern, value):
                return f"{value!r} is excluded by {pattern!r}"
        if self.includes and not any(glob_match(p, value) for p in self.includes):
            return f"{value!r} matches none of the includes ({', '.join(self.includes)})"
        return None
