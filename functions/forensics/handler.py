"""Lambda entry point of the forensics workflow's steps.

The Step Functions state machine invokes it once per step with ``{"step": <name>, ...}``
(``functions/forensics/workflow.py`` writes those payloads); :func:`logic.run` does the
work. A step that cannot do its part raises, and the exception's class name becomes the
error the state machine retries (``EvidencePending``) or catches (``StepFailed``, anything
else); the first step answers a spoofed or malformed start event with a rejection instead.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.forensics import logic

logger = Logger(service=logic.FUNCTION_NAME)


@logger.inject_lambda_context(log_event=False)
def lambda_handler(
    event: Any, context: LambdaContext, now: logic.Now = logic.system_now
) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise logic.StepFailed(f"expected a JSON object, got {type(event).__name__}")
    config = logic.Config.from_env()
    result = logic.run(event, config, now)
    if result.get("status") == "rejected":
        logger.warning("start event rejected", extra={"reason": result["reason"]})
    else:
        logger.info(
            "step finished",
            extra={k: result.get(k) for k in ("step", "status", "instanceId", "repeated")},
        )
    return result
