"""The models screen with the pilot: verdicts shown, use for code, delete, pull with progress."""

from __future__ import annotations

import shutil
from pathlib import Path

from textual.widgets import DataTable

from app.models.download import sha256_of
from app.ui.tui.dialogs import ConfirmDialog
from app.ui.tui.models_screen import ModelsScreen
from tests.fixtures.hub_server import HubServer
from tests.fixtures.scripted import ScriptedBackend
from tests.helpers import make_app, settle
from tests.test_models_fit import _catalog_with


async def _open_models(pilot) -> ModelsScreen:  # type: ignore[no-untyped-def]
    """F5, then wait for the table to be filled."""
    app = pilot.app
    await pilot.press("f5")
    await settle(pilot, lambda: isinstance(app.screen, ModelsScreen) and app.screen.rows)
    assert isinstance(app.screen, ModelsScreen)
    return app.screen


def _row_index(screen: ModelsScreen, name: str, quant: str | None = None) -> int:
    return next(i for i, r in enumerate(screen.rows)
                if r.name == name and (quant is None or r.quant == quant))


async def test_models_screen_lists_fits_and_sets_defaults(home: Path) -> None:
    app = make_app(ScriptedBackend())
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await _open_models(pilot)
        table = screen.query_one(DataTable)
        names = {r.name for r in screen.rows}
        assert {"smollm2-135m-instruct", "gemma3-270m", "codestral-22b"} <= names
        q8 = screen.rows[_row_index(screen, "codestral-22b", "Q8_0")]
        assert q8.verdict is not None and not q8.installed
        assert "RAM" in str(screen.query_one("#hardware").render())
        table.move_cursor(row=_row_index(screen, "gemma3-270m"))
        await pilot.press("k")
        await pilot.pause()
        assert 'model = "gemma3-270m"' in (home / "config" / "config.toml").read_text()
        await pilot.press("escape")
        await settle(pilot, lambda: not isinstance(app.screen, ModelsScreen))


async def test_delete_own_model_after_confirmation(home: Path, smollm2: Path) -> None:
    models = home / "data" / "models"
    models.mkdir(parents=True)
    mine = models / "my-model.gguf"
    shutil.copyfile(smollm2, mine)
    app = make_app(ScriptedBackend())
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await _open_models(pilot)
        screen.query_one(DataTable).move_cursor(row=_row_index(screen, "my-model"))
        await pilot.press("d")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.click("#yes")
        await settle(pilot, lambda: not mine.exists())
        await settle(pilot, lambda: all(r.name != "my-model" for r in screen.rows))


async def test_pull_with_progress(home: Path, smollm2: Path) -> None:
    _catalog_with(home, smollm2, sha256_of(smollm2))
    app = make_app(ScriptedBackend())
    with HubServer({"test-org/tiny/tiny-test.Q4_1.gguf": smollm2}) as hub:
        app.hub_endpoint = hub.url
        async with app.run_test(size=(140, 40)) as pilot:
            screen = await _open_models(pilot)
            screen.query_one(DataTable).move_cursor(row=_row_index(screen, "tiny-test"))
            await pilot.press("p")
            target = home / "data" / "models" / "tiny-test.Q4_1.gguf"
            await settle(pilot, lambda: any(r.name == "tiny-test.Q4_1" and r.installed
                                                for r in screen.rows), what="the pulled model")
            assert target.read_bytes() == smollm2.read_bytes()
            assert "Downloaded" in str(screen.query_one("#pull-status").render())


async def test_highlighted_mixture_of_experts_explained(home: Path) -> None:
    """Moving to Mixtral says, under the table, what its memory and its speed are."""
    app = make_app(ScriptedBackend())
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await _open_models(pilot)
        table = screen.query_one(DataTable)
        table.move_cursor(row=_row_index(screen, "mixtral-8x7b-instruct", "Q8_0"))
        detail = screen.query_one("#model-detail")
        await settle(pilot, lambda: "Mixture of experts" in str(detail.render()))
        text = str(detail.render())
        assert "47 B in memory, ~13 B read per token" in text
        assert "does not fit" not in text or "RAM gives" in text
        table.move_cursor(row=_row_index(screen, "mistral-nemo-12b-instruct", "Q4_K_M"))
        await settle(pilot, lambda: "Context: 4k: KV 640 MiB" in str(detail.render()))
        assert "128k: KV 20.00 GiB" in str(detail.render())
        assert "Mixture" not in str(detail.render())
