"""The defects a bad-input probe found: each case as the probe ran it, each answered with one
clear line and nothing lost or leaked."""

from __future__ import annotations

import asyncio
import os
import struct
import time
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest

from app.engine.backend import Done, Error, Event, Message, Params, Stats, Token
from app.errors import CorruptModelError
from app.files import FileRefused, read_text, safe_git
from app.plugins.hookspecs import Attachment
from app.plugins.manager import PluginHost
from app.session.context import AppContext
from app.session.library import ChatLibrary
from tests.fixtures.scripted import ScriptedBackend
from tests.helpers import tramontane

pytestmark = pytest.mark.model  # the `make test-quick` lane leaves these out

# -- /file and /dir: links out of the folder, special files, endless files ---------------------


class _Chat:
    def __init__(self, cwd: Path) -> None:
        self.chat_id, self.cwd = 1, str(cwd)
        self.attached: list[Attachment] = []
        self.notices: list[str] = []

    def attach(self, attachment: Attachment) -> None:
        self.attached.append(attachment)

    def notice(self, text: str) -> None:
        self.notices.append(text)


files_plugin = pytest.importorskip("tramontane_files", reason="run `make install`")


def _repo_with_a_secret_link(tmp_path: Path) -> tuple[Path, Path]:
    secret = tmp_path / "home" / ".ssh" / "id_ed25519"
    secret.parent.mkdir(parents=True)
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY----- not for the model\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("A harmless project.\n")
    (repo / "notes.txt").symlink_to(secret)
    return repo, secret


def test_file_refuses_a_link_out_of_its_folder(tmp_path: Path) -> None:
    repo, secret = _repo_with_a_secret_link(tmp_path)
    chat = _Chat(repo)
    assert files_plugin.attach_file("notes.txt what is this?", chat) == ""
    assert chat.attached == [] and "outside" in chat.notices[0]
    assert "Nothing was sent" in chat.notices[0]
    # the file itself, named by the user, is theirs to send
    chat = _Chat(tmp_path)
    files_plugin.attach_file(str(secret), chat)
    assert chat.attached and "PRIVATE KEY" in chat.attached[0].text


def test_dir_leaves_out_links_that_lead_out_of_it(tmp_path: Path) -> None:
    import subprocess

    repo, _ = _repo_with_a_secret_link(tmp_path)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    chat = _Chat(tmp_path)
    assert files_plugin.attach_dir("repo summarise", chat) == "summarise"
    assert [a.label for a in chat.attached] == ["repo/README.md"]
    assert all("PRIVATE KEY" not in a.text for a in chat.attached)
    assert any("repo/notes.txt" in n and "lead out" in n for n in chat.notices)


def test_special_files_are_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    for path, words in ((fifo, "named pipe"), (Path("/dev/zero"), "device")):
        chat = _Chat(tmp_path)
        files_plugin.attach_file(str(path), chat)
        assert chat.attached == [] and words in chat.notices[0]
    assert time.monotonic() - t0 < 2  # neither blocks nor reads without end


def test_a_file_read_is_bounded_whatever_its_size_says(tmp_path: Path) -> None:
    with pytest.raises(FileRefused, match="over"):
        read_text(Path("/proc/self/environ"), 10, "environ")  # size 0 on stat, more on read


def test_git_runs_nothing_a_repository_configures(tmp_path: Path) -> None:
    import subprocess

    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    marker = tmp_path / "pwned"
    hook = tmp_path / "fsmonitor.sh"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    with (repo / ".git" / "config").open("a") as fh:
        fh.write(f"[core]\n\tfsmonitor = {hook}\n[filter \"x\"]\n\tclean = {hook}\n"
                 f"[diff]\n\texternal = {hook}\n")
    (repo / ".gitattributes").write_text("* filter=x\n")
    (repo / "a.py").write_text("print(1)\n")
    assert safe_git(repo, "status", "--porcelain", "-z") is not None
    assert safe_git(repo, "ls-files", "-z", "--others") is not None
    assert safe_git(repo, "diff", "--no-ext-diff", "--no-textconv") is not None
    assert not marker.exists()
    chat = _Chat(tmp_path)
    files_plugin.attach_dir("repo what is here?", chat)
    assert not marker.exists() and chat.attached


# -- plugins that hang ---------------------------------------------------------------------------


