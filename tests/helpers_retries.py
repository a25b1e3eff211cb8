"""Simulated lost responses: a write lands, its answer never arrives, botocore retries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError


def lose_first_response(
    monkeypatch: pytest.MonkeyPatch,
    client: Any,
    operation: str,
    matches: Callable[[dict[str, Any]], bool] = lambda _: True,
    before: Callable[[], None] = lambda: None,
) -> list[str]:
    """The first matching call lands but its response is lost, and botocore retries it.

    The retry is the same request sent again; what it answers is what the caller sees.
    ``before`` runs just before the lost attempt (a concurrent writer getting in). Returns
    the error code the retry answered, once the lost attempt has happened.
    """
    real = getattr(client, operation)
    answered: list[str] = []

    def call(**kwargs: Any) -> Any:
        if answered or not matches(kwargs):
            return real(**kwargs)
        before()
        real(**kwargs)  # lands; its response never reaches the caller
        try:
            response = real(**kwargs)
        except ClientError as exc:
            answered.append(exc.response["Error"]["Code"])
            raise
        answered.append("ok")
        return response

    monkeypatch.setattr(client, operation, call)
    return answered
