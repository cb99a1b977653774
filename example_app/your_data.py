"""The "about your data" page: what the site knows of the visitor right now."""

from __future__ import annotations

from flask import Flask, render_template

from flask_consentkit import current_consent, technical_data
from flask_consentkit.extension import get_kit_state

#: (field, what it is, which collection rule governs it)
FIELDS = [
    ("ip", "IP address (shortened)", "ip"),
    ("country", "Country", "geo"),
    ("region", "Region", "geo"),
    ("city", "City", "geo"),
    ("browser", "Browser", "user_agent"),
    ("browser_version", "Browser version", "user_agent"),
    ("os", "Operating system", "user_agent"),
    ("os_version", "Operating system version", "user_agent"),
    ("device_type", "Device type", "user_agent"),
]


def register_your_data(app: Flask) -> None:
    @app.get("/about/data")
    def your_data() -> str:
        data = technical_data().as_dict()
        rules = get_kit_state().settings.collection_rules
        rows = [
            {
                "field": field,
                "label": label,
                "value": data[field],
                "category": rules[rule],
                "allowed": current_consent.allows(rules[rule]),
            }
            for field, label, rule in FIELDS
        ]
        return render_template("your_data.html", rows=rows)