async def test_a_timed_out_slash_command_attaches_nothing_and_holds_no_exit() -> None:
    from app.plugins.hookspecs import SlashCommand
    from app.session import slash

    release = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stuck(args: str, chat: object) -> str:
        chat.attach(Attachment("early", "found before the limit"))  # type: ignore[attr-defined]
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result()
        chat.attach(Attachment("late", "found after the limit"))  # type: ignore[attr-defined]
        return "question"

    host = PluginHost(pinned=set())
    host.load()
    prompt = slash.ChatPrompt(host)
    prompt.commands["stuck"] = SlashCommand("stuck", "hangs", stuck, plugin="slowpoke")
    session = ChatLibrary(AppContext(), ScriptedBackend()).new()
    old = slash.SLASH_TIMEOUT_S
    slash.SLASH_TIMEOUT_S = 0.2
    try:
        prepared = await prompt.prepare("/stuck x", session)
    finally:
        slash.SLASH_TIMEOUT_S = old
    assert prepared.content is None and "took too long" in prepared.notices[-1]
    release.set()
    await asyncio.sleep(0.05)
    assert session.attachments == []
    import threading

    assert all(t.daemon for t in threading.enumerate() if t.name == "plugin")


# -- regenerate and edit keep the old turn until the new one is complete ------------------------


class _Down(ScriptedBackend):
    async def chat(self, messages: list[Message], params: Params) -> AsyncGenerator[Event, None]:
        yield Error("The model worker is gone.")


class _Cut(ScriptedBackend):
    async def chat(self, messages: list[Message], params: Params) -> AsyncGenerator[Event, None]:
        yield Token("A new")
        yield Done(Stats(stop_reason="cancelled"))


async def _drain(events: AsyncGenerator[Event, None]) -> None:
    async for _ in events:
        pass


@pytest.mark.parametrize("backend", [_Down(), _Cut()])
@pytest.mark.parametrize("action", ["regenerate", "edit"])
async def test_a_failed_or_stopped_retry_keeps_the_old_turn(backend: ScriptedBackend,
                                                             action: str) -> None:
    ctx = AppContext()
    session = ChatLibrary(ctx, ScriptedBackend()).new()
    await _drain(session.send("Name a river."))
    before = [(m.id, m.role, m.content) for m in ctx.store.messages(session.chat_id)]
    assert before[-1][1] == "assistant" and before[-1][2]
    session.backend = backend
    await _drain(session.regenerate() if action == "regenerate"
                 else session.edit_last("Name a French river."))
    after = [(m.id, m.role, m.content) for m in ctx.store.messages(session.chat_id)]
    assert after[:2] == before  # the complete turn is still there, word for word
    if isinstance(backend, _Down) and action == "regenerate":
        assert after == before  # an attempt that failed with nothing in it leaves no reply
    else:
        assert len(after) > 2  # the new attempt (or the edited question) beside it


async def test_a_complete_retry_replaces_the_old_turn() -> None:
    ctx = AppContext()
    session = ChatLibrary(ctx, ScriptedBackend()).new()
    await _drain(session.send("Name a river."))
    question, reply = (m.id for m in ctx.store.messages(session.chat_id))
    await _drain(session.regenerate())
    ids = [m.id for m in ctx.store.messages(session.chat_id)]
    assert reply not in ids and question in ids and len(ids) == 2
    await _drain(session.edit_last("Name a French river."))
    final = ctx.store.messages(session.chat_id)
    assert [m.role for m in final] == ["user", "assistant"]
    assert final[0].content == "Name a French river." and question not in {m.id for m in final}


# -- models rm -----------------------------------------------------------------------------------


def test_models_rm_refuses_an_ambiguous_name_and_asks_first(home: Path, smollm2: Path) -> None:
    import shutil

    models = home / "data" / "models"
    models.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(smollm2, models / "SmolLM2-135M-Instruct.Q4_1.gguf")
    store = Path(os.environ["OLLAMA_MODELS"])
    from tests.test_models_fit import _ollama_store

    _ollama_store(store, smollm2, name="smollm2-135m-instruct.q4_1", tag="latest")
    ambiguous = tramontane("models", "rm", "smollm2-135m-instruct.q4_1")
    assert ambiguous.returncode == 1 and "matches 2 model files" in ambiguous.stderr
    assert (models / "SmolLM2-135M-Instruct.Q4_1.gguf").exists()
    target = str(models / "SmolLM2-135M-Instruct.Q4_1.gguf")
    unasked = tramontane("models", "rm", target, input="")
    assert unasked.returncode == 1 and "--yes" in unasked.stderr and Path(target).exists()
    done = tramontane("models", "rm", target, "--yes")
    assert done.returncode == 0, done.stderr
    assert not Path(target).exists()


# -- OLLAMA_HOST meant for another tool ----------------------------------------------------------


