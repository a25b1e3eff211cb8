"""Record the AWS API calls remediator code makes, for the declared-permissions meta-tests.

Every remediator gets its clients from :mod:`functions.common.aws`, so a ``before-call``
hook on that module's session sees each call its code makes (and none made by test setup,
which uses plain boto3). Use::

    with record_calls() as calls:
        run_the_handler(...)
    assert calls <= permissions.actions(PERMISSIONS)

Calls are named ``<endpoint prefix>:<operation>``, which equals the IAM action for the
services remediators use here; a few services differ (CloudWatch's endpoint prefix is
``monitoring``), so map those before comparing if a remediator ever calls them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from functions.common import aws


@contextlib.contextmanager
def record_calls() -> Iterator[set[str]]:
    # Clients copy the session's event hooks when they are created, so start from a fresh
    # session and register before the code under test creates any client.
    aws.reset()
    calls: set[str] = set()

    def record(model: Any, **_: Any) -> None:
        calls.add(f"{model.service_model.endpoint_prefix}:{model.name}")

    events = aws.session().events
    events.register("before-call", record, unique_id="tests-record-calls")
    try:
        yield calls
    finally:
        events.unregister("before-call", unique_id="tests-record-calls")
        aws.reset()
