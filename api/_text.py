"""Text fields of request bodies: no control characters (NUL, escape, ...) and no lone surrogates.

`Text` is a str that refuses C0 and C1 control characters other than tab, line feed and carriage
return (pydantic itself refuses lone surrogates). They cannot be stored (PostgreSQL text refuses NUL)
nor shown safely. The rule is in the OpenAPI schema as a pattern; api/_errors.py words its 422.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
TEXT_RULE = "must not contain control characters (tab and line breaks are allowed)"

Text = Annotated[str, StringConstraints(pattern=TEXT_PATTERN)]
