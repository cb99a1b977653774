"""The README's quick start runs and does what its comments say."""

from __future__ import annotations

import importlib.util

from .conftest import ROOT


def test_quick_start_works(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    code = text.split("## Quick start", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "quickstart.py"
    path.write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = importlib.util.spec_from_file_location("quickstart", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app = module.app
    client = app.test_client()

    page = client.get("/").get_data(as_text=True)
    assert '<script type="text/plain" data-consent="analytics"' in page
    assert 'id="consentkit-banner"' in page  # the banner was injected
    assert client.post("/beacon").status_code == 204

    client.post("/consent/", json={"action": "accept_all"},
                headers={"Origin": "http://localhost"})
    page = client.get("/").get_data(as_text=True)
    assert 'type="text/plain" data-consent="analytics"' not in page
    assert 'src="/a.js"' in page
    response = client.post("/beacon")
    assert response.status_code == 200 and response.get_json() == {"country": None}
