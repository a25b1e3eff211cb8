"""Lambda entry point: recognise the event, validate it, hand it to :mod:`logic`.

Four event shapes arrive here:

- a GuardDuty finding through EventBridge (``detail-type`` ``GuardDuty Finding``);
- the Security Hub "Block IP" custom action (``Security Hub Findings - Custom Action``
  naming ``BLOCK_IP_ACTION_ARN``; see :mod:`functions.common.intake`);
- the sweeper's schedule (``detail-type`` ``Scheduled Event``) or ``{"action": "sweep"}``;
- an operator's direct invocation ``{"action": "block"|"unblock", ...}``.

An event whose ``source`` is not the service its ``detail-type`` claims, anything else,
or a malformed event, returns a logged rejection instead of raising: a
retry would fail the same way. AWS failures do raise, so Lambda retries the event and
finally hands it to the on-failure destination.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common.blocking import dispatch
from functions.waf_blocker import logic

logger = Logger(service=logic.FUNCTION_NAME)


@logger.inject_lambda_context(log_event=False)
def lambda_handler(
    event: Any, context: LambdaContext, clock: logic.Clock = logic.SYSTEM_CLOCK
) -> dict[str, Any]:
    return dispatch(event, context, clock, logic, logger)
