"""A small storytelling site that uses flask-consentkit with its defaults.

Run it with ``flask --app example_app run`` (http://127.0.0.1:5000).
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, render_template

from flask_consentkit import ConsentKit

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
        return render_template("story.html", story=STORIES[slug], slug=slug)

    @app.get("/about")
    def about() -> str:
        return render_template("about.html")

    return app
