"""Rules per audience: ``CONSENTKIT_REGIONS``, the presets, and the rule of a request.

``CONSENTKIT_REGIONS`` maps countries — ISO 3166-1 alpha-2 codes (``"RU"``), ISO
3166-2 subdivisions (``"US-CA"``) and the named groups ``EU``, ``EEA`` and ``UK``
(an alias of ``GB``) — to a *rule*: the name of a preset (:data:`PRESETS`) or a
mapping (``{"preset": "eu", "forbid_countries": ["CN"]}``), with ``"*"`` for
everyone else. Unset, everyone gets ``"opt-in"``: the extension's behaviour
without the key.

The rule of a request is chosen from the visitor's country, looked up in the
configured GeoIP source (``ext.geo``, see :mod:`.collect.geo`) from the
**anonymised** address (IPv4 /24, IPv6 /48, whatever ``CONSENTKIT_ANONYMIZE_IP``
says) — without the visitor's analytics consent, since it is the legal basis
that is being decided, and without keeping the address anywhere but the geo
source's in-memory cache of anonymised addresses. No geo source, an unknown or
a non-public address: the *strictest* rule configured (:attr:`Regions.strictest`).

It is computed lazily and at most once per request (:func:`current_rule`), and
only asked for where it changes something: the banner and the preferences page
(which services are offered), a recorded choice (the receipt names the rule),
and — only when some configured rule forbids services — HTML responses (their
gating and browser policy). JSON routes never look it up.

A rule may forbid services by the countries their data goes to (``countries`` of
a service in ``CONSENTKIT_SERVICES`` or in the catalogue): ``forbid_countries``
lists countries no data may go to, ``forbid_outside`` the only countries data
may go to (Russia's localisation rule: ``["RU"]``). Such services are not
offered, not loaded and not in the browser policy for visitors under that rule,
whatever they chose: each such rule gets a :class:`RuleView` — a
:class:`~.vendors.VendorRegistry` without them, with its own host rules and
scan cache for the HTML rewrite. A service without ``countries`` is never
forbidden (declare the countries of your own services).

A rule may also ask for the information notice as a page of its own
(``separate_notice``: ``GET /consent/notice``, linked from the first layer in place
of the privacy policy), for a separate consent to transfers abroad
(``transfer_consent``: services sending data outside the visitor's country stay off
until the visitor ticks the :data:`TRANSFERS` line, which the receipts record beside
the categories), or follow the opt-out model (``model="opt-out"``, only from the
``us-ca`` preset: undecided visitors get every category but what Global Privacy
Control opts out of, and a "Do Not Sell or Share" link to ``GET /consent/opt-out``).

The presets are starting points for the app's counsel, not legal advice.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from . import configkeys
from .categories import TRANSFERS, Service
from .errors import ConsentConfigError

if TYPE_CHECKING:
    from flask import Flask

    from .appstate import ConsentKitState
    from .collect.geo import GeoRecord
    from .gating.html import HostRules, ScanCache
    from .state import ConsentState
    from .vendors import VendorRegistry

__all__ = [
    "PRESETS",
    "TRANSFERS",
    "Regions",
    "Rule",
    "RuleView",
    "current_rule",
    "install",
    "parse_regions",
    "restricted_view",
    "shown_rule",
    "transfers_granted",
    "visitor_country",
]

KEY = configkeys.REGIONS
#: where a request's rule is kept (``request_consent().cache``)
_CACHE = "regions.rule"
#: where the country the request's rule was chosen from is kept (``None``: unknown)
_CACHE_COUNTRY = "regions.country"

#: ISO 3166-1 alpha-2, officially assigned (249), and ``XK`` (Kosovo, as MaxMind writes it)
COUNTRIES: frozenset[str] = frozenset("""
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
VN VU WF WS YE YT ZA ZM ZW XK
""".split())

#: the 27 member states of the European Union
EU: frozenset[str] = frozenset(
    "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split())
#: the European Economic Area: the EU, Iceland, Liechtenstein and Norway
EEA: frozenset[str] = EU | {"IS", "LI", "NO"}
#: named groups of countries a key of ``CONSENTKIT_REGIONS`` may be
GROUPS: dict[str, frozenset[str]] = {"EU": EU, "EEA": EEA, "UK": frozenset({"GB"})}
#: the US states, DC and the territories, as ISO 3166-2 ``US-`` codes name them
US_SUBDIVISIONS: frozenset[str] = frozenset("""
AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ
NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC AS GU MP PR UM VI
""".split())

_RULE_FIELDS = ("preset", "name", "forbid_countries", "forbid_outside", "separate_notice",
                "transfer_consent", "model")
#: the consent models a rule may follow
MODELS = ("opt-in", "opt-out")
#: the presets whose law allows the opt-out model (an app's counsel chooses it)
OPT_OUT_PRESETS = ("us-ca",)


@dataclass(frozen=True)
class Rule:
    """What one audience's law asks of the extension.

    ``forbid_countries``: services whose data goes to any of these are forbidden;
    ``forbid_outside``: when not empty, services whose data goes anywhere else are
    forbidden. Both hold ISO codes, and ``"EU"`` for "somewhere in the EU" (a
    service's ``countries`` may say just that).
    """

    name: str
    #: ``"opt-in"``: nothing but necessary until the visitor chooses (the default);
    #: ``"opt-out"`` (only from the ``us-ca`` preset, when the app asks for it): every
    #: category on until the visitor opts out, a "Do Not Sell or Share" link, and
    #: Global Privacy Control as the opt-out of ``marketing``
    model: str = "opt-in"
    forbid_countries: frozenset[str] = frozenset()
    forbid_outside: frozenset[str] = frozenset()
    #: the law the preset follows, for the documentation and the CLI
    source: str = ""
    #: the information notice is a page of its own (``GET /consent/notice``), linked
    #: from the first layer in place of the privacy policy's link
    separate_notice: bool = False
    #: services whose data goes to another country than the visitor's need the
    #: separate "transfers abroad" consent (:data:`TRANSFERS`) besides their category
    transfer_consent: bool = False

    @property
    def opt_out(self) -> bool:
        """Does the rule follow the opt-out model?"""
        return self.model == "opt-out"

    def abroad(self, service: Service, home: frozenset[str]) -> bool:
        """Does ``service`` send data to a country outside ``home`` (``"EU"``: abroad too)?"""
        return any(country not in home for country in service.countries)

    @property
    def forbids_any(self) -> bool:
        """Does the rule forbid services at all (then it has a :class:`RuleView`)?"""
        return bool(self.forbid_countries or self.forbid_outside)

    def forbids(self, service: Service) -> bool:
        """Is ``service`` forbidden for visitors under this rule, whatever they choose?"""
        if not self.forbids_any or not service.countries:
            return False
        for country in service.countries:
            if country in self.forbid_countries:
                return True
            if country == "EU" and self.forbid_countries & EU:
                return True  # "somewhere in the EU" may be the forbidden member state
            if self.forbid_outside and country not in self.forbid_outside:
                return True
        return False


#: The presets: starting points for the app's counsel, not legal advice (README,
#: "Rules per audience"). Each names its legal source.
PRESETS: dict[str, Rule] = {
    "opt-in": Rule(
        "opt-in",
        source="The extension's default: nothing but necessary until the visitor opts in."),
    "eu": Rule(
        "eu",
        source="EU/EEA and UK: GDPR Art. 4(11), 6(1)(a) and 7 (consent), ePrivacy Directive "
               "2002/58/EC Art. 5(3) (storage and access on the terminal; the ePrivacy "
               "Regulation was withdrawn in Feb 2025); UK GDPR and PECR reg. 6."),
    "ru": Rule(
        "ru",
        forbid_outside=frozenset({"RU"}),
        source="Russia: Federal Law 152-FZ On Personal Data as amended in 2025 — Art. 18(5) "
               "(from 1 Jul 2025: personal data of Russian citizens is collected into "
               "databases in Russia only, which consent cannot cure), Art. 9 (from 1 Sep "
               "2025: consent as a separate document)."),
    "tr": Rule(
        "tr", separate_notice=True, transfer_consent=True,
        source="Turkey: KVKK, Law No 6698 — Art. 5 (explicit consent for non-essential "
               "cookies), Art. 10 (the information notice, separate from consent), Art. 9 "
               "as amended by Law No 7499 (in force 1 Jun 2024: transfers abroad)."),
    "az": Rule(
        "az", separate_notice=True, transfer_consent=True,
        source="Azerbaijan: Law on Personal Data No 998-IIIQ — consent naming the "
               "controller, purpose, data, duration, revocation and deletion; transfers to "
               "other countries need their own consent."),
    "us-ca": Rule(
        "us-ca",
        source="California: CCPA as amended by CPRA (Civ. Code §1798.120, §1798.135), 11 CCR "
               "§7025 (Global Privacy Control as an opt-out, and showing that it was "
               "honoured). Opt-in is stricter than the law asks; {'preset': 'us-ca', 'model': "
               "'opt-out'} follows the law's opt-out model."),
}


def _fail(message: str) -> ConsentConfigError:
    return ConsentConfigError(KEY, message)


def _countries(value: Any, where: str) -> frozenset[str]:
    """A list of ISO codes and groups, expanded (groups also keep ``"EU"`` itself)."""
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(
            isinstance(c, str) for c in value):
        raise _fail(f"{where} must be a list of ISO 3166-1 codes or groups, e.g. ['RU'] or "
                    "['US', 'EU'].")
    out: set[str] = set()
    for code in value:
        if code in GROUPS:
            out |= GROUPS[code]
            if code in ("EU", "EEA"):
                out.add("EU")
        elif code in COUNTRIES:
            out.add(code)
        else:
            raise _fail(f"{code!r} in {where} is not an ISO 3166-1 alpha-2 country code (upper "
                        f"case, e.g. 'RU') nor one of the groups {', '.join(GROUPS)}.")
    return frozenset(out)


def parse_rule(value: Any, where: str) -> Rule:
    """One rule: a preset's name or a mapping.

    :raises ConsentConfigError: saying what to fix.
    """
    if isinstance(value, str):
        rule = PRESETS.get(value)
        if rule is None:
            raise _fail(f"{where}: {value!r} is not a preset; use one of "
                        f"{', '.join(PRESETS)}, or a mapping such as "
                        "{'preset': 'eu', 'forbid_countries': ['CN']}.")
        return rule
    if not isinstance(value, Mapping):
        raise _fail(f"{where}: a rule is a preset's name ({', '.join(PRESETS)}) or a mapping "
                    f"with {', '.join(_RULE_FIELDS)}; got {value!r}.")
    unknown = sorted(str(k) for k in value if k not in _RULE_FIELDS)
    if unknown:
        raise _fail(f"{where}: unknown field(s) {unknown} in the rule; allowed: "
                    f"{', '.join(_RULE_FIELDS)}.")
    base = parse_rule(value.get("preset", "opt-in"), f"{where}, 'preset'")
    model = value.get("model", base.model)
    if model not in MODELS:
        raise _fail(f"{where}, 'model': {model!r} is not one of {', '.join(MODELS)}.")
    if model == "opt-out" and base.name not in OPT_OUT_PRESETS:
        raise _fail(f"{where}, 'model': the opt-out model is for laws that allow it (the "
                    f"presets {', '.join(OPT_OUT_PRESETS)}: {{'preset': 'us-ca', 'model': "
                    f"'opt-out'}}); the preset {base.name!r} asks for opt-in.")
    flags = {}
    for flag in ("separate_notice", "transfer_consent"):
        flags[flag] = value.get(flag, getattr(base, flag))
        if not isinstance(flags[flag], bool):
            raise _fail(f"{where}, {flag!r} must be True or False, not {flags[flag]!r}.")
    name = value.get("name")
    if name is None:
        changed = {k for k in value if k not in ("preset", "name")}
        if not changed:
            name = base.name
        elif changed == {"model"}:
            name = base.name if model == base.model else f"{base.name}+{model}"
        else:
            name = f"{base.name}+custom"
    if not isinstance(name, str) or not name or len(name) > 32 or not all(
            c.isascii() and (c.isalnum() or c in "-_+.") for c in name):
        raise _fail(f"{where}: the rule's name {name!r} must be 1 to 32 ASCII letters, digits "
                    "or '-_+.' (it is recorded in the receipts).")
    forbid = base.forbid_countries
    if "forbid_countries" in value:
        forbid = _countries(value["forbid_countries"], f"{where}, 'forbid_countries'")
    outside = base.forbid_outside
    if "forbid_outside" in value:
        outside = _countries(value["forbid_outside"], f"{where}, 'forbid_outside'")
        if not outside:
            raise _fail(f"{where}, 'forbid_outside': list the countries data may go to, "
                        "e.g. ['RU']; leave the field out to allow every country.")
    return Rule(name, model, forbid, outside, base.source, flags["separate_notice"],
                flags["transfer_consent"])


@dataclass(frozen=True)
class RegionTable:
    """The validated ``CONSENTKIT_REGIONS``: rules by subdivision, country and default."""

    default: Rule = PRESETS["opt-in"]
    countries: Mapping[str, Rule] = field(default_factory=dict)
    #: ISO 3166-2 codes (``"US-CA"``)
    subdivisions: Mapping[str, Rule] = field(default_factory=dict)
    #: every distinct rule, in the order configured (``"*"``'s last)
    rules: tuple[Rule, ...] = (PRESETS["opt-in"],)

    @property
    def configured(self) -> bool:
        """More than one rule: the rule depends on the visitor's country."""
        return len(self.rules) > 1

    @cached_property  # the table never changes: asked on every HTML page
    def forbids_any(self) -> bool:
        return any(r.forbids_any for r in self.rules)

    @cached_property
    def transfers_any(self) -> bool:
        """Does some rule ask for the separate consent to transfers abroad?"""
        return any(r.transfer_consent for r in self.rules)

    @cached_property
    def notices_any(self) -> bool:
        """Does some rule ask for the separate information notice?"""
        return any(r.separate_notice for r in self.rules)

    @cached_property
    def opt_out_any(self) -> bool:
        """Does some rule follow the opt-out model?"""
        return any(r.opt_out for r in self.rules)

    @cached_property
    def restricts_any(self) -> bool:
        """May a visitor's rule keep some of the app's services off (forbidden, or abroad
        without the transfers consent)? Then HTML pages look the rule up."""
        return self.forbids_any or self.transfers_any

    @cached_property
    def shapes_banner(self) -> bool:
        """May a visitor's rule change the banner (services kept off, a notice, a
        transfers line, the opt-out model)? Else its markup needs no rule looked up."""
        return self.restricts_any or self.notices_any or self.opt_out_any

    def home_of(self, rule: Rule) -> frozenset[str]:
        """The countries configured for ``rule`` (a visitor of unknown location under it)."""
        return frozenset(c for c, r in self.countries.items() if r is rule or r == rule)

    def rule_for(self, country: str | None, subdivision: str | None = None) -> Rule | None:
        """The rule of a visitor located in ``country`` (``None``: unknown location)."""
        if not country:
            return None
        if subdivision:
            found = self.subdivisions.get(f"{country}-{subdivision}")
            if found is not None:
                return found
        return self.countries.get(country, self.default)


DEFAULT_TABLE = RegionTable()


def parse_regions(value: Any) -> RegionTable:
    """``CONSENTKIT_REGIONS`` validated (``None``: opt-in everywhere).

    A country named by its code wins over a group it is in; a subdivision wins over its
    country. Two groups that give one country different rules are an error.

    :raises ConsentConfigError: saying what to fix.
    """
    if value is None:
        return DEFAULT_TABLE
    if not isinstance(value, Mapping) or not value:
        raise _fail("must map countries (ISO codes such as 'RU', the groups "
                    f"{', '.join(GROUPS)}, subdivisions such as 'US-CA') and '*' (everyone "
                    "else) to a rule: a preset's name or a mapping, e.g. {'EU': 'eu', "
                    "'RU': 'ru', '*': 'opt-in'}; or be None (opt-in everywhere).")
    default = PRESETS["opt-in"]
    explicit: dict[str, Rule] = {}
    grouped: dict[str, tuple[str, Rule]] = {}
    subdivisions: dict[str, Rule] = {}
    by_name: dict[str, Rule] = {}
    for key, raw in value.items():
        if not isinstance(key, str):
            raise _fail(f"the key {key!r} must be a string: a country code ('RU'), a group "
                        f"({', '.join(GROUPS)}), a subdivision ('US-CA') or '*'.")
        rule = parse_rule(raw, f"{key!r}")
        known = by_name.setdefault(rule.name, rule)
        if known != rule:
            raise _fail(f"{key!r}: two different rules are named {rule.name!r}; give the "
                        "mapping a 'name' of its own (the receipts record it).")
        if key == "*":
            default = rule
        elif key in GROUPS and key != "UK":
            for country in sorted(GROUPS[key]):
                other = grouped.get(country)
                if other is not None and other[1] != rule:
                    raise _fail(f"{country} is in both {other[0]!r} and {key!r} with different "
                                f"rules; name {country!r} on its own to say which applies.")
                grouped[country] = (key, rule)
        elif key in COUNTRIES or key == "UK":
            country = "GB" if key == "UK" else key
            if country in explicit and explicit[country] != rule:
                raise _fail(f"{key!r}: GB is given two rules ('UK' and 'GB' are the same "
                            "country); keep one.")
            explicit[country] = rule
        elif len(key) > 3 and key[2] == "-" and key[:2] in COUNTRIES:
            country, sub = key[:2], key[3:]
            if not (1 <= len(sub) <= 3 and sub.isascii() and sub.isalnum()
                    and sub == sub.upper()):
                raise _fail(f"{key!r} is not an ISO 3166-2 subdivision code such as 'US-CA'.")
            if country == "US" and sub not in US_SUBDIVISIONS:
                raise _fail(f"{key!r}: {sub!r} is not a US state or territory code "
                            "(e.g. 'US-CA').")
            subdivisions[key] = rule
        else:
            upper = key.upper()
            hint = f" (did you mean {upper!r}?)" if upper in COUNTRIES or upper in GROUPS or (
                upper[:2] in COUNTRIES and upper[2:3] == "-") else ""
            raise _fail(f"{key!r} is not a country code (ISO 3166-1 alpha-2, upper case, e.g. "
                        f"'RU'), a group ({', '.join(GROUPS)}), a subdivision ('US-CA') or "
                        f"'*'{hint}.")
    countries = {c: r for c, (_, r) in grouped.items()}
    countries.update(explicit)
    rules = tuple(dict.fromkeys([*countries.values(), *subdivisions.values(), default]))
    return RegionTable(default, countries, subdivisions, rules)


# -- per app ----------------------------------------------------------------------------


class RuleView:
    """What the HTML rewrite and the browser policy use for visitors under a forbidding rule.

    ``registry`` is the app's registry without the services the rule forbids;
    ``host_rules`` and ``scans`` are the rewrite's host rules and scanned documents
    for it (what is scanned with one registry is not valid for another).
    """

    def __init__(self, rule: Rule, registry: VendorRegistry,
                 home: frozenset[str] | None = None) -> None:
        from .gating.html import HostRules, ScanCache

        self.rule = rule
        #: the visitor's country when services sending data abroad are left out (the
        #: visitor has not given the separate transfers consent), else ``None``
        self.home = home
        #: the key of this view in the caches that depend on it (the browser policy's)
        self.key = rule.name if home is None else f"{rule.name}~{'.'.join(sorted(home))}"
        self.registry = registry
        self.host_rules: HostRules = HostRules(registry)
        self.scans: ScanCache = ScanCache()
        self.forbidden: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        return f"<RuleView {self.key!r}>"


class Regions:
    """One app's rules per audience, at ``ext.regions``."""

    def __init__(self, ext: ConsentKitState) -> None:
        self.ext = ext
        self.table: RegionTable = ext.settings.regions
        if self.table.transfers_any and TRANSFERS in ext.settings.category_keys:
            raise _fail(f"a rule asks for the separate consent to transfers abroad, which "
                        f"is recorded as {TRANSFERS!r}: rename the category of that key.")
        self._views: dict[tuple[str, frozenset[str] | None], RuleView | None] = {}
        self._strictest: Rule | None = None
        self._lock = threading.Lock()

    # -- which rule ---------------------------------------------------------------

    @property
    def strictest(self) -> Rule:
        """The rule of a visitor whose location is unknown.

        The one that forbids most of the app's services (declared and catalogue);
        on a tie the first configured (``"*"`` last).
        """
        if self._strictest is None:
            registry = self.ext.vendors
            services = registry.services if registry is not None else self.ext.settings.services

            def weight(indexed: tuple[int, Rule]) -> tuple[int, int, int]:
                index, rule = indexed
                return (sum(1 for s in services if rule.forbids(s)),
                        int(rule.forbids_any), -index)

            self._strictest = max(enumerate(self.table.rules), key=weight)[1]
        return self._strictest

    def locate(self, environ: Mapping[str, Any]) -> GeoRecord | None:
        """The location of the request's anonymised address, or ``None``."""
        from .collect.ip import normalise

        geo = self.ext.geo
        if geo is None:
            return None
        address = normalise(environ.get("REMOTE_ADDR"), True)  # anonymised, always
        if address is None:
            return None
        try:
            record: GeoRecord | None = geo.lookup(*address)
        except Exception:  # noqa: BLE001 - an unknown location means the strictest rule
            return None
        return record

    def rule_for_environ(self, environ: Mapping[str, Any]) -> Rule:
        """The rule for a request's environ (no per-request cache: see :func:`current_rule`)."""
        return self.rule_and_country(environ)[0]

    def rule_and_country(self, environ: Mapping[str, Any]) -> tuple[Rule, str | None]:
        """``(rule, country)`` of a request's environ; the country is ``None`` when unknown
        (then the rule is the strictest) or when the rule does not depend on it."""
        table = self.table
        if not table.configured:
            return table.default, None
        record = self.locate(environ)
        found = country = None
        if record is not None:
            country = record.country or None
            found = table.rule_for(country, getattr(record, "subdivision", None))
        return (found, country) if found is not None else (self.strictest, None)

    # -- what a rule changes ---------------------------------------------------------

    def view(self, rule: Rule, home: frozenset[str] | None = None) -> RuleView | None:
        """The :class:`RuleView` of ``rule``; ``None`` if it keeps none of the app's services off.

        ``home``: the visitor's country (or the rule's countries) when the visitor has
        not given the separate consent to transfers abroad: services sending data
        elsewhere are left out too.
        """
        if not rule.forbids_any and home is None:
            return None
        key = (rule.name, home)
        try:
            return self._views[key]
        except KeyError:
            pass
        with self._lock:
            if key not in self._views:
                self._views[key] = self._make_view(rule, home)
            return self._views[key]

    def views(self) -> list[RuleView]:
        """The views made so far (``add_trackers()`` forgets their scanned documents)."""
        return [v for v in list(self._views.values()) if v is not None]

    def _make_view(self, rule: Rule, home: frozenset[str] | None = None) -> RuleView | None:
        from .vendors import Catalogue, VendorRegistry

        base: VendorRegistry | None = self.ext.vendors
        if base is None:
            return None

        def off(service: Service) -> bool:
            return rule.forbids(service) or (home is not None and rule.abroad(service, home))

        forbidden = {s.key for s in base.services if off(s)}
        if not forbidden:
            return None
        declared_keys = {s.key for s in base.declared}
        catalogue = Catalogue(tuple(v for v in base.catalogue.vendors
                                    if v.key not in declared_keys and not off(v)))
        registry = VendorRegistry(
            base.category_keys, [s for s in base.declared if not off(s)], catalogue,
            undeclared=bool(base.undeclared) or self.ext.settings.undeclared_vendors == "catalogue")
        view = RuleView(rule, registry, home)
        view.forbidden = frozenset(forbidden)
        return view

    def home(self, rule: Rule, country: str | None) -> frozenset[str]:
        """The visitor's own country under ``rule``: where data is not "abroad"."""
        return frozenset({country}) if country else self.table.home_of(rule)

    def abroad(self, rule: Rule, country: str | None) -> list[Service]:
        """The app's declared services that ``rule`` does not forbid and that send data
        outside the visitor's country (what the notice and the transfers line name)."""
        registry = self.ext.vendors
        services = registry.declared if registry is not None else self.ext.settings.services
        home = self.home(rule, country)
        return [s for s in services if not rule.forbids(s) and rule.abroad(s, home)]

    def offered(self, services: Sequence[Service], rule: Rule) -> list[Service]:
        """``services`` without those ``rule`` forbids (what the preferences offer)."""
        return [s for s in services if not rule.forbids(s)]


def regions_of(ext: ConsentKitState) -> Regions:
    """The app's :class:`Regions` (made on first use for an app that skipped :func:`install`)."""
    regions: Regions | None = ext.regions
    if regions is None:
        regions = ext.regions = Regions(ext)
    return regions


def current_rule() -> Rule:
    """The rule of the current request: looked up once, on first use, and kept for it."""
    from .state import request_consent, request_parts

    app, environ = request_parts()
    ext: ConsentKitState = app.extensions["consentkit"]
    regions = regions_of(ext)
    if not regions.table.configured:
        return regions.table.default  # one rule for everyone: nothing to look up
    ctx = request_consent()
    cache = ctx.cache
    rule: Rule | None = cache.get(_CACHE)
    if rule is None:
        rule, cache[_CACHE_COUNTRY] = regions.rule_and_country(environ)
        cache[_CACHE] = rule
        # the response may now depend on the address (no geo source: the strictest rule
        # for everyone, which does not)
        ctx.by_address = ext.geo is not None
    return rule


def shown_rule(ext: ConsentKitState) -> Rule:
    """The request's rule where it may change what the banner and the pages show; without
    a lookup (the default rule) when no configured rule forbids services, asks for the
    separate notice or the transfers line, or follows the opt-out model."""
    table = regions_of(ext).table
    if table.restricts_any or table.notices_any or table.opt_out_any:
        return current_rule()
    return table.default


def visitor_country() -> str | None:
    """The country the request's rule was chosen from (``None``: unknown, or one rule for all)."""
    from .state import request_consent

    current_rule()
    country: str | None = request_consent().cache.get(_CACHE_COUNTRY)
    return country


def transfers_granted() -> bool:
    """Has the visitor given the separate consent to transfers abroad (:data:`TRANSFERS`)?"""
    from .state import get_state

    return get_state().allows(TRANSFERS)


def restricted_view(ext: ConsentKitState) -> RuleView | None:
    """The current request's :class:`RuleView`, or ``None`` (then the app's registry applies).

    Under a rule with ``transfer_consent``, a visitor who has not given the transfers
    consent gets a view without the services that send data abroad. Looks nothing up
    when no configured rule forbids services or asks for that consent.
    """
    regions = ext.regions if ext.regions is not None else regions_of(ext)
    if not regions.table.restricts_any:
        return None
    rule = current_rule()
    if rule.transfer_consent and not transfers_granted():
        return regions.view(rule, regions.home(rule, visitor_country()))
    return regions.view(rule)


def opt_out_state(ext: ConsentKitState, state: ConsentState) -> ConsentState:
    """The state of an undecided visitor under the opt-out model: every category on, but
    those a Global Privacy Control signal (or ``DNT``, when honoured) opts out of.

    Not decided (the cookie is not written and the receipt of a later choice is its
    first); ``source`` is ``"opt-out"``. Any other visitor's ``state`` as it is.
    """
    from dataclasses import replace

    from .gpc import GPC_OFF, privacy_signal, signal_headers
    from .state import request_consent

    if state.decided or not current_rule().opt_out:
        return state
    granted = set(ext.settings.optional_keys)
    request_consent().vary += signal_headers(ext.settings)  # what the default read
    if privacy_signal(ext.settings):
        granted -= set(GPC_OFF)
    return replace(state, granted=frozenset(granted) | {"necessary"}, source="opt-out")


def install(app: Flask, ext: ConsentKitState) -> None:
    """Register ``ext.regions``, the Jinja global ``consent_rule`` and, when a
    rule follows the opt-out model, the default state of its undecided visitors."""
    regions = ext.regions = Regions(ext)
    app.jinja_env.globals.setdefault("consent_rule", current_rule)
    table = regions.table
    if table.opt_out_any:
        ext.default_state = lambda state: opt_out_state(ext, state)
    if table.notices_any and not ext.settings.controller:
        import logging

        logging.getLogger("flask_consentkit.regions").warning(
            "flask-consentkit: a rule per audience (%s) asks for the separate information "
            "notice, which must name the controller, but CONSENTKIT_CONTROLLER is not set: "
            "the notice says that the controller is not named there.",
            ", ".join(r.name for r in table.rules if r.separate_notice))
