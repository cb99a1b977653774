"""Configuration is read once, with defaults, and every mistake names the key and the fix."""

from __future__ import annotations

import pytest
from flask import Flask

from flask_consentkit import AlreadyRegisteredError, ConsentConfigError, ConsentKit

from .conftest import SECRET


def build(**config):
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, CONSENTKIT_LEDGER_URL=None)
    app.config.update(config)
    ConsentKit(app)
    return app


def test_defaults_are_filled_in_and_exposed():
    app = build()
    settings = app.extensions["consentkit"].settings
    assert app.config["CONSENTKIT_POLICY_VERSION"] == "1"
    assert app.config["CONSENTKIT_MAX_AGE"] == 15552000
    assert settings.category_keys == (
        "necessary", "functional", "analytics", "performance", "marketing")
    assert settings.cookie_name == "consentkit"
    assert settings.languages == ("az", "en", "ru", "tr")
    assert settings.collection_rules["user_agent"] == "performance"


def test_default_ledger_is_a_sqlite_file_in_the_instance_folder(tmp_path):
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config["SECRET_KEY"] = SECRET
    ConsentKit(app)
    url = app.extensions["consentkit"].settings.ledger_url
    assert url.startswith("sqlite:///") and url.endswith(".sqlite3")
    assert str(tmp_path) in url


def test_init_app_pattern_and_second_registration_refused():
    consent = ConsentKit()
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, CONSENTKIT_LEDGER_URL=None)
    consent.init_app(app)
    assert app.extensions["consentkit"].kit is consent
    with pytest.raises(AlreadyRegisteredError, match="Import and use that instance"):
        ConsentKit(app)
    # the same object serves a second app too
    other = Flask(__name__)
    other.config.update(SECRET_KEY=SECRET, CONSENTKIT_LEDGER_URL=None)
    consent.init_app(other)
    assert "consentkit" in other.extensions


