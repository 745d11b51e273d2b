"""config.toml as a new user gets it: every setting, its default and what it does."""

from __future__ import annotations

from app.config_defaults import DEFAULTS

TEMPLATE = """\
# Tramontane settings. Comments you add here are kept when the app saves a change.

[chat]
# Default chat model: a catalog id, a model name from `tramontane models list`, or a .gguf path.
model = ""
backend = "llama.cpp"
system_prompt = ""

[params]
temperature = {temperature}
top_p = {top_p}
top_k = {top_k}
repeat_penalty = {repeat_penalty}
seed = {seed}            # -1 picks a new seed each time
max_tokens = {max_tokens}
context_length = {context_length}
threads = {threads}          # 0 = as many as the machine has cores
gpu_layers = {gpu_layers}      # layers on the GPU; -1 = as many as fit (the fit verdict plans it)
# Speculative decoding (llama.cpp): "auto" drafts from the prompt (prompt lookup) where that
# was measured to pay on this machine for the kind of work (chat, edit, completion), and
# from a small draft model of the same vocabulary where the speed model predicts it pays;
# "lookup" always; "draft" always with a draft model; "off" never.
speculative = "{speculative}"
# The draft model (a name from `models list`, or a path); "": the smallest installed model
# of the same vocabulary (the Qwen2.5-Coder 0.5B starter for the 1.5B and the 7B).
draft_model = "{draft_model}"
# A thinking model's <think> block is closed after this many seconds, so the answer always
# comes (0: the time the speed model predicts this machine takes for half the reply's
# max_tokens, at most 120 s).
think_budget_s = {think_budget_s}

[code]
# Model for fill-in-the-middle completion; empty: the Qwen2.5-Coder starter (else the chat model).
model = ""
debounce_ms = 250    # pause in typing before a suggestion is asked for; 0 = only on Ctrl+Space
auto_suggest_off = []  # languages with no automatic suggestion, e.g. ["markdown", "toml"]
# The lines around the cursor a suggestion sees (as llama.vim's n_prefix / n_suffix; 0 = the
# whole file). More lines give the model more to go on; fewer make the first suggestion in a
# file come sooner (about 10 tokens a line, and a 1.5B model reads ~80 tokens/s on 2 cores).
prefix_lines = 24
suffix_lines = 8
# Completion's own sampling, for the pane, `complete`, `edit` and `serve` (a client's n_predict
# or temperature wins for its request): greedy, so the same place gives the same suggestion.
max_tokens = 64
# A suggestion stops this long after its first token (0: no cap), so a busy machine still
# answers; what came is cut back to whole lines. A client's t_max_predict_ms wins in `serve`.
max_time_ms = 2000
temperature = 0.0
seed = 1

[ui]
theme = "textual-dark"

[ollama]
host = ""            # empty: OLLAMA_HOST, else http://127.0.0.1:11434
connect_timeout = 5.0
first_token_timeout = 120.0   # seconds; a big model can take long to load
read_timeout = 60.0
keep_alive = "5m"

[openai]
# Any OpenAI-compatible server: vLLM, llama.cpp's llama-server, LM Studio, a company endpoint.
base_url = "http://127.0.0.1:8080/v1"
api_key = ""         # empty: TRAMONTANE_OPENAI_API_KEY, else OPENAI_API_KEY (never logged)
model = ""           # chat model id from the server's /v1/models (empty: the first one)
code_model = ""      # model for `complete` and the code pane (empty: the chat model)
fim = "auto"         # auto (ask the server once) | infill | suffix | prompt
fim_format = ""      # with fim = "prompt": codestral, qwen, ... (empty: from the model's name)
connect_timeout = 5.0
first_token_timeout = 120.0
read_timeout = 60.0

[serve]
# `tramontane serve`: llama.cpp's /infill (llama.vim, llama.vscode) and the OpenAI API (/v1).
host = "127.0.0.1"   # another address needs an api_key
port = 8012          # llama.vim's and llama.vscode's default
api_key = ""         # empty: TRAMONTANE_SERVE_API_KEY (clients send "Authorization: Bearer KEY")
save_chats = false   # keep chats made through the API in the history
url = ""             # where `tramontane complete` looks for a running server ("off": never)
# Web pages may not use the server (as Ollama): only loopback pages and these origins, e.g.
# ["https://my-tool.example"] ("*" for any), and on loopback only loopback Host names and these.
allowed_origins = []
allowed_hosts = []

[plugins]
# Installed plugins to leave off, by name (`tramontane plugins list` shows the names).
disabled = []

[tools]
# Tools the chat may call (`chat --tools`, Ctrl+T in the app): read-only tools over the folder
# the chat started in, and the tools of the MCP servers below. Each call is shown and asked
# about, but for the tools named here (e.g. ["read_file", "list_folder", "search", "git"]).
enabled = false
auto_approve = []
allow_secrets = false  # let the folder tools read .env files, private keys and the like

# An MCP server (stdio) whose tools the chat may call, e.g.:
# [mcp.servers.time]
# command = ["uvx", "mcp-server-time"]
""".format(**DEFAULTS["params"])  # the one source of the sampling defaults
