"""Lambda entry point of the responder (``functions.responder.handler.lambda_handler``).

Events: a Security Hub ``Security Hub Findings - Custom Action`` (Disable Access Keys,
Revoke Sessions) and, when automatic responses are on, a ``GuardDuty Finding`` of a
credential type. :func:`logic.handle` does the work. Environment:
``DISABLE_ACCESS_KEYS_ACTION_ARN``, ``REVOKE_SESSIONS_ACTION_ARN`` (the custom actions
answered), ``AUTOMATIC_FINDING_TYPES`` (JSON list; empty: no automatic response),
``DRY_RUN`` (``true`` changes nothing), ``NOTIFY_TOPIC_ARN`` and ``REPORT_EVENT_BUS``
(where reports go; empty: not there).

A finding or event the responder does not answer is a logged rejection, not an error; AWS
failures raise, so Lambda retries the event (every step is idempotent) and then hands it
to the dead-letter queue.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.responder import logic

logger = Logger(service=logic.FUNCTION_NAME)


@logger.inject_lambda_context(log_event=False)
def lambda_handler(
    event: Any, context: LambdaContext, now: logic.Now = logic.system_now
) -> dict[str, Any]:
    result = logic.handle(event, logic.Config.from_env(), now)
    if result["status"] == "rejected":
        logger.warning("event rejected", extra={"reason": result["reason"]})
    else:
        logger.info(
            "responded",
            extra={
                "action": result["action"],
                "dryRun": result["dryRun"],
                "findings": [(f["findingId"], f["status"]) for f in result["findings"]],
            },
        )
    return result
