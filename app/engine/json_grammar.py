"""GBNF for replies valid against a JSON Schema, for the llama.cpp worker's sampler.

llama.cpp's own converter writes the rules; its string rule (`[^"\\\\]`) lets a raw newline or
other control character into a string, which no JSON parser accepts, so it is closed to them
as llama.cpp's server closes it.
"""

from __future__ import annotations

OPEN_CHAR = 'char ::= [^"\\\\]'
CLOSED_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F]'


def gbnf(schema_text: str) -> str:
    """The grammar for JSON matching the schema (`schema_text`, JSON text)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    rules: str = json_schema_to_gbnf(schema_text)
    return rules.replace(OPEN_CHAR, CLOSED_CHAR)
