"""Signals sent when a visitor decides.

Connect receivers the usual blinker way; the sender is always the Flask app::

    from flask_consentkit import consent_changed

    @consent_changed.connect_via(app)
    def on_change(sender, state, previous, **extra):
        ...
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: Sent when a decision grants at least one category the visitor had not
#: granted before. Keyword arguments: ``state`` (the new
#: :class:`~flask_consentkit.ConsentState`) and ``previous`` (the state before
#: the decision).
consent_given = _signals.signal("consent-given")

#: Sent for every decision whose granted categories differ from the previous
#: state (including a first decision that only confirms ``necessary``).
#: Keyword arguments: ``state``, ``previous``.
consent_changed = _signals.signal("consent-changed")

#: Sent when a decision removes at least one previously granted category, and
#: when the visitor erases their data. Keyword arguments: ``state``, ``previous``.
consent_withdrawn = _signals.signal("consent-withdrawn")


#: Sent whenever :func:`~flask_consentkit.technical_data` returns data with at
#: least one field set. Keyword argument: ``data`` (the
#: :class:`~flask_consentkit.TechnicalData`).
technical_data_collected = _signals.signal("technical-data-collected")
