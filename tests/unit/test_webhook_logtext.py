"""logtext: what a webhook sender wrote, made safe for one log line."""

from __future__ import annotations

import pytest

from release_orchestrator.webhooks.logtext import logtext


@pytest.mark.parametrize(
    "value,expected",
    [
        ("feature/login", "feature/login"),
        ("Fix the café menu", "Fix the café menu"),  # readable text stays readable
        ("main\n2026-01-01 [error] forged line", "main\\n2026-01-01 [error] forged line"),
        ("a\rb\tc\x00d\x1b[31m", "a\\rb\\tc\\x00d\\x1b[31m"),  # terminal escapes included
        ("next\x85line\u2028sep", "next\\x85line\\u2028sep"),
        ("admin\u202egnp.exe", "admin\\u202egnp.exe"),  # a right-to-left override hides what follows
        ("lone \ud800", "lone \\ud800"),
        ("back\\slash", "back\\\\slash"),  # an escape in the log is always one
        (("d-1", 2), "('d-1', 2)"),
    ],
)
def test_escapes_what_could_split_forge_or_hide_a_line(value, expected):
    assert logtext(value) == expected


def test_long_values_are_cut_saying_how_much_was_left_out():
    assert logtext("x" * 250, limit=200) == "x" * 200 + "...(+50 characters)"
    assert logtext("\n" * 3, limit=2) == "\\n\\n...(+1 characters)"
