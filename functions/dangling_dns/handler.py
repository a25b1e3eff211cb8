"""Lambda entry point of the ``dangling-dns`` custom Config rule.

Config invokes it on its schedule (``invokingEvent`` + ``resultToken``); EventBridge
invokes it on Route 53 changes (CloudTrail). Anything else, or a CloudTrail event whose
source is not aws.route53, is a logged rejection, not an error to retry.

AWS's published EC2 address ranges are fetched once per warm container
(https://ip-ranges.amazonaws.com/ip-ranges.json, a public document); when they cannot be
fetched the A-record check is skipped for that run (logged), the other checks still run.
"""

from __future__ import annotations

import ipaddress
import json
import urllib.request
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.dangling_dns import logic

logger = Logger(service=logic.FUNCTION_NAME)
IP_RANGES_URL = "https://ip-ranges.amazonaws.com/ip-ranges.json"


@cache
def aws_ec2_ranges() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        with urllib.request.urlopen(IP_RANGES_URL, timeout=10) as response:
            document = json.load(response)
    except (OSError, ValueError) as exc:
        logger.warning(
            "AWS IP ranges unavailable; A records not checked", extra={"error": str(exc)}
        )
        aws_ec2_ranges.cache_clear()
        return ()
    return logic.ec2_networks(document)


@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    if not isinstance(event, dict):
        return {
            "status": "rejected",
            "reason": f"expected a JSON object, got {type(event).__name__}",
        }
    try:
        result = logic.handle(event, logic.Config.from_env(), aws_ec2_ranges)
    except logic.Rejected as exc:
        logger.warning("event rejected", extra={"reason": str(exc)})
        return {"status": "rejected", "reason": str(exc)}
    logger.info(
        "dangling-dns handled", extra={k: v for k, v in result.items() if k != "nonCompliant"}
    )
    return result
