"""Text from a request that reaches the database.

PostgreSQL cannot hold the NUL character (0x00) in text: a value carrying one failed the
statement (a 500), where SQLite took it. Such values are refused where they enter, on both.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

NUL_REFUSED = "must not contain NUL (0x00) characters"


def without_nul(value: str) -> str:
    """Return the value; raise ValueError (a validation error) when it holds a NUL."""
    if "\x00" in value:
        raise ValueError(NUL_REFUSED)
    return value


# A request's text field that is stored or searched for.
Text = Annotated[str, AfterValidator(without_nul)]
