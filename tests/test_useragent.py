"""User-agent parsing on the uap-core corpus, with both parsers."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from flask_consentkit.collect.useragent import (
    MAX_LENGTH,
    UserAgentParser,
    fast_parser_available,
)

PARSERS = ["ua-parser", "user-agents"]


@cache
def corpus(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        cases: list[dict[str, Any]] = yaml.load(f, Loader=yaml.CSafeLoader)["test_cases"]
    return cases


@cache
def parsed(name: str, path: Path) -> list[Any]:
    parser = UserAgentParser(name)
    return [parser.uncached(c["user_agent_string"]) for c in corpus(path)]


@pytest.fixture
def ua_corpus(testdata: Path) -> Path:
    return testdata / "uap-core_test_ua.yaml"


@pytest.mark.parametrize("name", PARSERS)
def test_browser_family_agrees_with_the_corpus(ua_corpus: Path, name: str) -> None:
    cases = corpus(ua_corpus)
    assert len(cases) == 1601
    results = parsed(name, ua_corpus)
    agree = sum((r.browser or "Other") == c["family"] for r, c in zip(results, cases, strict=True))
    assert agree / len(cases) >= 0.99, f"{name}: {agree}/{len(cases)}"


@pytest.mark.parametrize("name", PARSERS)
def test_browser_version_agrees_with_the_corpus(ua_corpus: Path, name: str) -> None:
    cases = corpus(ua_corpus)
    agree = 0
    for r, c in zip(parsed(name, ua_corpus), cases, strict=True):
        expected = ".".join(str(c[k]) for k in ("major", "minor", "patch") if c.get(k)) or None
        agree += r.browser_version == expected or bool(
            expected and r.browser_version and r.browser_version.startswith(expected))
    assert agree / len(cases) >= 0.99


def test_both_parsers_give_the_same_answers(ua_corpus: Path) -> None:
    """Browser, OS and versions agree everywhere; device types on ≥ 99.5 %.

    The few device differences are crawler strings that ua-parser's native
    resolver recognises as bots and the pure-Python path does not.
    """
    fast, slow = parsed("ua-parser", ua_corpus), parsed("user-agents", ua_corpus)
    differ = [(a, b) for a, b in zip(fast, slow, strict=True) if a != b]
    for a, b in differ:
        assert (a.browser, a.browser_version, a.os, a.os_version) == (
            b.browser, b.browser_version, b.os, b.os_version)
        assert a.device_type == "bot"
    assert len(differ) / len(fast) <= 0.005


SAMPLES = {
    "mobile": [
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.6099.144 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Android 14; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0",
    ],
    "tablet": [
        "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/16.6 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/119.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Linux; U; Android 4.0.3; en-us; KFTT Build/IML74K) AppleWebKit/535.19 "
        "(KHTML, like Gecko) Silk/3.4 Mobile Safari/535.19 Silk-Accelerated=true",
    ],
    "desktop": [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/17.1 Safari/605.1.15",
        "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
    ],
    "bot": [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, "
        "like Gecko) Chrome/120.0.6099.71 Mobile Safari/537.36 (compatible; Googlebot/2.1; "
        "+http://www.google.com/bot.html)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    ],
}


@pytest.mark.parametrize("name", PARSERS)
@pytest.mark.parametrize(("device_type", "ua"),
                         [(k, ua) for k, uas in SAMPLES.items() for ua in uas])
def test_device_type(name: str, device_type: str, ua: str) -> None:
    assert UserAgentParser(name).parse(ua).device_type == device_type


def test_fields(testdata: Path) -> None:
    info = UserAgentParser().parse(SAMPLES["desktop"][0])
    assert (info.browser, info.browser_version, info.os, info.os_version) == (
        "Chrome", "120.0.0", "Windows", "10")


def test_unknown_and_empty_agents() -> None:
    parser = UserAgentParser()
    empty = parser.parse("")
    assert empty.browser is None and empty.device_type is None
    assert parser.parse(None).browser is None
    odd = parser.parse("zzz")
    assert odd.browser is None and odd.os is None and odd.device_type == "other"


def test_long_header_is_cut_before_parsing() -> None:
    parser = UserAgentParser(cache_size=8)
    long = SAMPLES["desktop"][0] + " x" * 20000
    assert parser.parse(long).browser == "Chrome"
    assert parser.parse(long[: MAX_LENGTH + 5]).browser == "Chrome"
    assert parser.cache_info().hits == 1  # both cut to the same key


def test_cache_is_bounded() -> None:
    parser = UserAgentParser(cache_size=3)
    for ua in SAMPLES["mobile"]:
        parser.parse(ua)
    parser.parse(SAMPLES["mobile"][-1])
    info = parser.cache_info()
    assert info.currsize == 3 and info.hits == 1


def test_auto_prefers_the_native_parser() -> None:
    expected = "ua-parser" if fast_parser_available() else "user-agents"
    assert UserAgentParser("auto").name == expected


def test_unknown_parser_name() -> None:
    with pytest.raises(ValueError, match="ua-parser"):
        UserAgentParser("fastest")
