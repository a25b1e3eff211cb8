"""Lambda entry point: a "Config Rules Compliance Change" event in, the fix (or the report
of why not) out.

A spoofed or malformed event (a source other than aws.config, a missing field, a resource
type the rule's fix does not handle) returns a logged rejection instead of raising: a
retry would fail the same way. AWS failures raise, so Lambda retries the event and finally
hands it to the dead-letter queue, which raises an alarm.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.config_remediator import logic

logger = Logger(service=logic.FUNCTION_NAME)


@logger.inject_lambda_context(log_event=False)
def lambda_handler(
    event: Any, context: LambdaContext, now: logic.Now = logic.system_now
) -> dict[str, Any]:
    if not isinstance(event, dict):
        logger.warning("event rejected", extra={"reason": "not a JSON object"})
        return {
            "status": "rejected",
            "reason": f"expected a JSON object, got {type(event).__name__}",
        }
    try:
        result = logic.remediate(event, logic.Config.from_env(), now)
    except logic.Rejected as exc:
        logger.warning("event rejected", extra={"reason": str(exc)})
        return {"status": "rejected", "reason": str(exc)}
    logger.info("compliance change handled", extra=result)
    return result
