"""Where Tramontane keeps its files, and the user's settings in config.toml.

`TRAMONTANE_HOME` puts everything under one folder (tests use it). config.toml is read and
written with tomlkit so the user's comments survive; a broken file is reported with its line
and the app goes on with defaults.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs
import tomlkit
import tomlkit.exceptions

from app.atomic import atomic_write
from app.config_defaults import DEFAULTS, RANGES
from app.errors import ConfigError

APP_NAME = "tramontane"





@dataclass(frozen=True)
class Paths:
    """Every folder Tramontane writes to."""

    config_dir: Path
    data_dir: Path
    log_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def user_catalog(self) -> Path:
        return self.config_dir / "models.toml"

    @property
    def history_db(self) -> Path:
        return self.data_dir / "history.db"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def recovery_dir(self) -> Path:
        """Recovery copies of unsaved code-pane buffers."""
        return self.data_dir / "recovery"

    def ensure(self) -> list[str]:
        """Create the folders; what could not be created, in words (a read-only or missing
        home is not a crash: commands that only read go on, a write says what failed)."""
        problems = []
        for folder in (self.config_dir, self.data_dir, self.log_dir, self.models_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                problems.append(f"cannot create {folder} ({exc.strerror or exc}); set "
                                "TRAMONTANE_HOME to a folder you can write to")
        return problems


def paths() -> Paths:
    """The folders in use now: TRAMONTANE_HOME if set, else the platform's own."""
    home = os.environ.get("TRAMONTANE_HOME")
    if home:
        root = Path(home).expanduser()
        return Paths(root / "config", root / "data", root / "logs")
    return Paths(
        Path(platformdirs.user_config_dir(APP_NAME)),
        Path(platformdirs.user_data_dir(APP_NAME)),
        Path(platformdirs.user_log_dir(APP_NAME)),
    )


@dataclass
class Config:
    """Settings merged over the defaults, plus the warnings met while reading them."""

    values: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULTS))
    warnings: list[str] = field(default_factory=list)
    path: Path | None = None

    def get(self, section: str, key: str) -> Any:
        return self.values.get(section, {}).get(key, DEFAULTS.get(section, {}).get(key))

    def section(self, section: str) -> dict[str, Any]:
        merged = dict(DEFAULTS.get(section, {}))
        merged.update(self.values.get(section, {}))
        return merged

    def set(self, section: str, key: str, value: Any) -> None:
        """Change one setting and write it back, keeping the file's comments, its mode (0600
        for a new file) and a symlinked config.toml a link. A file that cannot be parsed or
        written is not touched: ConfigError says why, and the value holds for this session."""
        self.values.setdefault(section, {})[key] = value
        if self.path is None:
            return
        try:
            from app.config_template import TEMPLATE

            if self.path.exists() and not self.path.is_file():
                raise ConfigError(f"{self.path} is not a regular file; {section}.{key} holds "
                                  "until the app stops.")
            text = self.path.read_text(encoding="utf-8") if self.path.exists() else TEMPLATE
            doc = tomlkit.parse(text)
        except tomlkit.exceptions.ParseError as exc:
            raise ConfigError(f"{self.path}: line {exc.line}: {_reason(exc)}; fix it to save "
                              f"settings ({section}.{key} holds until the app stops).") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{self.path} cannot be read ({exc}); {section}.{key} was not "
                              "saved.") from exc
        table = doc.get(section)
        if not isinstance(table, dict):
            table = tomlkit.table()
            doc[section] = table
        table[key] = value
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, tomlkit.dumps(doc), mode=0o600)
        except OSError as exc:
            raise ConfigError(f"Could not save {self.path}: {exc.strerror or exc}; "
                              f"{section}.{key} holds until the app stops.") from exc


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def load_config(p: Paths | None = None) -> Config:
    """Read config.toml; on a broken file keep the defaults and say where it broke."""
    p = p or paths()
    cfg = Config(path=p.config_file)
    if not p.config_file.exists():
        return cfg
    if not p.config_file.is_file():  # a FIFO or a device would hang every command
        cfg.warnings.append(f"{p.config_file}: not a regular file. Using the default settings.")
        return cfg
    try:
        text = p.config_file.read_text(encoding="utf-8")
        doc = tomlkit.parse(text).unwrap()
    except tomlkit.exceptions.ParseError as exc:
        cfg.warnings.append(
            f"{p.config_file}: line {exc.line}, column {exc.col}: {_reason(exc)}. "
            "Using the default settings until the file is fixed."
        )
        return cfg
    except (OSError, UnicodeDecodeError) as exc:
        cfg.warnings.append(f"{p.config_file}: cannot be read ({exc}). Using the defaults.")
        return cfg
    for section, value in doc.items():
        if section in DEFAULTS and not isinstance(value, dict):
            cfg.warnings.append(f"{p.config_file}: [{section}] should be a table; ignored.")
            continue
        if isinstance(value, dict) and section in DEFAULTS:
            value = _checked(p.config_file, text, section, value, cfg.warnings)
        _merge(cfg.values, {section: value})
    return cfg


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    return "a string"


def _fits(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    if isinstance(default, list):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, type(default))


