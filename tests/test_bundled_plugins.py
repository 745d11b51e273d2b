"""The plugins in plugins/, as `make install` installs them: tramontane-files (/file, /dir)
and tramontane-repo-context (completion context from the same git repository)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from app.plugins.manager import get_host, reset_host
from app.session.context import AppContext
from app.session.library import ChatLibrary
from app.session.slash import ChatPrompt
from tests.fixtures.scripted import ScriptedBackend
from tests.helpers import tramontane

tramontane_files = pytest.importorskip("tramontane_files", reason="run `make install`")
repo_context = pytest.importorskip("tramontane_repo_context", reason="run `make install`")


@pytest.fixture
def chat(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TRAMONTANE_PLUGINS", "tramontane-files")
    reset_host()
    backend = ScriptedBackend()
    session = ChatLibrary(AppContext(), backend).new()
    return ChatPrompt(get_host(), cwd=str(tmp_path)), session, backend


async def ask(chat, text: str):  # type: ignore[no-untyped-def]
    prompt, session, backend = chat
    prepared = await prompt.prepare(text, session)
    if prepared.content is not None:
        async for _ in session.send(prepared.content, title=prepared.question):
            pass
    return prepared


async def test_file_attaches_text_with_its_language(chat, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "notes dir").mkdir()
    (tmp_path / "notes dir" / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    prepared = await ask(chat, '/file "notes dir/calc.py" What does add do?')
    assert prepared.question == "What does add do?"
    sent = chat[2].requests[-1][0][-1].content
    assert sent.startswith("notes dir/calc.py:\n```python\ndef add(a, b):")
    assert sent.endswith("What does add do?")


async def test_file_alone_waits_for_the_next_message(chat, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.md").write_text("# Title\nbody text\n")
    prepared = await ask(chat, "/file a.md")
    assert prepared.content is None and "Attached a.md" in prepared.notices[-1]
    assert not chat[2].requests
    await ask(chat, "Summarise it.")
    assert "body text" in chat[2].requests[-1][0][-1].content


@pytest.mark.parametrize("name, data, words", [
    ("big.txt", b"x" * 100_001, "attaches up to 100 kB"),
    ("image.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "binary file"),
    ("latin1.txt", "café".encode("latin-1"), "not UTF-8"),
])
async def test_file_refuses_what_it_cannot_attach(chat, tmp_path: Path, name: str, data: bytes,  # type: ignore[no-untyped-def]
                                                  words: str) -> None:
    (tmp_path / name).write_bytes(data)
    prepared = await ask(chat, f"/file {name} explain")
    assert prepared.content is None
    assert words in prepared.notices[0] and "Nothing was sent." in prepared.notices[0]
    assert not chat[2].requests and not chat[1].attachments


async def test_file_missing_and_folder(chat, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert "There is no file at nope.txt" in (await ask(chat, "/file nope.txt")).notices[0]
    (tmp_path / "src").mkdir()
    assert "/dir src" in (await ask(chat, "/file src")).notices[0]


async def test_dir_attaches_tracked_text_files_and_names_the_rest(chat, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo = tmp_path / "proj"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "one.py").write_text("ONE = 1\n")
    (repo / "README.md").write_text("# Proj\n")
    (repo / "logo.png").write_bytes(b"\x89PNG\0\0")
    (repo / "ignored.log").write_text("secret log\n")
    (repo / ".gitignore").write_text("*.log\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    prepared = await ask(chat, "/dir proj What is here?")
    sent = chat[2].requests[-1][0][-1].content
    assert "proj/pkg/one.py:\n```python\nONE = 1" in sent and "proj/README.md:" in sent
    assert "secret log" not in sent and "PNG" not in sent
    assert any("proj/logo.png" in n for n in prepared.notices)


# -- repo context -----------------------------------------------------------------------------


def git_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def test_ring_keeps_chunks_of_other_files_in_the_same_repository(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    other = git_repo(tmp_path / "other")
    ring = repo_context.Ring()
    helpers = "\n".join(f"def helper_{i}(x):\n    return x + {i}" for i in range(50))
    ring.touched(repo / "helpers.py", "opened", helpers)
    ring.touched(other / "far.py", "opened", "A = 1\nB = 2\nC = 3\n")
    ring.touched(repo / "main.py", "opened", "import helpers\nprint(1)\nprint(2)\n")
    chunks = ring.context(repo / "main.py", near="")
    assert [c.path for c in chunks] == ["helpers.py"]  # not itself, not another repository
    assert chunks[0].text.count("\n") == repo_context.CHUNK_LINES - 1
    assert ring.context(tmp_path / "loose.py", near="") == []  # outside any repository


def test_ring_dedups_like_llama_vim(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    ring = repo_context.Ring(size=3)
    text = "\n".join(f"line {i}" for i in range(40))
    ring.touched(repo / "a.py", "opened", text)
    ring.touched(repo / "a.py", "opened", text)  # the same chunk again: still one
    assert len(ring.chunks) == 1
    # a save that changes one line: the new chunk is >90 % like the old, which it replaces
    changed = text.replace("line 20", "line twenty")
    ring.touched(repo / "a.py", "saved", changed)
    assert len(ring.chunks) == 1 and "line twenty" in ring.chunks[0].text
    for name in ("b.py", "c.py", "d.py"):
        ring.touched(repo / name, "opened", f"# {name}\n" + "\n".join(f"{name} {i}" for i in range(9)))
    assert [c.path.name for c in ring.chunks] == ["d.py", "c.py", "b.py"]  # oldest fell out


def test_ring_centres_a_saved_change(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    ring = repo_context.Ring()
    lines = [f"row {i}" for i in range(300)]
    ring.touched(repo / "big.py", "opened", "\n".join(lines))
    lines[200] = "row 200 changed"
    ring.touched(repo / "big.py", "saved", "\n".join(lines))
    newest = ring.chunks[0]
    assert "row 200 changed" in newest.lines and newest.lines[0] == "row 168"


def test_complete_sees_a_changed_file_of_the_same_repository(tmp_path: Path) -> None:
    """The real command: a file changed in the repository before any event reaches the
    completion prompt through `git status`."""
    repo = git_repo(tmp_path / "repo")
    (repo / "helpers.py").write_text("def old():\n    pass\n")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t",
                    "commit", "-qm", "init"], check=True)
    (repo / "helpers.py").write_text("def scale_price(p):\n    return p * 1.2\n\ndef old():\n"
                                     "    pass\n")
    (repo / "main.py").write_text("total = \n")
    args = ["complete", str(repo / "main.py"), "--line", "1", "--col", "9", "--dry-run", "-m",
            "smollm2-135m-instruct"]
    pinned = tramontane(*args, env={"TRAMONTANE_PLUGINS": "tramontane-repo-context"})
    assert pinned.returncode == 0, pinned.stderr
    assert "# helpers.py\n# def scale_price(p):" in pinned.stdout
    assert pinned.stdout.endswith("total =")  # the typed space is the model's to write
    off = tramontane(*args, env={"TRAMONTANE_PLUGINS": ""})
    assert "scale_price" not in off.stdout


async def test_file_too_big_for_the_context_is_not_attached(chat, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """90 kB of text is about 30,000 tokens: more than a 4,096-token chat holds. It is not
    attached (the typed line stays), and nothing is sent."""
    (tmp_path / "log.txt").write_text("a line of log text\n" * 5000)
    prepared = await ask(chat, "/file log.txt What went wrong?")
    assert prepared.content is None and prepared.refused
    assert "more than this chat has room for" in prepared.notices[-1]
    assert "4,096-token context" in prepared.notices[-1]
    assert not chat[2].requests and not chat[1].attachments


async def test_a_chat_recovers_from_an_over_long_message(chat) -> None:  # type: ignore[no-untyped-def]
    """A message saved before the check (or pasted) that is bigger than the context does not
    make every later message fail: the next request sends the recent turns that fit."""
    _, session, backend = chat
    session.store.add_message(session.chat_id, "user", "word " * 40_000)
    session.store.add_message(session.chat_id, "assistant", "That is long.")
    async for _ in session.send("Hello again"):
        pass
    sent = backend.requests[-1][0]
    assert [m.content for m in sent] == ["Hello again"] and session.left_out == 2
