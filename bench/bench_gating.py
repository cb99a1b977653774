"""Benchmark of the server-side gating: rewrite throughput and whole requests vs bare Flask.

Run from the project root::

    python bench/bench_gating.py [--quick]

Prints the rewrite's throughput in MB/s on a realistic 50 KB and 500 KB story
page (many scripts, gated and not, vendor trackers, embeds), and the time of a
whole WSGI request for the 50 KB page with the extension, as a ratio against
the same view on bare Flask measured in the same run (budgets: rewrite
≥ 100 MB/s; a returning visitor's page with the default banner ≤ 1.10×, the
same page with a per-request token ≤ 1.30×, at 50 KB and at 0.5 MB). The last
rows of each table show the least an extension that keeps pages could cost
(:func:`least_app`), and that least with what the extension's public surface
costs whatever its code (its nine template globals, a policy header).

The page is served two ways. ``/page`` renders it from a Jinja template (its
66 paragraphs are variables), as a Flask app serves an HTML page: this is the
request the budget is about. ``/story`` returns the very same ``bytes`` object
on every request, which no real view does (a static file goes through
``send_file``, which the gating leaves alone); with nothing to render, bare
Flask is at its fastest there, so those rows show the extension's cost
against the least a request can cost.

Times are CPU time of this thread, so that other work on the machine disturbs
them less; the request ratios are medians of interleaved rounds.
"""

from __future__ import annotations

import argparse
import copy
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import logging  # noqa: E402
import re  # noqa: E402

from flask import Flask, Response, g, render_template, request  # noqa: E402
from jinja2 import DictLoader  # noqa: E402
from werkzeug.test import EnvironBuilder  # noqa: E402

from flask_consentkit import ConsentKit  # noqa: E402
from flask_consentkit.gating.html import ScanCache, TrackerMatcher, rewrite  # noqa: E402
from flask_consentkit.policy import ENVIRON_KEY as POLICY_NOTED  # noqa: E402
from flask_consentkit.policy import PolicyHeader  # noqa: E402
from flask_consentkit.state import UNDECIDED, decide  # noqa: E402
from tests.pages import realistic_page  # noqa: E402


class Gate:
    """A fixed set of granted categories; placeholders as the extension writes them (size)."""

    def __init__(self, *granted: str) -> None:
        self.granted = {"necessary", *granted}

    def allows(self, category: str) -> bool:
        return category in self.granted

    def placeholder(self, category: str, title: str | None) -> bytes:
        return (b'<div class="consentkit-placeholder" data-consent-placeholder="marketing" '
                b'role="group" aria-label="Trailer"><p class="consentkit-placeholder-title">'
                b'Content blocked</p><p class="consentkit-placeholder-text">This content is '
                b"loaded from another service.</p><a href=\"/consent/?next=/#consentkit-cat-"
                b'marketing" data-consentkit-open="marketing" role="button">Open cookie '
                b"settings</a></div>")

    def report(self, key: str, message: str) -> None:
        pass


def best_of(fn: Callable[[], Any], number: int, repeat: int) -> float:
    """The fastest mean CPU time of one call, in seconds, over ``repeat`` rounds of ``number``.

    CPU time of this thread, so that other work on the machine disturbs it less.
    """
    times = []
    for _ in range(repeat):
        start = time.thread_time()
        for _ in range(number):
            fn()
        times.append((time.thread_time() - start) / number)
    return min(times)


