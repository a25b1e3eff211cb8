"""One writer per resource at a time: a lease item in the point's state table.

``lease#<name>`` holds the holder's random token and ``expires_at`` (the table's TTL
attribute). Taking it is a conditional PutItem (free, or expired); a busy lease is waited
for with short jittered backoff bounded by the invocation's deadline, then
:class:`LeaseBusy` is raised so Lambda retries the event. It is released in a ``finally``
(conditional on the token). Before each write the holder calls :meth:`Leases.own`, which
renews it conditionally on the token and raises :class:`LeaseLost` once another writer
holds it. docs/architecture.md, section 44, says why that is safe when a holder outlives
its lease.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from functions.common import aws
from functions.common.blocking import Attempts, Clock
from functions.common.state import StateTable, key

LEASE_PREFIX = "lease#"
# How long a lease holds without renewal. The holder renews it before every write, so it
# must only outlast one API call (botocore's retries included); a holder that dies leaves
# the resource blocked for at most this long.
LEASE_SECONDS = 30
# A holder keeps a lease for a few hundred milliseconds, so the waits for a busy one stay
# short (full jitter up to this cap) and many; the Lambda's deadline bounds them.
LEASE_BACKOFF_CAP_SECONDS = 0.25
LEASE_ATTEMPTS = 200

logger = Logger(child=True)


class LeaseBusy(RuntimeError):
    """Another invocation kept the lease for longer than this one could wait."""


class LeaseLost(RuntimeError):
    """This invocation's lease expired and another writer took it: stop writing."""


class Leases:
    """The leases this invocation holds, on resources that ``noun`` names in errors."""

    def __init__(self, table: StateTable, clock: Clock, noun: str) -> None:
        self.table = table
        self.clock = clock
        self.noun = noun
        self._held: dict[str, str] = {}  # name -> token

    def _take(self, name: str, token: str) -> bool:
        now = int(self.clock.now())
        try:
            self.table.db.put_item(
                TableName=self.table.name,
                Item={
                    **key(LEASE_PREFIX + name),
                    "owner": {"S": token},
                    "expires_at": {"N": str(now + LEASE_SECONDS)},
                },
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
                ExpressionAttributeValues={":now": {"N": str(now)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not aws.is_conditional_failure(exc):
                raise
            # The lease as it stands: this very put, retried after its answer was lost,
            # finds its own token there.
            return bool(exc.response.get("Item", {}).get("owner") == {"S": token})
        return True

    @contextmanager
    def holding(self, name: str) -> Iterator[None]:
        """Hold the lease of ``name`` for the block; released however it ends."""
        token = uuid.uuid4().hex
        attempts = Attempts(self.clock, LEASE_ATTEMPTS, cap=LEASE_BACKOFF_CAP_SECONDS)
        for attempt in attempts:
            if self._take(name, token):
                break
            if not attempts.wait(attempt):
                raise LeaseBusy(
                    f"{self.noun} {name} is being written by another invocation "
                    f"{attempts.summary()}; Lambda retries the event"
                )
        self._held[name] = token
        try:
            yield
        finally:
            del self._held[name]
            try:
                # A failed condition: no longer ours (taken over, or released by this
                # request's own first attempt).
                self.table.conditional(
                    self.table.db.delete_item,
                    Key=key(LEASE_PREFIX + name),
                    ConditionExpression="#owner = :token",
                    ExpressionAttributeNames={"#owner": "owner"},
                    ExpressionAttributeValues={":token": {"S": token}},
                )
            except (ClientError, BotoCoreError):
                logger.warning("lease not released; it expires", extra={"lease": name})

    def own(self, name: str) -> None:
        """Renew this invocation's lease on ``name`` before a write, or raise LeaseLost."""
        token = self._held.get(name)
        if token is None or not self.table.conditional(
            self.table.db.update_item,
            Key=key(LEASE_PREFIX + name),
            UpdateExpression="SET expires_at = :until",
            ConditionExpression="#owner = :token",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={
                ":token": {"S": token},
                ":until": {"N": str(int(self.clock.now()) + LEASE_SECONDS)},
            },
        ):
            raise LeaseLost(
                f"the lease of {name} expired and another writer holds it; nothing more is "
                "written, Lambda retries the event and the sweep reconciles"
            )
