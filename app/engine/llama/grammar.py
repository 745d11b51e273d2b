"""A grammar held to greedy decoding at the cost of one token per step, not the vocabulary.

llama.cpp's grammar sampler checks every candidate token against the grammar: for Qwen's
151,936 tokens that is most of a step's sampling time. For a greedy choice only the winner
matters, so the winner is checked first and the whole vocabulary only when the grammar refuses
it (llama.cpp's own common sampler does the same). The choice is the same either way: the best
token the grammar allows.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any


class GrammarGate:
    def __init__(self, llm: Any, grammar: Any) -> None:
        import llama_cpp
        import numpy as np

        self.lib = llama_cpp
        made = llama_cpp.llama_sampler_init_grammar(
            llm._model.vocab, grammar._grammar.encode(), grammar._root.encode())
        if not made:
            raise ValueError("the grammar does not parse")
        self.sampler = made
        self.one = (llama_cpp.llama_token_data * 1)()
        self.one_array = llama_cpp.llama_token_data_array(
            data=self.one, size=1, selected=-1, sorted=False)
        n = llm.n_vocab()
        self.all = (llama_cpp.llama_token_data * n)()
        self.all_array = llama_cpp.llama_token_data_array(
            data=self.all, size=n, selected=-1, sorted=False)
        view = np.frombuffer(self.all, dtype=np.dtype(
            [("id", "<i4"), ("logit", "<f4"), ("p", "<f4")], align=True))
        view["id"] = np.arange(n, dtype=np.int32)
        self.view = view

    def allows(self, token: int) -> bool:
        self.one[0] = self.lib.llama_token_data(token, 0.0, 0.0)
        self.one_array.size, self.one_array.selected = 1, -1
        self.lib.llama_sampler_apply(self.sampler, ctypes.byref(self.one_array))
        return not math.isinf(self.one[0].logit)

    def best(self, row: Any, first: int = 64) -> int:
        """The best token of `row` (logits after penalties) that the grammar allows: the
        `first` best one by one (the grammar usually allows one of them), else all at once."""
        import numpy as np

        top = np.argpartition(row, -first)[-first:]
        for token in top[np.argsort(-row[top], kind="stable")]:
            if self.allows(int(token)):
                return int(token)
        self.view["logit"] = row
        self.all_array.size, self.all_array.selected = len(row), -1
        self.lib.llama_sampler_apply(self.sampler, ctypes.byref(self.all_array))
        return int(np.argmax(self.view["logit"]))

    def choose(self, row: Any) -> int:
        """The greedy choice the grammar allows, taken (the grammar moves past it)."""
        import numpy as np

        token = int(np.argmax(row))
        if not self.allows(token):
            token = self.best(row)
        self.lib.llama_sampler_accept(self.sampler, token)
        return token

    def close(self) -> None:
        if self.sampler:
            self.lib.llama_sampler_free(self.sampler)
            self.sampler = None
