"""KV reuse for prefix-first FIM prompts: typing at the cursor costs the typed tokens, not the
whole text after the cursor. OFF by default (Params.cache_reuse), and measured not to work:

With the moved tail, Qwen answered as if the last edit had not happened (pass@1 0.45 against
0.825 while typing, bench/fim_quality.py --reuse-both). Checked step by step (positions of
each sequence after each memory call, the final token's logits against a full evaluation):
the memory operations are right; the approximation is what fails. In a prefix-first prompt
the whole suffix sits between the edit and the token that samples, and through the upper
layers the suffix's cells carry "how the prefix ends" to it; cells computed before the edit
carry the old ending. So the exact answer is a suffix-first layout (Codestral's own, and
StarCoder's SPM, which Qwen2.5-Coder answers as well as PSM): the edit is then at the end of
the prompt and llama.cpp's prefix cache reuses everything before it, with nothing moved.
fim.py's "qwen" format is that layout. This module stays for prefix-first-only models.

Qwen, StarCoder2, DeepSeek and CodeLlama put the suffix after the prefix, so every keystroke
changes the prompt in the middle and llama-cpp-python's prefix cache re-evaluates everything
after the cursor (hundreds of tokens). Here the previous prompt and the new one are compared
from both ends: the unchanged head stays, the old middle's KV cells are removed, the unchanged
tail's cells are moved to their new positions (llama.cpp's memory API: `seq_rm`, `seq_add`,
which re-rotates their RoPE keys), and only the new middle is evaluated; llama-cpp-python's own
prefix match then evaluates the final FIM token, which samples. llama-server's `--cache-reuse`
moves chunks the same way but only when text was removed; typing inserts, so it cannot.

What this approximates: the tail's cells keep the keys and values computed when the middle
still held the old text (a character or a word less), as if the tail had been read before the
last edit. Attention from the new middle and from the final token is exact. The error stays
small because each edit is small; every `MAX_DRIFT` reused tokens of edits (or when the middle
grows past `MAX_MIDDLE`) the prompt is evaluated in full again, so the drift never
accumulates. bench/fim_quality.py measures pass@1 with reuse on against off.
"""

from __future__ import annotations

from typing import Any

PARKED = 1  # the sequence a moved tail waits in (the context is made with two, unified)
MIN_TAIL = 16  # a shorter unchanged tail is cheaper to evaluate than to move
MAX_MIDDLE = 24  # a bigger change is not typing at the cursor: evaluate the prompt in full
MAX_DRIFT = 64  # tokens evaluated into a moved tail's context before a full refresh


class TailReuse:
    """What the worker remembers between FIM requests to reuse a moved tail."""

    def __init__(self) -> None:
        self.previous: list[int] = []  # the last prompt as evaluated (without generated tokens)
        self.drift = 0  # tokens evaluated since the tail's cells were last computed in full

    def forget(self) -> None:
        self.previous, self.drift = [], 0

    def prepare(self, llm: Any, lib: Any, tokens: list[int]) -> int:
        """Make `llm`'s cache hold all of `tokens` but the last one, reusing the unchanged
        head and tail of the previous prompt (`lib`: the llama_cpp module, for the memory
        calls); the count of tokens reused (0: nothing done, and llama-cpp-python's prefix
        match decides as usual)."""
        previous = self.previous
        cached = llm.input_ids[: llm.n_tokens].tolist()
        if not previous or len(cached) < len(previous) or cached[: len(previous)] != previous:
            return 0  # the cache holds something else (a chat, another file)
        old, new = previous[:-1], tokens[:-1]
        head = common_prefix(old, new)
        tail = common_prefix(old[head:][::-1], new[head:][::-1])
        middle = new[head: len(new) - tail]
        if tail < MIN_TAIL or len(middle) > MAX_MIDDLE or self.drift + len(middle) > MAX_DRIFT:
            self.drift = 0
            return 0
        ctx = llm._ctx
        mem = ctx.memory
        try:
            # llama.cpp wants each sequence's positions consecutive: the tail waits in sequence
            # PARKED while the middle is evaluated after the head, then joins sequence 0 again
            ok = ctx.kv_cache_seq_rm(0, len(old), -1)  # generated tokens and the old last one
            lib.llama_memory_seq_cp(mem, 0, PARKED, len(old) - tail, len(old))
            ok = ok and ctx.kv_cache_seq_rm(0, head, -1)  # old middle; the tail stays parked
            if not ok:
                raise RuntimeError("this model's memory cannot remove a span")
            if len(new) != len(old):
                lib.llama_memory_seq_add(mem, PARKED, len(old) - tail, len(old),
                                         len(new) - len(old))
            for start in range(0, len(middle), llm.n_batch):
                batch = middle[start: start + llm.n_batch]
                llm._batch.set_batch(batch=batch, n_past=head + start, logits_all=False)
                ctx.decode(llm._batch)
            lib.llama_memory_seq_cp(mem, PARKED, 0, len(new) - tail, len(new))
            lib.llama_memory_seq_rm(mem, PARKED, -1, -1)
        except Exception:  # recurrent or sliding-window memory, a failed decode: start clean
            llm.reset()
            ctx.kv_cache_clear()
            self.forget()
            return 0
        llm.input_ids[: len(new)] = new
        llm.n_tokens = len(new)
        self.drift += len(middle)
        return head + tail

    def evaluated(self, tokens: list[int]) -> None:
        """`tokens` is now the prompt in the cache (generated tokens follow it)."""
        self.previous = list(tokens)


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many tokens `a` and `b` share from the start."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
