"""An enforcement point's state table: one DynamoDB table, partition key ``pk``, TTL
attribute ``expires_at``.

What every point keeps there goes through this class: block rows (:meth:`upsert`: the
expiry only ever moves later), conditional deletes that tell a re-block from a retry of
their own delete, paged consistent scans by key prefix, and first sightings (when a sweep
first saw something). Other items (the leases of :mod:`functions.common.lease`) build on
:meth:`conditional` and :meth:`item`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from functions.common import aws


def key(pk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}}


class StateTable:
    """``expiry``: the attribute that holds a row's expiry. The WAF's rows keep it in the
    TTL attribute (DynamoDB deletes them some time after); the NACL's in another, because
    its rows must stand until the sweep has removed their entries."""

    def __init__(self, name: str, expiry: str = "expires_at") -> None:
        self.name = name
        self.expiry = expiry
        self.db = aws.client("dynamodb")

    def conditional(self, call: Callable[..., Any], **request: Any) -> bool:
        """Run a conditional write; ``False`` when its condition did not hold."""
        try:
            call(TableName=self.name, **request)
        except ClientError as exc:
            if aws.is_conditional_failure(exc):
                return False
            raise
        return True

    def item(self, pk: str) -> dict[str, Any]:
        """The item now (strongly consistent); empty when there is none."""
        found: dict[str, Any] = self.db.get_item(
            TableName=self.name, Key=key(pk), ConsistentRead=True
        ).get("Item", {})
        return found

    def scan(self, *prefixes: str, where: str = "", **request: Any) -> Iterator[dict[str, Any]]:
        """Every item whose key starts with one of ``prefixes`` (and matches ``where``),
        strongly consistent, page by page."""
        values = {f":p{i}": {"S": prefix} for i, prefix in enumerate(prefixes)}
        condition = " OR ".join(f"begins_with(pk, {name})" for name in values)
        request["ExpressionAttributeValues"] = {
            **request.get("ExpressionAttributeValues", {}),
            **values,
        }
        request["FilterExpression"] = f"({condition}) AND {where}" if where else condition
        while True:
            page = self.db.scan(TableName=self.name, ConsistentRead=True, **request)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def upsert(
        self,
        pk: str,
        identity: Mapping[str, Mapping[str, str]],
        *,
        expires_at: int,
        reason: str,
        finding_ids: Sequence[str],
        now: int,
    ) -> int:
        """Record a block (``identity``: the point's own attributes of the row); returns the
        row's expiry, which never moves earlier."""
        names = {f"#{name}": name for name in identity}
        values: dict[str, Any] = {f":{name}": value for name, value in identity.items()}
        names |= {
            "#reason": "reason",
            "#last": "last_seen",
            "#first": "first_seen",
            "#expires": self.expiry,
            "#hits": "hit_count",
        }
        values |= {
            ":reason": {"S": reason},
            ":now": {"N": str(now)},
            ":expires": {"N": str(expires_at)},
            ":one": {"N": "1"},
        }
        own = ", ".join(f"#{name} = :{name}" for name in identity)
        expression = (
            f"SET {own}, #reason = :reason, #last = :now, #first = if_not_exists(#first, :now), "
            "#expires = if_not_exists(#expires, :expires) ADD #hits :one"
        )
        if finding_ids:
            names["#findings"] = "finding_ids"
            values[":findings"] = {"SS": list(dict.fromkeys(finding_ids))}
            expression += ", #findings :findings"
        response = self.db.update_item(
            TableName=self.name,
            Key=key(pk),
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
        current = int(response["Attributes"][self.expiry]["N"])
        if current >= expires_at:
            return current
        # DynamoDB has no max(); a conditional SET gives "extend, never shorten", and a
        # failed condition means a concurrent writer extended it further already.
        with contextlib.suppress(self.db.exceptions.ConditionalCheckFailedException):
            self.db.update_item(
                TableName=self.name,
                Key=key(pk),
                UpdateExpression="SET #expires = :expires",
                ConditionExpression="#expires < :expires",
                ExpressionAttributeNames={"#expires": self.expiry},
                ExpressionAttributeValues={":expires": {"N": str(expires_at)}},
            )
        return expires_at

    def delete_if_unchanged(self, pk: str, expires_at: int | None) -> bool:
        """Delete a row only if it still expires at ``expires_at`` (``None``: if absent);
        ``True`` once it is gone, ``False`` while it stands re-blocked.

        A failed condition on a row that no longer exists is not a re-block: the row was
        deleted, by a concurrent sweep or by this very request, whose first attempt landed
        and whose response was lost before botocore retried it.
        """
        if expires_at is None:
            return self.conditional(
                self.db.delete_item, Key=key(pk), ConditionExpression="attribute_not_exists(pk)"
            )
        return self.conditional(
            self.db.delete_item,
            Key=key(pk),
            ConditionExpression="#expires = :seen",
            ExpressionAttributeNames={"#expires": self.expiry},
            ExpressionAttributeValues={":seen": {"N": str(expires_at)}},
        ) or not self.item(pk)

    def delete(self, pk: str) -> bool:
        """Delete an item; ``True`` if there was one."""
        response = self.db.delete_item(TableName=self.name, Key=key(pk), ReturnValues="ALL_OLD")
        return "Attributes" in response

    def first_seen(self, pk: str, now: int, keep_seconds: int) -> int:
        """When something was first seen (now, on first sight); a sighting older than
        ``keep_seconds`` is from an earlier episode, and this one starts now."""
        if self.conditional(
            self.db.put_item,
            Item={
                **key(pk),
                "first_seen": {"N": str(now)},
                "expires_at": {"N": str(now + keep_seconds)},
            },
            ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
            ExpressionAttributeValues={":now": {"N": str(now)}},
        ):
            return now
        return int(self.item(pk).get("first_seen", {}).get("N", now))
