"""The element rules are one table: the prefilter, the rewrite and the scan all follow it.

Every case is made from :data:`flask_consentkit.gating.rules.RULES` (each rule, each
of its attributes, each ``<link rel>``), so a rule added there is tested here
without a line more; and a rule added to the table in a fresh interpreter is
found by all three, with nothing else changed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flask_consentkit.cli.scan import read_page, resolve
from flask_consentkit.gating import html as gating_html
from flask_consentkit.gating.html import could_need_gating, rewrite
from flask_consentkit.gating.rules import ANY, LINK_RELS, RULES, Action, Namespace, Rule, Syntax

from .test_gating_hosts import HOSTS, OWN, Gate

TRACKER = "px.tracker.example"
URL = f"https://{TRACKER}/p.gif?id=1"
PAGE_URL = f"https://{OWN}/story"


def _element(rule: Rule, attr: str | None, namespace: Namespace, rel: str | None) -> str:
    """The markup of one element of ``rule`` whose ``attr`` (or text) names :data:`URL`."""
    name = "div" if rule.element == ANY else rule.element
    if rule.element == ANY and namespace is Namespace.SVG:
        name = "rect"
    syntax = next((a.syntax for a in rule.attrs if a.name == attr), rule.text)
    value = {Syntax.URL: URL, Syntax.SRCSET: f"{URL} 2x",
             Syntax.CSS: f"background:url({URL})"}[syntax]  # type: ignore[index]
    attrs = f' {attr}="{value}"' if attr is not None else ""
    if rel is not None:
        attrs += f' rel="{rel}"'
    if rule.when_type is not None:
        attrs += f' type="{rule.when_type}"'
    text = value if attr is None else ""
    markup = f"<{name}{attrs}>{text}</{name}>"
    return f"<svg>{markup}</svg>" if namespace is Namespace.SVG else markup


def _cases() -> list[object]:
    cases = []
    for rule in RULES:
        namespaces = [rule.namespace] if rule.namespace else [Namespace.HTML, Namespace.SVG]
        rels = [r for r in LINK_RELS] if rule.when_rel else [None]
        attrs: list[str | None] = [a.name for a in rule.attrs] or [None]
        for namespace in namespaces:
            for rel in rels:
                for attr in attrs:
                    label = f"{namespace.value}:{rule.element}:{attr or 'text'}"
                    cases.append(pytest.param(rule, attr, namespace, rel,
                                              id=label + (f":{rel}" if rel else "")))
    return cases


def _page(markup: str) -> str:
    if markup.startswith("<body"):
        return f"<!doctype html><html><head><title>t</title></head>{markup}</html>"
    return (f"<!doctype html><html><head><title>t</title></head><body><p>Text</p>{markup}"
            "</body></html>")


def _hosts(page: str) -> dict[str, bool]:
    """What the scan finds the page to load from the tracker: ``{element: active}``."""
    read = read_page(page)
    found = {}
    for ref in read.refs:
        target, _ = resolve(ref.url, PAGE_URL, ref.base)
        if target is not None and target.host == TRACKER:
            found[ref.element] = ref.active
    return found


@pytest.mark.parametrize("careful", [False, True], ids=["fast", "careful"])
@pytest.mark.parametrize(("rule", "attr", "namespace", "rel"), _cases())
def test_every_rule_is_prefiltered_rewritten_and_scanned(rule, attr, namespace, rel, careful,
                                                         monkeypatch):
    page = _page(_element(rule, attr, namespace, rel))
    body = page.encode()
    monkeypatch.setattr(gating_html._Reader, "careful", careful)

    # (a) the prefilter lets the page through to the rewrite
    assert could_need_gating(body)

    # (b) the rewrite neutralises the element for a visitor who allowed nothing
    out, _ = rewrite(body, Gate(), hosts=HOSTS, own=OWN)
    assert out != body
    assert b"data-consentkit-neutralised" in out
    if rule.action is Action.FRAME:
        assert b"data-ph=" in out  # a placeholder in front of it
    granted, _ = rewrite(body, Gate("marketing"), hosts=HOSTS, own=OWN)
    assert granted == body  # and leaves it alone once its service is allowed

    # (c) the scan reports what the page loads from the tracker, and that the
    # rewritten page loads it only after consent
    if rule.base:  # no fetch: every relative URL of the page is read from it
        assert read_page(page).base == URL
    else:
        before = _hosts(page)
        assert before and all(before.values()), before
    after = _hosts(out.decode())
    assert after and not any(after.values()), after


def test_the_link_rels_are_the_rewrites_and_the_scans():
    from flask_consentkit.cli import scan

    assert set(gating_html._LINK_RELS) == set(LINK_RELS) == scan._LINK_FETCHING_RELS
    assert scan._CONNECT_RELS == {rel for rel, link in LINK_RELS.items() if link.connect}


RULES_PY = Path(gating_html.__file__).with_name("rules.py")
START = "RULES: tuple[Rule, ...] = (\n"


def test_a_rule_added_to_the_table_is_followed_by_all_three():
    """In a fresh interpreter, one rule more (``<bgsound src>``) and nothing else changed."""
    source = RULES_PY.read_text(encoding="utf-8")
    assert source.count(START) == 1
    extra = '    Rule("bgsound", _HTML, (_SRC,), how="plays a sound from"),\n'
    code = textwrap.dedent(f"""
        import sys, types
        source = {source.replace(START, START + extra)!r}
        module = types.ModuleType("flask_consentkit.gating.rules")
        module.__file__ = {str(RULES_PY)!r}
        sys.modules[module.__name__] = module
        exec(compile(source, module.__file__, "exec"), module.__dict__)

        from flask_consentkit.cli.scan import read_page
        from flask_consentkit.gating.html import could_need_gating, rewrite
        from tests.test_gating_hosts import HOSTS, OWN, Gate

        page = b'<p>Hi</p><bgsound src="{URL}">'
        assert could_need_gating(page)
        out, _ = rewrite(page, Gate(), hosts=HOSTS, own=OWN)
        assert out == b'<p>Hi</p><bgsound data-consent="marketing" '\\
            b'data-consent-src="{URL}" data-consentkit-neutralised>', out
        refs = read_page(page.decode()).refs
        assert [(r.url, r.element, r.active) for r in refs] == [
            ("{URL}", "<bgsound src>", True)], refs
        print("ok")
    """)
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    # and without the rule, the same element is no one's business
    page = f'<p>Hi</p><bgsound src="{URL}">'.encode()
    assert rewrite(page, Gate(), hosts=HOSTS, own=OWN)[0] == page
    assert read_page(page.decode()).refs == []


#: literals that name a rule's attribute for another reason (file, literal: why)
NOT_RULES = {
    ("html.py", "src"): "the CSS function src() of @font-face",
    ("scan.py", "src"): "the CSS function src() of @font-face",
    ("scan.py", "href"): "an <a href> to the preferences page: a control, no fetch",
}


@pytest.mark.parametrize("module", ["gating/html.py", "cli/scan.py"])
def test_no_url_attribute_is_named_outside_the_table(module):
    """The rewrite and the scan name no attribute that loads a URL: they read the table."""
    import ast

    from flask_consentkit.gating.rules import URL_ATTRS

    names = {a.name for a in URL_ATTRS}
    path = Path(gating_html.__file__).parent.parent / module
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            text = (node.value.decode("latin-1") if isinstance(node.value, bytes)
                    else node.value)
            if text in names and (path.name, text) not in NOT_RULES:
                found.append((node.lineno, text))
    assert found == []