def _checked(path: Path, text: str, section: str, values: dict[str, Any],
             warnings: list[str]) -> dict[str, Any]:
    """The section's values of the right type; each wrong one is named with its line and
    left at its default."""
    kept = {}
    for key, value in values.items():
        default = DEFAULTS[section].get(key)
        either = (section, key) == ("ollama", "keep_alive") and isinstance(value, int | float)
        if default is not None and not either and not _fits(default, value):
            warnings.append(f"{path}: line {_line_of(text, section, key)}: [{section}] {key} "
                            f"should be {_kind(default)}, not {value!r}; using {default!r}.")
            continue
        low, high = RANGES.get((section, key), (None, None))
        if low is not None and high is not None and not low <= value <= high:
            warnings.append(f"{path}: line {_line_of(text, section, key)}: [{section}] {key} "
                            f"should be from {low:g} to {high:g}, not {value!r}; using "
                            f"{default!r}.")
            continue
        kept[key] = value
    return kept


def _line_of(text: str, section: str, key: str) -> int:
    """The 1-based line where `key` is set in `[section]` (0 when not found)."""
    current = ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped.strip("[] ")
        elif current == section and stripped.split("=", 1)[0].strip() == key:
            return number
    return 0


def _reason(exc: tomlkit.exceptions.ParseError) -> str:
    message = str(exc)
    cut = message.rfind(" at line ")
    return message[:cut] if cut > 0 else message


def write_default_config(p: Paths | None = None) -> Path:
    """Create config.toml with commented defaults if there is none yet."""
    p = p or paths()
    if not p.config_file.exists():
        p.config_dir.mkdir(parents=True, exist_ok=True)
        from app.config_template import TEMPLATE

        atomic_write(p.config_file, TEMPLATE, mode=0o600)
    return p.config_file


LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


def ollama_host(cfg: Config) -> str:
    """The Ollama server to talk to: config.toml, then OLLAMA_HOST, then the local default.
    A value that is not an address is a ConfigError naming where it came from (asked only
    when the Ollama backend is used, so a bad OLLAMA_HOST meant for another tool breaks
    nothing else)."""
    configured = str(cfg.get("ollama", "host") or "")
    source = "[ollama] host in config.toml" if configured else "OLLAMA_HOST"
    host = configured or os.environ.get("OLLAMA_HOST", "") or "127.0.0.1:11434"
    if "://" not in host:
        host = "http://" + host
    try:
        parsed = urlsplit(host)
        port = parsed.port or 11434
        hostname = parsed.hostname
    except ValueError as exc:
        raise ConfigError(f"{source} = {shown_host(host)!r} is not a server address ({exc}); "
                          "fix it, e.g. 127.0.0.1:11434.") from exc
    if parsed.scheme not in ("http", "https") or not hostname:
        raise ConfigError(f"{source} = {shown_host(host)!r} is not an http(s) server address; "
                          "fix it, e.g. 127.0.0.1:11434.")
    netloc = parsed.netloc.rsplit("@", 1)
    userinfo = netloc[0] + "@" if len(netloc) == 2 else ""
    name = f"[{hostname}]" if ":" in hostname else hostname
    return f"{parsed.scheme}://{userinfo}{name}:{port}{parsed.path.rstrip('/')}"


OPENAI_KEY_VARIABLES = ("TRAMONTANE_OPENAI_API_KEY", "OPENAI_API_KEY")


def openai_server(cfg: Config) -> tuple[str, str]:
    """The OpenAI-compatible server's base URL (checked, ending in /v1 or as given) and its
    API key: config.toml, else TRAMONTANE_OPENAI_API_KEY, else OPENAI_API_KEY ("" for none)."""
    url = str(cfg.get("openai", "base_url") or "").strip() or "http://127.0.0.1:8080/v1"
    if "://" not in url:
        url = "http://" + url
    try:
        parsed = urlsplit(url)
        parsed.port  # noqa: B018 - raises for a port that is not a number
    except ValueError as exc:
        raise ConfigError(f"[openai] base_url = {shown_host(url)!r} is not a server address "
                          f"({exc}); fix it, e.g. http://127.0.0.1:8080/v1.") from exc
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"[openai] base_url = {shown_host(url)!r} is not an http(s) server "
                          "address; fix it, e.g. http://127.0.0.1:8080/v1.")
    key = str(cfg.get("openai", "api_key") or "")
    for name in OPENAI_KEY_VARIABLES:
        key = key or os.environ.get(name, "")
    return url.rstrip("/"), key


def shown_host(host: str) -> str:
    """`host` without any user name or password, for messages and logs."""
    scheme, sep, rest = host.partition("://")
    if not sep:
        scheme, rest = "", host
    netloc, slash, path = rest.partition("/")
    netloc = netloc.rsplit("@", 1)[-1]
    return f"{scheme}{sep}{netloc}{slash}{path}"


def is_remote(host: str) -> bool:
    """A server that is not this machine (by its parsed host name, never a substring)."""
    try:
        name = urlsplit(host if "://" in host else "http://" + host).hostname or ""
    except ValueError:
        return True
    return name not in LOOPBACK
