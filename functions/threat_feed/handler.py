"""Lambda entry point of the threat feed updater.

Events: the module's schedule, one rule per refresh interval, whose input is
``{"feeds": [<names>]}``; an operator's ``{"feeds": [...]}`` or ``{}`` (every feed and
the manual list); an EventBridge ``Scheduled Event`` (every feed). Anything else is a
logged rejection, not a retry loop. A wrong environment raises (the errors alarm fires);
a feed that fails is reported and keeps its last good list.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common import events
from functions.threat_feed import logic

logger = Logger(service=logic.FUNCTION_NAME)


def _names(event: Any) -> list[str] | str | None:
    """The feeds asked for (None: all), or why the event is refused."""
    if not isinstance(event, dict):
        return f"expected a JSON object, got {type(event).__name__}"
    if "detail-type" in event:
        mismatch = events.source_mismatch(event)
        if mismatch:
            return mismatch
        if event.get("detail-type") != events.SCHEDULED_EVENT:
            return f"unexpected event {str(event.get('detail-type'))[:80]!r}"
        return None
    extra = set(event) - {"feeds"}
    if extra:
        return f"unknown keys {sorted(extra)}"
    feeds = event.get("feeds")
    if feeds is None:
        return None
    if not isinstance(feeds, list) or not feeds or not all(isinstance(f, str) for f in feeds):
        return "feeds must be a non-empty list of feed names"
    return feeds


@logger.inject_lambda_context(log_event=False)
def lambda_handler(
    event: Any, context: LambdaContext, now: logic.Now = logic.system_now
) -> dict[str, Any]:
    names = _names(event)
    if isinstance(names, str):
        logger.warning("event rejected", extra={"reason": names})
        return {"status": "rejected", "reason": names}
    config = logic.Config.from_env()
    result = logic.run(config, names, now)
    for item in result["lists"]:
        logger.info("list checked", extra={"list": item})
    return result
