"""The blanks typed before the cursor (`x = `, `return `, `, `): a BPE model writes a word with
its leading space in one token, so a prompt that ends in the space asks for an unlikely token,
and the model answers with a second space (`+  fibonacci(n`). The prompt is sent without them,
and the model's text is shown without the blanks the user already typed: the completion starts
where the typed text ends, for every FIM format and backend."""

from __future__ import annotations


def heal(prefix: str) -> tuple[str, str]:
    """The prefix to send, and the blanks the user typed after the last word of the line
    (`x = `, `return `, `, `): those go, so the model writes the space with its next token, as
    a BPE vocabulary wants (a word's token carries its leading space). `realign` takes them
    off the model's text, so the completion starts where the typed text ends."""
    line = prefix.rsplit("\n", 1)[-1]
    word_end = line.rstrip(" \t")
    if not word_end or word_end == line:
        return prefix, ""
    typed = line[len(word_end):]
    return prefix[:-len(typed)], typed


def realign_piece(piece: str, typed: str) -> tuple[str, str]:
    """A streamed piece of the model's text without the blanks the user already typed (see
    `heal`), and what of them is still to match (nothing once the text went its own way)."""
    n = 0
    while n < len(typed) and n < len(piece) and piece[n] == typed[n]:
        n += 1
    return piece[n:], typed[n:] if n == len(piece) else ""
