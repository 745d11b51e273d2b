"""Parsers for the code a user edits: tree-sitter's grammars, the ones Textual's syntax extra
installs, chosen by the file's extension. Used where a place in the code matters: the range an
edit rewrites, and where a cut-off completion can end."""

from __future__ import annotations

import functools
import importlib
import os
from typing import Any

GRAMMARS = {".py": "tree_sitter_python", ".pyi": "tree_sitter_python",
            ".js": "tree_sitter_javascript", ".jsx": "tree_sitter_javascript",
            ".mjs": "tree_sitter_javascript", ".cjs": "tree_sitter_javascript",
            ".go": "tree_sitter_go", ".rs": "tree_sitter_rust", ".java": "tree_sitter_java",
            ".sh": "tree_sitter_bash", ".bash": "tree_sitter_bash"}


@functools.lru_cache(maxsize=16)
def _parser(extension: str) -> Any:
    try:
        import tree_sitter

        grammar = importlib.import_module(GRAMMARS[extension])
        return tree_sitter.Parser(tree_sitter.Language(grammar.language()))
    except (KeyError, ImportError, ValueError, TypeError):
        return None


def parser_for(path: str) -> Any:
    """tree-sitter's parser for the file's language, or None when there is none."""
    return _parser(os.path.splitext(path)[1].lower())


def tree(text: str, path: str) -> Any:
    """The syntax tree of `text` as the language of `path`, or None."""
    parser = parser_for(path)
    return None if parser is None else parser.parse(text.encode("utf-8"))


def errors(text: str, path: str) -> int | None:
    """How many places in `text` do not parse (error and missing nodes), or None when the
    language has no parser here."""
    found = tree(text, path)
    if found is None:
        return None
    count, stack = 0, [found.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            count += 1
        elif node.has_error:
            stack.extend(node.children)
    return count
