"""consent_given, consent_changed and consent_withdrawn."""

from __future__ import annotations

from contextlib import ExitStack

from flask_consentkit import consent_changed, consent_given, consent_withdrawn

from .helpers import decide


def record(app):
    events = []
    stack = ExitStack()
    for name, signal in (("given", consent_given), ("changed", consent_changed),
                         ("withdrawn", consent_withdrawn)):
        def receiver(sender, *, state, previous, _name=name, **extra):
            assert sender is app
            events.append((_name, sorted(previous.granted), sorted(state.granted)))
        stack.enter_context(signal.connected_to(receiver, sender=app))
    return events, stack


def test_signals_follow_the_decisions(app, client):
    events, stack = record(app)
    with stack:
        decide(client, "save", categories=["analytics"])
        assert events == [
            ("given", ["necessary"], ["analytics", "necessary"]),
            ("changed", ["necessary"], ["analytics", "necessary"]),
        ]
        events.clear()
        decide(client, "save", categories=["analytics"])  # same again: nothing changes
        assert events == []
        decide(client, "reject_all")
        assert events == [
            ("changed", ["analytics", "necessary"], ["necessary"]),
            ("withdrawn", ["analytics", "necessary"], ["necessary"]),
        ]


def test_first_reject_is_a_change_but_neither_given_nor_withdrawn(app, client):
    events, stack = record(app)
    with stack:
        decide(client, "reject_all")
    assert events == [("changed", ["necessary"], ["necessary"])]


def test_state_in_the_signal_is_the_new_decision(app, client):
    seen = []

    def receiver(sender, state, previous, **extra):
        seen.append((state.decided, state.consent_id, previous.decided))

    with consent_given.connected_to(receiver, sender=app):
        decide(client, "accept_all")
    assert seen[0][0] is True and seen[0][1] and seen[0][2] is False


def test_rejected_requests_send_nothing(app, client):
    events, stack = record(app)
    with stack:
        client.post("/consent/", json={"action": "accept_all"},
                    headers={"Origin": "https://evil.example"})
        client.post("/consent/", json={"action": "bogus"})
    assert events == []
