from pathlib import Path

from app.config import load_config, ollama_host, paths, write_default_config


def test_home_puts_everything_in_one_folder(home: Path) -> None:
    p = paths()
    for folder in (p.config_dir, p.data_dir, p.log_dir, p.models_dir):
        assert home in folder.parents
    assert p.history_db.name == "history.db"


def test_defaults_without_a_file() -> None:
    cfg = load_config()
    assert cfg.warnings == []
    assert cfg.get("params", "max_tokens") == 512


def test_broken_toml_names_file_and_line_and_keeps_defaults() -> None:
    p = paths()
    p.config_dir.mkdir(parents=True)
    p.config_file.write_text('[chat]\nmodel = "x"\n[params\ntemperature = 0.2\n')
    cfg = load_config(p)
    assert len(cfg.warnings) == 1
    assert str(p.config_file) in cfg.warnings[0]
    assert "line 3" in cfg.warnings[0]
    assert cfg.get("params", "temperature") == 0.7


def test_set_keeps_comments() -> None:
    p = paths()
    write_default_config(p)
    with p.config_file.open("a") as fh:
        fh.write("# my own note\n")
    cfg = load_config(p)
    cfg.set("params", "temperature", 0.3)
    text = p.config_file.read_text()
    assert "# my own note" in text and "temperature = 0.3" in text
    assert "0 = as many as the machine has cores" in text
    assert load_config(p).get("params", "temperature") == 0.3


def test_values_merge_over_defaults() -> None:
    p = paths()
    p.config_dir.mkdir(parents=True)
    p.config_file.write_text("[params]\ntop_k = 7\n")
    cfg = load_config(p)
    assert cfg.get("params", "top_k") == 7
    assert cfg.get("params", "top_p") == 0.95


def test_ollama_host_forms(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cfg = load_config()
    assert ollama_host(cfg) == "http://127.0.0.1:11434"
    monkeypatch.setenv("OLLAMA_HOST", "gpu-box")
    assert ollama_host(cfg) == "http://gpu-box:11434"
    monkeypatch.setenv("OLLAMA_HOST", "gpu-box:9000")
    assert ollama_host(cfg) == "http://gpu-box:9000"
    monkeypatch.setenv("OLLAMA_HOST", "https://gpu-box:9000/")
    assert ollama_host(cfg) == "https://gpu-box:9000"