def bench_rewrite(quick: bool) -> None:
    print("rewrite throughput, MB/s (best of 5 rounds)")
    print(f"  {'page':>7s}  {'granted':16s}  {'new page':>9s}  {'inline seen':>11s}  "
          f"{'page seen':>9s}")
    for size in (50_000, 500_000):
        page = realistic_page(size)
        number = (20 if quick else 100) if size == 50_000 else (2 if quick else 10)
        for label, granted in (("nothing", ()), ("all", ("analytics", "marketing"))):
            gate = Gate(*granted)
            warm = TrackerMatcher()
            cache = ScanCache()
            rewrite(page, gate, matcher=warm, cache=cache)

            def cold(page: bytes = page, gate: Gate = gate, warm: TrackerMatcher = warm) -> None:
                rewrite(page, gate, matcher=_fresh(warm))

            def known_scripts(page: bytes = page, gate: Gate = gate,
                              warm: TrackerMatcher = warm) -> None:
                rewrite(page, gate, matcher=warm)

            def known_page(page: bytes = page, gate: Gate = gate,
                           cache: ScanCache = cache) -> None:
                rewrite(page, gate, cache=cache)

            rates = [len(page) / best_of(fn, number, 5) / 1e6
                     for fn in (cold, known_scripts, known_page)]
            print(f"  {len(page) / 1000:5.0f} KB  {label:16s}  {rates[0]:9.1f}  "
                  f"{rates[1]:11.1f}  {rates[2]:9.1f}")
    print("  new page: nothing cached; inline seen: its inline scripts were matched before;\n"
          "  page seen: the same document was scanned before (ScanCache)")


def _fresh(warm: TrackerMatcher) -> TrackerMatcher:
    """The same compiled trackers with an empty cache."""
    fresh = copy.copy(warm)
    fresh._caches = {kind: {} for kind in warm._caches}
    return fresh


