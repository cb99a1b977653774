"""Browser, OS and device type from the ``User-Agent`` header.

Two parsers give the same :class:`UserAgentInfo`:

* ``"ua-parser"`` — ``ua-parser`` 1.x with its native (Rust) resolver when
  ``ua-parser-rs`` is installed (``pip install 'flask-consentkit[fast-ua]'``);
* ``"user-agents"`` — the ``user-agents`` package (pure Python regexes).

Both read the same uap-core rules, and the device type is decided by the same
rules (``user_agents``' ``is_bot`` / ``is_tablet`` / ``is_mobile`` / ``is_pc``)
on both paths. On the uap-core corpus the answers are identical except the
device type of a few crawler strings, which the native resolver recognises as
bots and Python's ``re`` does not. ``"auto"`` picks ``ua-parser`` with its
native resolver when it is installed because it is an order of magnitude
faster (see ``bench/bench_technical.py``). Results are cached in a bounded LRU
cache keyed by the header (first :data:`MAX_LENGTH` characters).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from user_agents.parsers import UserAgent as _UAClassifier
from user_agents.parsers import parse_browser, parse_device, parse_operating_system
from user_agents.parsers import user_agent_parser as _legacy

DeviceType = Literal["desktop", "mobile", "tablet", "bot", "other"]
ParserName = Literal["ua-parser", "user-agents"]

#: Longer headers are cut to this many characters before parsing (no real
#: browser sends more; it bounds the regex work an attacker can cause).
MAX_LENGTH = 512
#: Parsed headers kept per process and parser.
CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class UserAgentInfo:
    """The parts of a ``User-Agent`` header that ``technical_data()`` reports."""

    browser: str | None
    browser_version: str | None
    os: str | None
    os_version: str | None
    device_type: DeviceType | None


EMPTY = UserAgentInfo(None, None, None, None, None)


def fast_parser_available() -> bool:
    """True when ``ua-parser`` 1.x and its native resolver are installed."""
    return (
        importlib.util.find_spec("ua_parser") is not None
        and importlib.util.find_spec("ua_parser_rs") is not None
    )


def _family(value: str | None) -> str | None:
    return None if not value or value == "Other" else value


def _version(*parts: str | None) -> str | None:
    out: list[str] = []
    for part in parts:
        if part is None or part == "":
            break
        out.append(part)
    return ".".join(out) or None


def _device_type(ua: _UAClassifier) -> DeviceType:
    if ua.is_bot:
        return "bot"
    if ua.is_tablet:
        return "tablet"
    if ua.is_mobile:
        return "mobile"
    if ua.is_pc:
        return "desktop"
    return "other"


class _Classified(_UAClassifier):  # type: ignore[misc]
    """``user_agents``' device rules applied to an already parsed header."""

    def __init__(self, ua_string: str, agent: Parts, os_: Parts, device: Parts) -> None:
        self.ua_string = ua_string
        self.browser = parse_browser(*agent[:4])
        self.os = parse_operating_system(*os_[:4])
        self.device = parse_device(*device[:3])


Parts = tuple[str | None, ...]


def _info(header: str, agent: Parts, os_: Parts, device: Parts) -> UserAgentInfo:
    """The answer for one header from the parser's raw parts.

    Versions are joined from the raw strings (``user_agents`` turns "10.00"
    into "10.0"); the device type comes from ``user_agents``' rules.
    """
    return UserAgentInfo(
        browser=_family(agent[0]),
        browser_version=_version(*agent[1:4]),
        os=_family(os_[0]),
        os_version=_version(*os_[1:4]),
        device_type=_device_type(_Classified(header, agent, os_, device)),
    )


_resolver_lock = threading.Lock()


@lru_cache(maxsize=1)
def _ua_parser_resolver() -> Any:
    """ua-parser's best resolver over the built-in rules, built once per process.

    Building it (the native resolver compiles the rule set on first use) costs
    a fraction of a second, so every app in the process shares one.
    """
    import ua_parser

    # no cache inside: ours (in UserAgentParser) keeps finished answers
    return ua_parser.Parser(ua_parser.BestAvailableResolver(ua_parser.load_lazy_builtins()))


def _make_ua_parser() -> Callable[[str], UserAgentInfo]:
    with _resolver_lock:
        parser = _ua_parser_resolver()

    def parse(header: str) -> UserAgentInfo:
        r = parser.parse(header).with_defaults()
        a, o, d = r.user_agent, r.os, r.device
        return _info(header, (a.family, a.major, a.minor, a.patch),
                     (o.family, o.major, o.minor, o.patch), (d.family, d.brand, d.model))

    return parse


def _parse_user_agents(header: str) -> UserAgentInfo:
    # what ``user_agents.parse`` does, keeping the raw version strings
    r = _legacy.Parse(header)
    a, o, d = r["user_agent"], r["os"], r["device"]
    return _info(header, (a["family"], a["major"], a["minor"], a["patch"]),
                 (o["family"], o["major"], o["minor"], o["patch"]),
                 (d["family"], d["brand"], d["model"]))


class UserAgentParser:
    """Parses ``User-Agent`` headers with one of the two parsers, cached.

    :param name: ``"ua-parser"`` or ``"user-agents"``; ``"auto"`` takes
        ``ua-parser`` when its native resolver is installed.
    :param cache_size: parsed headers kept (LRU).
    """

    def __init__(self, name: str = "auto", *, cache_size: int = CACHE_SIZE) -> None:
        if name == "auto":
            name = "ua-parser" if fast_parser_available() else "user-agents"
        if name == "ua-parser":
            parse = _make_ua_parser()
        elif name == "user-agents":
            parse = _parse_user_agents
        else:
            raise ValueError(f"unknown user-agent parser {name!r}; use 'auto', 'ua-parser' "
                             "or 'user-agents'")
        self.name: ParserName = name  # type: ignore[assignment]
        self.uncached: Callable[[str], UserAgentInfo] = parse
        self._cached = lru_cache(maxsize=cache_size)(parse)

    def __repr__(self) -> str:
        return f"<UserAgentParser {self.name}>"

    def parse(self, header: str | None) -> UserAgentInfo:
        """The browser, OS and device type in ``header``; all ``None`` for an empty header."""
        if not header:
            return EMPTY
        return self._cached(header[:MAX_LENGTH])

    def cache_info(self) -> Any:
        """``functools`` cache statistics (hits, misses, size)."""
        return self._cached.cache_info()

    def clear(self) -> None:
        """Forget every parsed header."""
        self._cached.cache_clear()
