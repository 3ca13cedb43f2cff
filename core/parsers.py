"""Brook's JSON request parser: DRF's, with a clear 400 for JSON nested too deeply to parse (docs/security.md)."""

from __future__ import annotations

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """Bodies are limited by ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (413 ``PAYLOAD_TOO_LARGE``, see ``core.errors``);
    within that, ``[[[[…]]]]`` would exhaust the decoder's recursion and must be a 400, not a 500."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("The JSON is nested too deeply.") from None
