"""`bicross serve` parses its options into ServiceSettings and hands the app to uvicorn."""

from __future__ import annotations

import uvicorn
from cli_runner import run


def test_serve_builds_the_app_and_runs_uvicorn(monkeypatch, capsys, tiny_collection, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("k1\n")
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(app=app, **options))
    status, _, err = run(monkeypatch, capsys, "serve", tiny_collection, "--port", "8123", "--api-key-file", keys,
                         "--timeout", "5", "--max-queue", "3", "--no-rerank", "--cors-origin", "http://x.test")
    assert status == 0, err
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123
    service = seen["app"].state.service
    assert list(service.collections) == ["tiny"] and service.keys.configured
    assert service.settings.timeout_seconds == 5 and service.settings.max_queue == 3
    assert service.settings.reranker is None and service.settings.cors_origins == ("http://x.test",)
    assert "serving tiny on http://127.0.0.1:8123" in err


def test_serve_refuses_a_folder_that_is_not_a_collection(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: None)
    status, _, err = run(monkeypatch, capsys, "serve", tmp_path)
    assert status == 2 and "not a bicross collection" in err


def test_importing_the_service_loads_no_web_framework_and_no_model():
    import subprocess
    import sys

    code = ("import sys, bicross.service as s; s.ServiceSettings(); "
            "print(any(m in sys.modules for m in ('fastapi', 'uvicorn', 'torch', 'prometheus_client')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_serve_reads_the_shadow_pipeline_share_and_log(monkeypatch, capsys, tiny_collection, tmp_path):
    config = tmp_path / "shadow.toml"
    config.write_text('first_stage = "bm25"\nrerank = false\ntop_k = 40\n')
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(app=app, **options))
    status, _, err = run(monkeypatch, capsys, "serve", tiny_collection, "--shadow-config", config, "--shadow-share",
                         "0.25", "--shadow-log", tmp_path / "shadow.jsonl", "--shadow-max-queued", "3")
    assert status == 0, err
    settings = seen["app"].state.service.settings
    assert settings.shadow_pipeline.config.first_stage.kind == "bm25" and settings.shadow_pipeline.rerank is False
    assert settings.shadow_pipeline.config.top_k == 40 and settings.shadow_share == 0.25
    assert settings.shadow_log == tmp_path / "shadow.jsonl" and settings.shadow_max_queued == 3
    status, _, err = run(monkeypatch, capsys, "serve", tiny_collection, "--shadow-config", tmp_path / "none.toml")
    assert status == 2 and "cannot read the shadow config" in err
