"""A test app that serves Flaskr's templates the way their owner runs them.

The owner followed the README's quick start (``ConsentKit(app)``, a secret key and a
privacy-policy URL, nothing declared) after pasting the vendors' snippets into the templates
(see SOURCE.txt). The Python here is this test suite's own, not Flaskr's: blueprints and
endpoints named as Flaskr names them, an in-memory list of posts, nobody logged in.
``/_vendors/cookies`` stands in for the vendors' scripts, which would write their cookies on
this site in a browser that reached them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, flash, g, redirect, render_template, session, url_for
from werkzeug.wrappers import Response as BaseResponse

from flask_consentkit import ConsentKit

HERE = Path(__file__).resolve().parent
SECRET = "flaskr-test-secret-key-long-enough"
#: the cookies GA4, the Meta pixel, Yandex Metrica and Hotjar write on the site's own domain
VENDOR_COOKIES = {
    "_ga": ("GA1.1.1234567890.1767225600", False),
    "_ga_X": ("GS1.1.1767225600.1.0.1767225600.0.0.0", True),
    "_gid": ("GA1.1.987654321.1767225600", False),
    "_fbp": ("fb.1.1767225600000.1234567890", False),
    "_ym_uid": ("1767225600123456789", False),
    "_hjSessionUser_1": ("eyJpZCI6IjEyMyJ9", True),
}
POSTS = [
    {"id": 1, "title": "Hello", "body": "The first post.\nOn two lines.", "author_id": 1,
     "username": "ada", "created": dt.datetime(2026, 11, 1, 9, 30)},
    {"id": 2, "title": "Second", "body": "Another post.", "author_id": 1, "username": "ada",
     "created": dt.datetime(2026, 11, 2, 18, 0)},
]


def create_app(instance: Path, **config: Any) -> Flask:
    app = Flask(__name__, instance_path=str(instance), template_folder="templates",
                static_folder="static")
    app.config.update(
        SECRET_KEY=SECRET,
        CONSENTKIT_PRIVACY_POLICY_URL="/privacy",
        CONSENTKIT_LEDGER_URL=f"sqlite:///{instance / 'consentkit-ledger.sqlite3'}",
    )
    app.config.update(config)
    ConsentKit(app)  # the README's quick start

    @app.before_request
    def load_logged_in_user() -> None:
        g.user = None

    @app.get("/")
    def index() -> str:
        session["visits"] = session.get("visits", 0) + 1  # the app's own session cookie
        return render_template("blog/index.html", posts=POSTS)

    @app.get("/privacy")
    def privacy() -> str:
        return render_template("blog/index.html", posts=[])

    @app.get("/_vendors/cookies")
    def vendor_cookies() -> Response:
        response = Response(status=204)
        for name, (value, httponly) in VENDOR_COOKIES.items():
            response.set_cookie(name, value, max_age=400 * 86400, httponly=httponly,
                                samesite="Lax")
        response.set_cookie("theme", "dark", samesite="Lax")  # the app's own, unknown to all
        return response

    auth = Blueprint("auth", __name__, url_prefix="/auth")

    @auth.route("/register", methods=("GET", "POST"))
    def register() -> str:
        return render_template("auth/register.html")

    @auth.route("/login", methods=("GET", "POST"))
    def login() -> str:
        return render_template("auth/login.html")

    @auth.get("/logout")
    def logout() -> BaseResponse:
        session.clear()
        return redirect(url_for("index"))

    blog = Blueprint("blog", __name__)

    @blog.route("/create", methods=("GET", "POST"))
    def create() -> str:
        return render_template("blog/create.html")

    @blog.route("/<int:id_>/update", methods=("GET", "POST"))
    def update(id_: int) -> str:
        return render_template("blog/update.html", post=POSTS[id_ - 1])

    @blog.post("/<int:id_>/delete")
    def delete(id_: int) -> BaseResponse:
        flash("Deleted.")
        return redirect(url_for("index"))

    app.register_blueprint(auth)
    app.register_blueprint(blog)
    return app
