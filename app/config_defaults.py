"""Every setting's default: the one source config.py checks types against and config.toml's
template is written from."""

from __future__ import annotations

from typing import Any

DEFAULTS: dict[str, Any] = {
    "chat": {"model": "", "backend": "llama.cpp", "system_prompt": ""},
    "params": {
        "temperature": 0.7,
        "top_p": 0.95,
        "top_k": 40,
        "repeat_penalty": 1.1,
        "seed": -1,
        "max_tokens": 512,
        "context_length": 4096,
        "threads": 0,
        "gpu_layers": -1,
        "speculative": "auto",
        "draft_model": "",
        "think_budget_s": 0.0,
    },
    "code": {"model": "", "debounce_ms": 250, "prefix_lines": 24, "suffix_lines": 8,
             "auto_suggest_off": [], "max_tokens": 64, "max_time_ms": 2000,
             "temperature": 0.0, "seed": 1},
    "ui": {"theme": "textual-dark"},
    "ollama": {"host": "", "connect_timeout": 5.0, "first_token_timeout": 120.0,
               "read_timeout": 60.0, "keep_alive": "5m"},
    "openai": {"base_url": "http://127.0.0.1:8080/v1", "api_key": "", "model": "",
               "code_model": "", "fim": "auto", "fim_format": "", "connect_timeout": 5.0,
               "first_token_timeout": 120.0, "read_timeout": 60.0},
    "serve": {"host": "127.0.0.1", "port": 8012, "api_key": "", "save_chats": False,
              "url": "", "allowed_origins": [], "allowed_hosts": []},
    "plugins": {"disabled": []},
    "tools": {"enabled": False, "auto_approve": [], "allow_secrets": False},
}

# The values a number may take (inclusive); one outside is named and left at its default.
RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("params", "temperature"): (0.0, 5.0),
    ("params", "top_p"): (0.0, 1.0),
    ("params", "top_k"): (0, 1_000_000),
    ("params", "repeat_penalty"): (0.0, 10.0),
    ("params", "max_tokens"): (1, 1_000_000),
    ("params", "context_length"): (64, 10_000_000),
    ("params", "threads"): (0, 4096),
    ("params", "gpu_layers"): (-1, 100_000),
    ("params", "think_budget_s"): (0.0, 86_400.0),
    ("code", "debounce_ms"): (0, 60_000),
    ("code", "prefix_lines"): (0, 100_000),
    ("code", "suffix_lines"): (0, 100_000),
    ("code", "max_tokens"): (1, 100_000),
    ("code", "max_time_ms"): (0, 600_000),
    ("code", "temperature"): (0.0, 5.0),
    ("ollama", "connect_timeout"): (0.1, 3600.0),
    ("ollama", "first_token_timeout"): (0.1, 86_400.0),
    ("ollama", "read_timeout"): (0.1, 86_400.0),
    ("openai", "connect_timeout"): (0.1, 3600.0),
    ("openai", "first_token_timeout"): (0.1, 86_400.0),
    ("openai", "read_timeout"): (0.1, 86_400.0),
    ("serve", "port"): (1, 65_535),
}