_PARAGRAPH = re.compile(r"<p>(.*?)</p>", re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


def as_template(page: bytes) -> tuple[str, list[str]]:
    """``page`` as a Jinja template whose paragraphs are variables, and their texts."""
    texts: list[str] = []

    def variable(m: re.Match[str]) -> str:
        texts.append(_TAG.sub("", m.group(1)))  # plain text, escaped by the template
        return "<p>{{ paragraphs[" + str(len(texts) - 1) + "] }}</p>"

    return _PARAGRAPH.sub(variable, page.decode("utf-8")), texts


def make_app(with_kit: bool, page: bytes, **config: Any) -> Flask:
    """``/page`` renders ``page`` from a template; ``/story`` serves ``page`` itself;
    ``/render`` the same page as text (encoded per request);
    ``/fresh`` the same page with a new CSP nonce each time (in ``g.csp_nonce``);
    ``/changing`` the same page with a new token each time that is not a known nonce;
    ``/form`` the template with a CSRF field, a new token on every request."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY="bench-secret-key-long-enough-to-sign", CONSENTKIT_LEDGER_URL=None)
    app.config.update(config)
    if with_kit:
        ConsentKit(app)

    source, paragraphs = as_template(page)
    body_at = source.index("<body")
    body_at = source.index(">", body_at) + 1
    form = (source[:body_at] + '<form method="post" action="/comment"><input type="hidden" '
            'name="csrf_token" value="{{ token }}"></form>' + source[body_at:])
    app.jinja_loader = DictLoader({"story.html": source, "form.html": form})

    @app.get("/page")
    def rendered() -> str:
        return render_template("story.html", paragraphs=paragraphs)

    @app.get("/form")
    def with_form() -> str:  # the page with a CSRF field: a new token on every request
        return render_template("form.html", paragraphs=paragraphs,
                               token=secrets.token_urlsafe(32))

    @app.get("/story")
    def story() -> Response:
        return Response(page, mimetype="text/html")

    text = page.decode("utf-8")

    @app.get("/render")
    def render() -> Response:  # the same page, encoded anew as a rendered template is
        return Response(text, mimetype="text/html")

    @app.get("/fresh")
    def fresh() -> Response:  # a CSP nonce per request, made known as apps do (g.csp_nonce)
        g.csp_nonce = secrets.token_urlsafe(16)
        return Response(page.replace(b"r4nd0m", g.csp_nonce.encode()), mimetype="text/html")

    @app.get("/changing")
    def changing() -> Response:  # differs per request, but not by a nonce the app made known
        return Response(page.replace(b"r4nd0m", secrets.token_urlsafe(16).encode()),
                        mimetype="text/html")

    return app


def least_app(page: bytes, surface: bool = False) -> Flask:
    """Bare Flask's app with the least an extension that keeps pages must do per page: a
    response hook that finds the kept output (by the page's length and ends, the consent
    cookie, path and host; the page compared whole), puts it in with its
    ``Content-Length``, and adds ``Vary: Cookie``. No banner is made: a page not seen
    before gets a fixed tag before ``</body>``.

    ``surface``: also what the extension's public surface costs any implementation of
    it, whatever its hook does: its template globals (nine) (Jinja copies every global
    into each render's context) and a browser policy written by WSGI middleware (a
    ``Content-Security-Policy`` and ``Reporting-Endpoints`` noted by the hook, kept
    with the page, written by the extension's own :class:`PolicyHeader`)."""
    app = make_app(False, page)
    kept: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}
    if surface:
        # the extension's own names: what it adds to a bare app's globals
        ours = make_app(True, page).jinja_env.globals.keys() - app.jinja_env.globals.keys()
        app.jinja_env.globals.update(dict.fromkeys(sorted(ours), len))
        noted = ("script-src 'self'; frame-src 'self'; report-to consentkit",
                 'consentkit="/consent/csp-report"')
        app.wsgi_app = PolicyHeader(app.wsgi_app,  # type: ignore[method-assign]
                                    "Content-Security-Policy")

    @app.after_request
    def hook(response: Response) -> Response:
        parts = response.response
        if type(parts) is not list or len(parts) != 1 or type(parts[0]) is not bytes:
            return response
        body, environ = parts[0], request.environ
        key = (len(body), body[:48], body[-48:], environ.get("HTTP_COOKIE"),
               environ.get("PATH_INFO"), environ.get("HTTP_HOST"))
        found = kept.get(key)
        if found is not None and found[0] == body:
            out = found[1]
        else:
            out = body.replace(b"</body>", b"<div id=consent></div></body>")
            kept[key] = (body, out)
        response.response = [out]
        response.headers["Content-Length"] = str(len(out))
        response.headers.add("Vary", "Cookie")
        if surface:
            environ[POLICY_NOTED] = noted
        return response

    return app


def wsgi_call(app: Flask, environ: dict[str, Any]) -> Callable[[], None]:
    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return None

    def call() -> None:
        body = app(dict(environ), start_response)
        for _ in body:
            pass
        if hasattr(body, "close"):
            body.close()

    return call


def consent_cookie(app: Flask, *granted: str) -> str:
    ext = app.extensions["consentkit"]
    state = decide(ext.settings, granted, previous=UNDECIDED, source="banner")
    return f"{ext.settings.cookie_name}={ext.codec.dumps(state)}"


def print_row(label: str, call: Callable[[], None], bare_call: Callable[[], None],
              number: int, repeat: int) -> None:
    """One row: the medians of ``repeat`` interleaved rounds of ``number`` requests each."""
    call(), bare_call()
    ratios, ours, base = [], [], []
    for _ in range(repeat):
        t_base = best_of(bare_call, number, 1)
        t_ours = best_of(call, number, 1)
        ratios.append(t_ours / t_base)
        ours.append(t_ours)
        base.append(t_base)
    print(f"  {label:42s} {statistics.median(ours) * 1e6:6.0f} µs vs "
          f"{statistics.median(base) * 1e6:5.0f} µs  {statistics.median(ratios):.2f}×")


def bench_requests(quick: bool) -> None:
    page = realistic_page(50_000)
    number, repeat = (50, 5) if quick else (200, 9)
    bare = make_app(False, page)
    gating_only = make_app(True, page, CONSENTKIT_AUTO_INJECT=False)
    with_banner = make_app(True, page)
    everything = ("analytics", "marketing", "functional", "performance")
    cases: list[tuple[str, str, Flask, dict[str, str]]] = [
        ("template, returning visitor, all granted", "/page", gating_only,
         {"Cookie": consent_cookie(gating_only, *everything)}),
        ("template, returning visitor, rejected", "/page", gating_only,
         {"Cookie": consent_cookie(gating_only)}),
        ("template, new visitor", "/page", gating_only, {}),
        ("+ banner, template, returning visitor", "/page", with_banner,
         {"Cookie": consent_cookie(with_banner, "analytics")}),
        ("+ banner, template, new visitor", "/page", with_banner, {}),
        ("template + CSRF field, returning visitor", "/form", gating_only,
         {"Cookie": consent_cookie(gating_only, "analytics")}),
        ("+ banner, template + CSRF field, returning", "/form", with_banner,
         {"Cookie": consent_cookie(with_banner, "analytics")}),
        ("+ banner, template + CSRF field, new visitor", "/form", with_banner, {}),
        ("same page, returning visitor, all granted", "/story", gating_only,
         {"Cookie": consent_cookie(gating_only, *everything)}),
        ("same page, returning visitor, rejected", "/story", gating_only,
         {"Cookie": consent_cookie(gating_only)}),
        ("same page, new visitor", "/story", gating_only, {}),
        ("same page rendered anew, returning, rejected", "/render", gating_only,
         {"Cookie": consent_cookie(gating_only)}),
        ("new CSP nonce per request, all granted", "/fresh", gating_only,
         {"Cookie": consent_cookie(gating_only, *everything)}),
        ("new CSP nonce per request, new visitor", "/fresh", gating_only, {}),
        ("page differs otherwise, new visitor", "/changing", gating_only, {}),
        ("+ banner, same page, new visitor", "/story", with_banner, {}),
        ("+ banner, same page, returning visitor", "/story", with_banner,
         {"Cookie": consent_cookie(with_banner, "analytics")}),
    ]
    least = least_app(page)
    cases.append(("least: a hook that swaps a kept page", "/page", least,
                  {"Cookie": consent_cookie(with_banner, "analytics")}))
    cases.append(("least, + its template globals, policy header", "/page",
                  least_app(page, surface=True),
                  {"Cookie": consent_cookie(with_banner, "analytics")}))
    print(f"\nwhole request, 50 KB page through WSGI, vs bare Flask serving the same view "
          f"(median of {repeat} interleaved rounds)")
    for label, path, app, headers in cases:
        # the same request (cookie included) to the same view on bare Flask
        bare_call = wsgi_call(bare, EnvironBuilder(path=path, headers=headers).get_environ())
        call = wsgi_call(app, EnvironBuilder(path=path, headers=headers).get_environ())
        print_row(label, call, bare_call, number, repeat)


def bench_large_requests(quick: bool) -> None:
    """The budget rows again on a 0.5 MB page: the default banner, returning visitor."""
    page = realistic_page(500_000)
    number, repeat = (10, 5) if quick else (40, 9)
    bare = make_app(False, page)
    with_banner = make_app(True, page)
    cookie = {"Cookie": consent_cookie(with_banner, "analytics")}
    print(f"\nwhole request, 0.5 MB page through WSGI, vs bare Flask serving the same view "
          f"(median of {repeat} interleaved rounds)")
    least = least_app(page)
    for label, path, app in (("+ banner, template, returning visitor", "/page", with_banner),
                             ("+ banner, template + CSRF field, returning", "/form",
                              with_banner),
                             ("least: a hook that swaps a kept page", "/page", least),
                             ("least, + its template globals, policy header", "/page",
                              least_app(page, surface=True))):
        bare_call = wsgi_call(bare, EnvironBuilder(path=path, headers=cookie).get_environ())
        call = wsgi_call(app, EnvironBuilder(path=path, headers=cookie).get_environ())
        print_row(label, call, bare_call, number, repeat)


def main() -> None:
    # the warnings about the page's unmarked trackers are for developers, not this table
    logging.getLogger("flask_consentkit").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    args = parser.parse_args()
    bench_rewrite(args.quick)
    bench_requests(args.quick)
    bench_large_requests(args.quick)


if __name__ == "__main__":
    main()