@pytest.mark.parametrize("value", ["http://[bad", "::::", "ftp://x"])
def test_a_malformed_ollama_host_breaks_only_the_ollama_backend(value: str) -> None:
    env = {"OLLAMA_HOST": value}
    assert tramontane("--version", env=env).returncode == 0
    assert tramontane("models", "fit", "mistral-7b-instruct", "--quant", "Q4_K_M",
                      env=env).returncode == 0
    out = tramontane("chat", "--backend", "ollama", "-m", "x", "hi", env=env)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "OLLAMA_HOST" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_ollama_credentials_never_reach_a_message() -> None:
    out = tramontane("chat", "--backend", "ollama", "-m", "x", "hi",
                     env={"OLLAMA_HOST": "http://alice:s3cret@127.0.0.1:9"})
    assert out.returncode == 1 and "s3cret" not in out.stderr and "alice" not in out.stderr


def test_remote_means_another_host_not_a_substring() -> None:
    from app.config import is_remote

    assert is_remote("http://localhost.evil.example:11434")
    assert is_remote("http://127.0.0.1.nip.io:11434")
    assert not is_remote("http://localhost:11434") and not is_remote("http://[::1]:11434")


# -- hostile GGUF headers ------------------------------------------------------------------------


def _gguf_with_alignment(path: Path, alignment: int) -> Path:
    def string(s: str) -> bytes:
        return struct.pack("<Q", len(s)) + s.encode()

    head = b"GGUF" + struct.pack("<IQQ", 3, 0, 2)
    head += string("general.architecture") + struct.pack("<I", 8) + string("llama")
    head += string("general.alignment") + struct.pack("<II", 4, alignment)
    path.write_bytes(head + b"\0" * 64)
    return path


def test_alignment_zero_is_a_damaged_file_not_a_crash(tmp_path: Path) -> None:
    from app.models.gguf_file import read_header

    with pytest.raises(CorruptModelError, match="alignment"):
        read_header(_gguf_with_alignment(tmp_path / "zero.gguf", 0))
    bad = _gguf_with_alignment(tmp_path / "models-bad.gguf", 0)
    out = tramontane("models", "fit", str(bad))
    assert out.returncode == 1 and "alignment" in out.stderr and "Traceback" not in out.stderr


# -- the medium ones ---------------------------------------------------------------------------


