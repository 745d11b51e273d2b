"""`models search` and pulls from the hub, against the local hub fixture (its search API, file
lists with LFS metadata, range reads): nothing reaches the network."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from app.models import starters
from app.session.context import AppContext
from app.session.hub_search import search
from app.session.models import ModelManager
from tests.fixtures.hub_server import HubServer
from tests.helpers import RECORDED, tramontane

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"


@pytest.fixture
def hub_server(smollm2: Path, tmp_path: Path) -> HubServer:
    q8 = tmp_path / "q8.gguf"
    shutil.copyfile(smollm2, q8)
    files = {f"{SMOL}/smollm2-135m-instruct-q4_1.gguf": smollm2,
             f"{SMOL}/smollm2-135m-instruct-q8_0.gguf": q8,
             "someone/tiny-chat-GGUF/tiny-chat.Q4_K_M.gguf": smollm2,
             "someone/tiny-chat-GGUF/README.md": smollm2}
    server = HubServer(files)
    server.downloads = {SMOL: 5000, "someone/tiny-chat-GGUF": 10}
    return server


def _manager(endpoint: str) -> ModelManager:
    return ModelManager(AppContext(), endpoint=endpoint, speed=RECORDED)


def test_a_server_that_ignores_ranges_is_one_line_and_not_a_download(
        hub_server: HubServer, home: Path, qwen_file: Path) -> None:
    """A header past the first read needs a range from the middle of the file; a server that
    answers with the whole file instead is named in one line, and the reply is not read on."""
    hub_server.files["someone/qwen-GGUF/qwen.Q4_K_M.gguf"] = qwen_file
    hub_server.ranges = False
    with hub_server:
        out = tramontane("models", "search", "qwen", env={"HF_ENDPOINT": hub_server.url})
        assert out.returncode == 1 and "does not answer range requests" in out.stderr
        assert "left out someone/qwen-GGUF" in out.stderr  # the only match: nothing to rank
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
        assert hub_server.served_bytes < qwen_file.stat().st_size  # not the whole file read


def test_a_repository_whose_header_is_unreadable_is_left_out_with_a_note(
        hub_server: HubServer, home: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.gguf"
    damaged.write_bytes(b"<html>not a model</html>" * 100)
    hub_server.files["someone/damaged-GGUF/damaged.Q4_K_M.gguf"] = damaged
    hub_server.downloads["someone/damaged-GGUF"] = 10**6  # first in the hub's answer
    with hub_server:
        found = search(_manager(hub_server.url), "GGUF", "chat")
    assert {r.repo for r in found.rows} == {SMOL, "someone/tiny-chat-GGUF"}
    (unread,) = found.unread
    assert unread.startswith("someone/damaged-GGUF: ") and "not a GGUF" in unread


def test_search_ranks_the_hubs_files_with_fit_and_speed(hub_server: HubServer,
                                                        home: Path) -> None:
    with hub_server:
        manager = _manager(hub_server.url)
        found = search(manager, "smollm2 instruct", "chat")
        assert [r.quant for r in found.rows] == ["Q8_0", "Q4_1"]  # the better quant first
        q4 = next(r for r in found.rows if r.quant == "Q4_1")
        verdict, speed = manager.file_figures(starters.smollm2_path())  # type: ignore[arg-type]
        assert q4.fits == verdict.fits and q4.needs == verdict.estimate.total
        assert q4.decode_tps == round(speed.decode_tps, 1)  # as for the file on disk
        assert q4.licence == "apache-2.0" and not q4.gated and q4.max_context >= 2048
        assert found.headers_read == 1 and 0 < found.bytes_read <= 2 << 20
        again = search(manager, "smollm2 instruct", "chat")
        assert again.bytes_read == 0  # kept: nothing read twice
        assert [r.ref for r in search(manager, "nothing like it").rows] == []


def test_the_search_command_and_pulling_what_it_found(hub_server: HubServer, home: Path,
                                                      smollm2: Path) -> None:
    with hub_server:
        env = {"HF_ENDPOINT": hub_server.url}
        out = tramontane("models", "search", "tiny", "chat", "--json", env=env)
        assert out.returncode == 0, out.stderr
        (row,) = json.loads(out.stdout)["rows"]
        assert row["ref"] == "someone/tiny-chat-GGUF:tiny-chat.Q4_K_M.gguf"
        pulled = tramontane("models", "pull", row["ref"], env=env)
        assert pulled.returncode == 0, pulled.stderr
        assert (home / "data" / "models" / "tiny-chat.Q4_K_M.gguf").read_bytes() == \
            smollm2.read_bytes()  # verified against the hub's LFS sha256
        missing = tramontane("models", "pull", "someone/tiny-chat-GGUF:Q2_K", env=env)
        assert missing.returncode == 1 and "tiny-chat.Q4_K_M.gguf" in missing.stderr
        text = tramontane("models", "search", "smollm2", env=env)
        assert "SmolLM2-135M-Instruct-GGUF:smollm2-135m-instruct-q8_0.gguf" in text.stdout
    kept = tramontane("models", "search", "smollm2", env=env)  # the hub is gone now
    assert kept.returncode == 0 and "cannot be reached" in kept.stderr
    assert "smollm2-135m-instruct-q8_0.gguf" in kept.stdout  # from what was kept
    offline = tramontane("models", "search", "qwen", env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert offline.returncode == 1 and "Could not search the Hugging Face hub" in offline.stderr
    assert "Traceback" not in offline.stderr


async def test_the_models_screen_searches_the_hub(hub_server: HubServer, home: Path) -> None:
    from textual.widgets import DataTable, Input

    from tests.fixtures.scripted import ScriptedBackend
    from tests.helpers import make_app, settle

    with hub_server:
        app = make_app(ScriptedBackend())
        app.hub_endpoint = hub_server.url
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.press("f5")
            await settle(pilot, lambda: bool(app.screen.query("#hub-search")))
            await pilot.press("slash")
            box = app.screen.query_one("#hub-search", Input)
            box.value = "smollm2"
            await pilot.press("enter")
            table = app.screen.query_one(DataTable)
            await settle(pilot, lambda: table.row_count == 2
                         and "hub" in str(table.get_row_at(0)[-1]), what="the hub's rows")
            assert str(table.get_row_at(0)[0]).startswith(SMOL + ":")
    assert os.environ.get("HF_ENDPOINT") is None


def test_a_model_in_parts_is_pulled_resumed_verified_and_loaded(tmp_path: Path, home: Path,
                                                               smollm2: Path) -> None:
    from tests.helpers import split_gguf

    made = tmp_path / "made"
    made.mkdir()
    parts = split_gguf(smollm2, made, "smol-split", 3)
    repo = "someone/smol-split-GGUF"
    with HubServer({f"{repo}/{p.name}": p for p in parts}) as server:
        env = {"HF_ENDPOINT": server.url}
        server.cut_first_get = True  # the first part's download breaks halfway
        pulled = tramontane("models", "pull", f"{repo}:{parts[0].name}", env=env)
        assert pulled.returncode == 0, pulled.stderr
        ranges = [r for m, path, r in server.requests if m == "GET" and "00001" in path and r]
        assert ranges and ranges[-1] != "bytes=0-"  # resumed from what it had, not anew
        assert pulled.stderr.count("verifying") >= 3  # each part checked
    models = home / "data" / "models"
    for part in parts:
        assert (models / part.name).read_bytes() == part.read_bytes()
    listed = json.loads(tramontane("models", "list", "--json").stdout)["models"]
    (row,) = [r for r in listed if r["name"] == "smol-split"]  # one model, not three
    assert row["size"] == sum(p.stat().st_size for p in parts) and row["fit"]["verdict"]
    said = tramontane("chat", "-m", "smol-split", "--max-tokens", "4", "Hi")
    assert said.returncode == 0 and said.stdout.strip(), said.stderr  # llama.cpp loads it
    gone = tramontane("models", "rm", "smol-split", "--yes")
    assert gone.returncode == 0, gone.stderr
    assert not list(models.glob("smol-split-*"))
