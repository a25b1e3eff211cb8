"""Lambda entry point; :func:`functions.common.blocking.dispatch` recognises the event
and hands it to :mod:`logic`."""

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
