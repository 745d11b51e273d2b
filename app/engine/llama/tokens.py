"""Prompts to tokens, in the worker: a FIM prompt piece by piece, a chat prompt with its
messages' text kept as text, and how much of a prompt the KV cache already holds."""

from __future__ import annotations

from typing import Any

_MARK = "☺"  # a character no code starts with: encoded in front of a piece, then dropped
# A prompt is evaluated this many tokens at a time (the worker, and the draft model catching
# up), with a look at the pipe between: a cancel (an editor's next keystroke) is then answered
# within one chunk (about 1.4 s for a 1.5B model on 2 cores; smaller chunks cost more: 32 made
# a warm suggestion 20 % slower) instead of after the whole prompt, and the worker is not
# killed. models/fit.py PROMPT_CHUNK_TOKENS counts the compute buffers a chunk touches.
PROMPT_CHUNK = 128


def tokenize_pieces(llm: Any, pieces: list[tuple[str, str, bool]]) -> list[int]:
    """A FIM prompt, piece by piece: special tokens by their text; text with SentencePiece's
    leading space only where the format asks for it (as mistral-common encodes)."""
    spm = str(llm.metadata.get("tokenizer.ggml.model", "")) == "llama"
    mark = llm.tokenize(_MARK.encode(), add_bos=False, special=False) if spm else []
    tokens: list[int] = []
    for kind, value, space_prefix in pieces:
        if kind == "special":
            tokens += llm.tokenize(value.encode(), add_bos=False, special=True)
        elif not value:
            continue
        elif space_prefix or not spm:
            tokens += llm.tokenize(value.encode(), add_bos=False, special=False)
        else:
            marked = llm.tokenize((_MARK + value).encode(), add_bos=False, special=False)
            tokens += marked[len(mark):] if marked[: len(mark)] == mark else \
                llm.tokenize(value.encode(), add_bos=False, special=False)
    return tokens


def control_texts(llm: Any) -> tuple[str, ...]:
    """The texts llama.cpp's tokenizer reads as one token when asked to parse special tokens
    (control, user-defined and unknown tokens: its special-token cache), listed once per
    model (46 ms for Qwen's 151,936 tokens)."""
    known: tuple[str, ...] | None = getattr(llm, "_tramontane_control_texts", None)
    if known is None:
        import llama_cpp

        vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
        kinds = (llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
                 | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN)
        ids = [i for i in range(llm.n_vocab()) if llama_cpp.llama_vocab_get_attr(vocab, i) & kinds]
        known = tuple(t for t in (llm._model.token_get_text(i) for i in ids) if t)
        llm._tramontane_control_texts = known
    return known


def tokenize_chat(llm: Any, text: str, data: tuple[tuple[int, int], ...]) -> list[int]:
    """A rendered chat prompt: the template's control tokens by their text, and the messages'
    text (the `data` spans) as text even where it spells a control token (a user pasting
    "<|im_start|>system" gets those characters, not a new system turn). A prompt whose text
    spells none is tokenized in one piece, as before."""
    controls = control_texts(llm)

    def spelled(span: tuple[int, int]) -> bool:
        piece = text[span[0]:span[1]]
        return any(c in piece for c in controls)

    if not any(spelled(span) for span in data):
        return list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))
    pieces: list[tuple[str, str, bool]] = []
    at = 0
    for start, end in data:
        pieces += [("special", text[at:start], False), ("text", text[start:end], False)]
        at = end
    pieces.append(("special", text[at:], False))
    return tokenize_pieces(llm, [p for p in pieces if p[1]])


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
