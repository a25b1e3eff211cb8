"""The incident_response part of the demo answers its two custom actions for real."""

from __future__ import annotations

import pytest

from bundle import demo_response

pytestmark = pytest.mark.unit


def test_the_demo_disables_the_leaked_key_revokes_the_role_and_prints_the_notes() -> None:
    response = demo_response.run()

    assert [(a.action, a.outcome, a.workflow) for a in response.answers] == [
        ("Disable Access Keys", "done", "NOTIFIED"),
        ("Revoke Sessions", "done", "NOTIFIED"),
    ]
    assert response.answers[0].note.startswith("Disable Access Keys: done. deactivated access key")
    assert response.answers[1].note.startswith(
        "Revoke Sessions: done. revoked the sessions of role web-instance-role"
    )
    assert response.after[0].endswith(": Inactive (the leaked one)")
    assert response.after[1].endswith(": Active")
    assert "AWSRevokeOlderSessions denies ['*']" in response.after[2]
    assert sorted(response.reports) == [
        "Disable Access Keys: 1 of 1 findings acted on",
        "Revoke Sessions: 1 of 1 findings acted on",
    ]
    printed = "\n".join(demo_response.lines(response))
    assert "Security Hub note: Revoke Sessions: done." in printed
