"""The Ollama backend: the official `ollama` client against a local or remote server."""