@pytest.mark.parametrize(
    ("config", "key", "hint"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY", "SECRET_KEY"),
        ({"SECRET_KEY": ""}, "SECRET_KEY", "long random value"),
        ({"CONSENTKIT_COOKIES": {"tracking": ["_x"]}}, "CONSENTKIT_COOKIES", "unknown category"),
        ({"CONSENTKIT_COOKIES": {"analytics": "_ga"}}, "CONSENTKIT_COOKIES", "list of strings"),
        ({"CONSENTKIT_COOKIES": {"analytics": ["bad name"]}}, "CONSENTKIT_COOKIES", "valid"),
        ({"CONSENTKIT_CATEGORIES": ["analytics", "marketing"]}, "CONSENTKIT_CATEGORIES",
         "'necessary' is missing"),
        ({"CONSENTKIT_CATEGORIES": []}, "CONSENTKIT_CATEGORIES", "non-empty"),
        ({"CONSENTKIT_CATEGORIES": ["necessary", "necessary"]}, "CONSENTKIT_CATEGORIES",
         "twice"),
        ({"CONSENTKIT_CATEGORIES": ["necessary", "Bad Key"]}, "CONSENTKIT_CATEGORIES",
         "lower-case"),
        ({"CONSENTKIT_PRIVACY_POLICY_URL": "javascript:alert(1)"},
         "CONSENTKIT_PRIVACY_POLICY_URL", "http(s)"),
        ({"CONSENTKIT_PRIVACY_POLICY_URL": "ftp://example.com/p"},
         "CONSENTKIT_PRIVACY_POLICY_URL", "http(s)"),
        ({"CONSENTKIT_SERVICES": [{"name": "GA", "category": "analytics",
                                   "policy_url": "data:text/html,x"}]},
         "CONSENTKIT_SERVICES", "http(s)"),
        ({"CONSENTKIT_SERVICES": [{"name": "GA", "category": "ads"}]},
         "CONSENTKIT_SERVICES", "unknown category"),
        ({"CONSENTKIT_SERVICES": [{"name": "GA", "category": "analytics", "colour": 1}]},
         "CONSENTKIT_SERVICES", "unknown field"),
        ({"CONSENTKIT_MAX_AGE": -1}, "CONSENTKIT_MAX_AGE", "positive"),
        ({"CONSENTKIT_MAX_AGE": 0}, "CONSENTKIT_MAX_AGE", "positive"),
        ({"CONSENTKIT_MAX_AGE": "180 days"}, "CONSENTKIT_MAX_AGE", "whole number"),
        ({"CONSENTKIT_RETENTION_DAYS": -5}, "CONSENTKIT_RETENTION_DAYS", "positive"),
        ({"CONSENTKIT_URL_PREFIX": "consent"}, "CONSENTKIT_URL_PREFIX", "path"),
        ({"CONSENTKIT_AUTO_INJECT": "yes"}, "CONSENTKIT_AUTO_INJECT", "True or False"),
        ({"CONSENTKIT_LEDGER_URL": "ledger.db"}, "CONSENTKIT_LEDGER_URL", "SQLAlchemy URL"),
        ({"CONSENTKIT_COLLECTION_RULES": {"ip": "tracking"}}, "CONSENTKIT_COLLECTION_RULES",
         "unknown category"),
        ({"CONSENTKIT_COLLECTION_RULES": {"mood": "analytics"}}, "CONSENTKIT_COLLECTION_RULES",
         "unknown kind"),
        ({"CONSENTKIT_DEFAULT_LANGUAGE": "de"}, "CONSENTKIT_DEFAULT_LANGUAGE", "not in"),
        ({"CONSENTKIT_LANGUAGES": "en"}, "CONSENTKIT_LANGUAGES", "list of strings"),
        ({"CONSENTKIT_TRUSTED_ORIGINS": ["example.com"]}, "CONSENTKIT_TRUSTED_ORIGINS",
         "not an origin"),
        ({"CONSENTKIT_TRUSTED_ORIGINS": ["https://example.com/path"]},
         "CONSENTKIT_TRUSTED_ORIGINS", "not an origin"),
        ({"CONSENTKIT_POLICY_VERSION": ""}, "CONSENTKIT_POLICY_VERSION", "non-empty"),
        ({"CONSENTKIT_COOKIE_NAME": "a b"}, "CONSENTKIT_COOKIE_NAME", "valid cookie name"),
        ({"CONSENTKIT_GPC_LAST_UPDATE": "yesterday"}, "CONSENTKIT_GPC_LAST_UPDATE", "date"),
        ({"CONSENTKIT_DENIED_STATUS": 42}, "CONSENTKIT_DENIED_STATUS", "status"),
        ({"CONSENTKIT_MAX_AGES": 10}, "CONSENTKIT_MAX_AGES", "spelling"),
    ],
)
def test_bad_configuration_names_the_key_and_the_fix(config, key, hint):
    with pytest.raises(ConsentConfigError) as info:
        build(**config)
    assert info.value.key == key
    assert key in str(info.value)
    assert hint in str(info.value)


def test_categories_may_be_described_and_services_attached():
    app = build(
        CONSENTKIT_CATEGORIES=[
            "necessary",
            {"key": "analytics", "label": {"en": "Statistics", "az": "Statistika"},
             "description": "Counts visits."},
            "stories",
        ],
        CONSENTKIT_COOKIES={"analytics": ["_ga", "_ga_*"]},
        CONSENTKIT_SERVICES=[{"name": "Plausible", "category": "analytics",
                              "purpose": "visit counts", "policy_url": "https://plausible.io/p",
                              "cookies": ["pl_*"]}],
    )
    settings = app.extensions["consentkit"].settings
    assert settings.optional_keys == ("analytics", "stories")
    analytics = settings.category("analytics")
    assert [str(p) for p in analytics.all_cookies()] == ["_ga", "_ga_*", "pl_*"]
    assert analytics.services[0].name == "Plausible"


def test_integer_policy_version_is_accepted_as_text():
    app = build(CONSENTKIT_POLICY_VERSION=3)
    assert app.extensions["consentkit"].settings.policy_version == "3"


def test_host_prefix_renames_the_cookie_and_forces_secure():
    app = build(CONSENTKIT_COOKIE_HOST_PREFIX=True)
    settings = app.extensions["consentkit"].settings
    assert settings.cookie_name == "__Host-consentkit"
    assert settings.cookie_secure is True