def test_the_worker_dies_within_a_second_of_a_killed_app(home: Path, smollm2: Path) -> None:
    import signal
    import subprocess
    import sys

    import psutil

    from tests.helpers import BIN, wait_until

    long_prompt = "Summarise: " + "the river runs to the sea and back again " * 400
    app = subprocess.Popen([str(BIN / "tramontane"), "chat", "-m", "smollm2", "--ctx", "8192",
                            "--max-tokens", "2000", long_prompt],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        parent = psutil.Process(app.pid)
        wait_until(lambda: bool(parent.children()), timeout=60, what="the worker to start")
        workers = parent.children(recursive=True)

        def busy(w: psutil.Process) -> bool:
            try:
                return w.cpu_percent(0.05) > 20
            except (psutil.Error, OSError):  # a helper process that already ended
                return False

        def alive(w: psutil.Process) -> bool:
            try:
                return w.is_running() and w.status() != psutil.STATUS_ZOMBIE
            except (psutil.Error, OSError):
                return False

        wait_until(lambda: any(busy(w) for w in workers), timeout=60,
                   what="the worker busy (loading or evaluating the prompt)")
        app.send_signal(signal.SIGKILL)
        app.wait(5)
        t0 = time.monotonic()
        wait_until(lambda: not any(alive(w) for w in workers), timeout=1.0,
                   what="the worker gone")
        assert time.monotonic() - t0 <= 1.0
    finally:
        if app.poll() is None:
            app.kill()
    assert sys.platform == "linux"


def test_a_question_that_is_not_utf8_is_one_line() -> None:
    import subprocess

    from tests.helpers import BIN

    for args, stdin in (([b"\xff\xfe hi"], b""), ([b"-"], b"\xff\xfe")):
        out = subprocess.run([str(BIN / "tramontane").encode(), b"chat", b"-m", b"smollm2", *args],
                             input=stdin, capture_output=True, timeout=60)
        err = out.stderr.decode()
        assert out.returncode == 1 and "not UTF-8" in err and "Traceback" not in err


def test_complete_at_the_top_of_an_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.py"
    empty.write_text("")
    out = tramontane("complete", str(empty), "--line", "1", "--col", "1", "-m", "smollm2",
                     "--max-tokens", "4")
    assert out.returncode == 0, out.stderr
    assert "AssertionError" not in out.stderr


def test_config_values_of_the_wrong_type_are_named_and_defaulted(home: Path) -> None:
    config = home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('[plugins]\ndisabled = 5\n\n[params]\ntemperature = "hot"\ntop_k = 7\n')
    out = tramontane("models", "fit", "mistral-7b-instruct", "--quant", "Q4_K_M")
    assert out.returncode == 0, out.stderr
    chat = tramontane("chat", "-m", "smollm2", "--max-tokens", "2", "hi")
    assert chat.returncode == 0, chat.stderr
    assert "line 2: [plugins] disabled should be a list" in chat.stderr
    assert "line 5: [params] temperature should be a number" in chat.stderr
    ctx = AppContext()
    assert ctx.cfg.get("params", "top_k") == 7 and ctx.cfg.get("params", "temperature") == 0.7


def test_saving_a_setting_keeps_the_link_the_mode_and_a_broken_file(home: Path,
                                                                    tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "tramontane.toml"
    real.parent.mkdir()
    real.write_text("# mine\n[ui]\ntheme = \"nord\"\n")
    real.chmod(0o600)
    config = home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.symlink_to(real)
    assert tramontane("models", "use", "smollm2").returncode == 0
    assert config.is_symlink() and "# mine" in real.read_text()
    assert 'model = "smollm2-135m-instruct"' in real.read_text()
    assert (real.stat().st_mode & 0o777) == 0o600
    real.write_text("[chat\nmodel = 1\n")
    broken = real.read_text()
    out = tramontane("models", "use", "smollm2")
    assert out.returncode == 1 and "line 1" in out.stderr and "Traceback" not in out.stderr
    assert real.read_text() == broken


def test_an_export_never_replaces_the_history(home: Path) -> None:
    ctx = AppContext()
    session = ChatLibrary(ctx, ScriptedBackend()).new()
    asyncio.run(_drain(session.send("Keep me.")))
    db = home / "data" / "history.db"
    ctx.close()
    out = tramontane("history", "export", str(session.chat_id), "-o", str(db))
    assert out.returncode == 1 and "own data" in out.stderr
    kept = AppContext().store.messages(session.chat_id)
    assert [m.content for m in kept][0] == "Keep me."
    missing = tramontane("history", "export", str(session.chat_id), "-o",
                         str(home / "no" / "such" / "dir" / "x.md"))
    assert missing.returncode == 1 and "no folder" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_history_search_takes_percent_and_underscore_literally() -> None:
    ctx = AppContext()
    library = ChatLibrary(ctx, ScriptedBackend())
    a = library.new()
    ctx.store.update_chat(a.chat_id, title="Raise 50% now")
    b = library.new()
    ctx.store.update_chat(b.chat_id, title="Raise 500 now")
    c = library.new()
    ctx.store.update_chat(c.chat_id, title="snake_case names")
    d = library.new()
    ctx.store.update_chat(d.chat_id, title="snakeXcase names")
    assert [ch.id for ch in library.chats("50%")] == [a.chat_id]
    assert [ch.id for ch in library.chats("snake_case")] == [c.chat_id]


def test_a_home_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    env = {"TRAMONTANE_HOME": "/proc/no-such-home"}
    assert tramontane("--version", env=env).returncode == 0
    listing = tramontane("history", "list", env=env)
    assert listing.returncode == 1 and "Traceback" not in listing.stderr
    assert len(listing.stderr.strip().splitlines()) == 1
    fit = tramontane("models", "fit", "mistral-7b-instruct", "--quant", "Q4_K_M", env=env)
    assert fit.returncode == 0 and "fits" in fit.stdout


def test_a_start_that_fails_leaves_no_untitled_chat(home: Path, tmp_path: Path) -> None:
    from tests.helpers import db_rows

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\3\0\0\0" + b"\0" * 16 + b"\xff" * 64)
    out = tramontane("chat", "-m", str(bad), "hello")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    db = home / "data" / "history.db"
    assert not db.exists() or db_rows(db, "SELECT COUNT(*) FROM chats") == [(0,)]


def test_the_worker_log_is_kept_bounded(tmp_path: Path) -> None:
    from app.engine.llama.process import LOG_LIMIT, rotate_log

    log = tmp_path / "worker.log"
    log.write_bytes(b"x" * (LOG_LIMIT + 1))
    rotate_log(str(log))
    assert not log.exists() and (tmp_path / "worker.log.1").stat().st_size == LOG_LIMIT + 1
    log.write_text("small")
    rotate_log(str(log))
    assert log.read_text() == "small"


async def test_a_refused_file_keeps_the_typed_question(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from app.plugins.manager import reset_host
    from tests.helpers import make_app, send, settle, views

    monkeypatch.setenv("TRAMONTANE_PLUGINS", "tramontane-files")
    monkeypatch.chdir(tmp_path)
    reset_host()
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    app = make_app(ScriptedBackend())
    async with app.run_test() as pilot:
        await send(pilot, "/file photo.png what is this?")
        from app.ui.tui.prompt import PromptBox

        await settle(pilot, lambda: any("binary" in n.message for n in app._notifications),
                         what="the refusal")
        assert app.query_one(PromptBox).text == "/file photo.png what is this?"
        assert views(app) == []
