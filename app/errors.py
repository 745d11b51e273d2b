"""Errors a user can meet. Each message says what happened and what to do."""


class TramontaneError(Exception):
    """Base class: the UI and the CLI show the message, never a traceback."""


class ConfigError(TramontaneError):
    """config.toml or models.toml cannot be read."""


class ModelNotFoundError(TramontaneError):
    """The model a user named is not on disk and not known."""


class CorruptModelError(TramontaneError):
    """A GGUF file is truncated, not a GGUF, or otherwise unreadable."""


class HistoryError(TramontaneError):
    """history.db cannot be opened, read or written."""


class ChatNotFoundError(TramontaneError):
    """A chat id that is not in the history."""


class BackendError(TramontaneError):
    """The model backend failed (worker crash, load failure, server down)."""
