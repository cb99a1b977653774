"""A small storytelling site that uses flask-consentkit with its defaults.

Run it with ``flask --app example_app run`` (http://127.0.0.1:5000).
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, Response, render_template, request

from flask_consentkit import ConsentKit, requires_consent

consent = ConsentKit()

STORIES = {
    "lighthouse": {
        "title": "The Lighthouse Keeper",
        "lede": "A keeper on the Caspian coast counts ships and stars until one night "
        "a light answers back.",
    },
    "caravan": {
        "title": "The Silk Caravan",
        "lede": "A merchant's daughter maps the old road from Shaki to Tabriz, "
        "one caravanserai at a time.",
    },
}


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.config.update(
        SECRET_KEY=os.environ.get("EXAMPLE_SECRET_KEY", "dev only: set EXAMPLE_SECRET_KEY"),
        CONSENTKIT_PRIVACY_POLICY_URL="/about",
        # who visitors deal with, as the privacy policy names them: kept in every notice
        CONSENTKIT_CONTROLLER={"name": "Storyforge (example)",
                               "address": "1 Example Street, Baku 1000, Azerbaijan",
                               "email": "privacy@storyforge.example"},
        # cookies the site itself sets for analytics: filtered and expired by consent
        CONSENTKIT_COOKIES={"analytics": ["sf_visitor", "sf_last_story"]},
        # the one third party the site embeds, named on the preferences page (catalogue key)
        CONSENTKIT_SERVICES=["youtube"],
        STORYFORGE_EMBED_URL="https://www.youtube-nocookie.com/embed/aqz-KE-bpKQ",
        CONSENTKIT_GEOIP_DATABASE=os.environ.get("EXAMPLE_GEOIP_DATABASE"),
    )
    if config:
        app.config.update(config)
    consent.init_app(app)

    @app.get("/")
    def home() -> str:
        return render_template("home.html", stories=STORIES)

    @app.get("/story/<slug>")
    def story(slug: str) -> str:
        if slug not in STORIES:
            from flask import abort

            abort(404)
        response = Response(render_template("story.html", story=STORIES[slug], slug=slug))
        # set on every visit; the extension removes it unless analytics is allowed
        response.set_cookie("sf_last_story", slug, max_age=30 * 86400, samesite="Lax")
        return response

    @app.get("/sitemap.xml")
    def sitemap() -> Response:  # every story, so that `flask consent scan` visits them all
        urls = "".join(f"<url><loc>{request.url_root}story/{slug}</loc></url>"
                       for slug in STORIES)
        return Response('<?xml version="1.0" encoding="UTF-8"?><urlset xmlns='
                        f'"http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>',
                        mimetype="application/xml")

    @app.get("/about")
    def about() -> str:
        return render_template("about.html")

    _enforcement_demo(app)
    from .your_data import register_your_data

    register_your_data(app)
    return app


def _enforcement_demo(app: Flask) -> None:
    """A self-hosted analytics beacon and a page to watch enforcement work."""
    stats = {"beacon_requests": 0, "beacon_recorded": 0}
    app.extensions["storyforge"] = stats

    @app.before_request
    def count_beacon_requests() -> None:
        if request.path == "/beacon":
            stats["beacon_requests"] += 1

    @app.post("/beacon")
    @requires_consent("analytics")
    def beacon() -> Response:
        stats["beacon_recorded"] += 1
        response = Response(status=204)
        if "sf_visitor" not in request.cookies:
            import secrets

            response.set_cookie("sf_visitor", secrets.token_urlsafe(12), max_age=365 * 86400,
                                httponly=True, samesite="Lax")
        return response

    @app.get("/watch")
    def watch() -> str:
        return render_template(
            "watch.html",
            stats=stats,
            cookie_names=sorted(request.cookies),
            embed_url=app.config["STORYFORGE_EMBED_URL"],
        )
