"""The table of configuration keys: every key parsed, refused when wrong, and documented.

The README's configuration table is generated from ``config.KEYS`` by
``scripts/config_table.py``; a test here fails when the two part.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Config, Flask

from flask_consentkit import ConsentConfigError, ConsentKit, configkeys
from flask_consentkit.config import (
    _PARSE_ORDER,
    KEYS,
    Key,
    Settings,
    _in_parse_order,
    load_settings,
)

from .conftest import ROOT, SECRET

spec = importlib.util.spec_from_file_location("config_table", ROOT / "scripts" / "config_table.py")
assert spec and spec.loader
config_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(config_table)

NAMES = [key.name for key in KEYS]
NAME = re.compile(r"\bCONSENTKIT_[A-Z0-9_]*[A-Z0-9]\b")

#: one value each key refuses on its own (every other key at its default)
BAD: dict[str, Any] = {
    configkeys.POLICY_VERSION: "",
    configkeys.POLICY_EFFECTIVE: "soon",
    configkeys.POLICY_CHANGES: 42,
    configkeys.CONTROLLER: "Example Stories LLC",
    configkeys.MIN_AGE: 0,
    configkeys.CATEGORIES: [],
    configkeys.COOKIES: {"tracking": ["_x"]},
    configkeys.SERVICES: "youtube",
    configkeys.CSP: "strict",
    configkeys.UNDECLARED_VENDORS: "allow",
    configkeys.REGIONS: "EU",
    configkeys.COOKIE_NAME: "a b",
    configkeys.COOKIE_SECURE: "yes",
    configkeys.COOKIE_HOST_PREFIX: "yes",
    configkeys.COOKIE_DOMAINS: "example.com",
    configkeys.COOKIE_PATHS: ["app"],
    configkeys.CONSENT_MODE: {"analytics": ["ad_magic"]},
    configkeys.MAX_AGE: "180 days",
    configkeys.URL_PREFIX: "consent",
    configkeys.AUTO_INJECT: "yes",
    configkeys.HONOR_GPC: 1,
    configkeys.HONOR_DNT: None,
    configkeys.GPC_LAST_UPDATE: "yesterday",
    configkeys.LEDGER_URL: "ledger.db",
    configkeys.LEDGER_TIMEOUT: 0,
    configkeys.RETENTION_DAYS: -5,
    configkeys.SIGNING_KEY: 42,
    configkeys.SIGNING_OLD_KEYS: "old.key.pub",
    configkeys.GEOIP_DATABASE: "",
    configkeys.GEOIP_ACCOUNT_ID: "abc",
    configkeys.GEOIP_LICENSE_KEY: "",
    configkeys.GEOIP_HOST: "https://geoip.maxmind.com",
    configkeys.GEOIP_TIMEOUT: 0,
    configkeys.UA_PARSER: "fast",
    configkeys.ANONYMIZE_IP: 1,
    configkeys.COLLECTION_RULES: {"mood": "analytics"},
    configkeys.LANGUAGES: "en",
    configkeys.DEFAULT_LANGUAGE: "de",
    configkeys.TRUSTED_ORIGINS: ["example.com"],
    configkeys.PRIVACY_POLICY_URL: "javascript:alert(1)",
    configkeys.DENIED_STATUS: 42,
    configkeys.MAX_BODY: 0,
    configkeys.RATELIMIT: "lots",
    configkeys.RATELIMIT_STORAGE_URL: "memcached://localhost",
}


def build(app: Flask | None = None, **config: Any) -> Flask:
    app = app or Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, CONSENTKIT_LEDGER_URL=None)
    app.config.update(config)
    ConsentKit(app)
    return app


def test_readme_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert config_table.section(readme).strip() == config_table.table().strip(), (
        "README.md's configuration table differs from flask_consentkit.config.KEYS; "
        "run `python scripts/config_table.py --write` and commit README.md")


def test_every_key_has_one_line_of_doc_and_a_default_cell() -> None:
    for key in KEYS:
        assert key.doc.strip() and "\n" not in key.doc and "|" not in key.doc, key.name
        assert config_table.default_cell(key).strip(), key.name
    names = [cell for row in config_table.rows() for cell in re.findall(r"`(\w+)`", row[0])]
    assert names == NAMES  # every key has its row, in the table's order


def test_the_table_and_the_name_constants_agree() -> None:
    assert len(set(NAMES)) == len(NAMES), "a key is listed twice"
    constants = {v for k, v in vars(configkeys).items() if k.isupper() and k != "PREFIX"}
    assert constants == set(NAMES)
    assert all(name.startswith(configkeys.PREFIX) for name in NAMES)


def test_every_consentkit_name_in_the_package_is_a_key() -> None:
    """A key read, or named in a message, anywhere in the package is in the table."""
    package = ROOT / "flask_consentkit"
    found: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        for name in NAME.findall(path.read_text(encoding="utf-8")):
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    unknown = {name: sorted(paths) for name, paths in found.items() if name not in NAMES}
    assert not unknown, f"not in config.KEYS: {unknown}"


def test_load_settings_reads_exactly_the_keys_of_the_table() -> None:
    read: set[str] = set()

    class RecordingConfig(Config):
        def __getitem__(self, key: str) -> Any:
            read.add(key)
            return super().__getitem__(key)

        def get(self, key: str, default: Any = None) -> Any:
            read.add(key)
            return super().get(key, default)

    class RecordingFlask(Flask):
        config_class = RecordingConfig

    app = RecordingFlask(__name__)
    app.config.update(SECRET_KEY=SECRET, CONSENTKIT_LEDGER_URL=None)
    load_settings(app)
    assert {k for k in read if k.startswith(configkeys.PREFIX)} == set(NAMES)


def test_every_settings_field_comes_from_a_key() -> None:
    fields = {f.name for f in dataclasses.fields(Settings)}
    from_keys = {key.field for key in KEYS if key.in_settings}
    assert from_keys <= fields
    # categories are assembled from CATEGORIES, COOKIES and SERVICES; extra is the app's own
    assert fields - from_keys == {"categories", "extra"}


def test_each_key_is_parsed_after_the_keys_it_needs() -> None:
    assert sorted(k.name for k in _PARSE_ORDER) == sorted(NAMES)
    position = {key.name: i for i, key in enumerate(_PARSE_ORDER)}
    for key in KEYS:
        for need in key.needs:
            assert position[need] < position[key.name], (key.name, need)


def test_keys_that_need_each_other_are_a_programming_error() -> None:
    def parse(key: str, value: Any, parsed: Any) -> Any:
        return value

    a = Key("CONSENTKIT_A", None, parse, "a", needs=("CONSENTKIT_B",))
    b = Key("CONSENTKIT_B", None, parse, "b", needs=("CONSENTKIT_A",))
    with pytest.raises(RuntimeError, match="need each other"):
        _in_parse_order((a, b))


def test_there_is_a_bad_value_for_every_key() -> None:
    assert set(BAD) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_a_bad_value_is_refused_naming_its_key(name: str) -> None:
    with pytest.raises(ConsentConfigError) as info:
        build(**{name: BAD[name]})
    assert info.value.key == name
    assert str(info.value).startswith(f"{name}: ")


def test_every_default_is_filled_in(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config["SECRET_KEY"] = SECRET
    load_settings(app)
    for key in KEYS:
        assert app.config[key.name] == key.default, key.name


def test_the_script_needs_both_markers() -> None:
    with pytest.raises(ValueError, match="config-table:start"):
        config_table.with_table("# README\n\n| key | default | meaning |\n")
    text = f"a\n{config_table.START}\nold\n{config_table.END}\nb\n"
    assert config_table.with_table(text) == (
        f"a\n{config_table.START}\n\n{config_table.table()}\n{config_table.END}\nb\n")
