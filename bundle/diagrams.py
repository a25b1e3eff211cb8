"""A picture of an environment's rollout: ``python main.py diagram --env E``.

Drawn with the ``diagrams`` package (Graphviz underneath): the accounts grouped by wave,
the organisation's hub, and for each account the flows of its enabled modules, detection
(GuardDuty, Security Hub, AWS Config) -> EventBridge -> remediation, and alerting through
the hub's bus, topics and notifier to people. Waves with many accounts are drawn as one
node per region set (a 200-account wave stays readable).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bundle.environments import Environment, Stack

ACCOUNTS_DRAWN_PER_WAVE = 6
# What each module's remediation looks like, by the kind of AWS resource that acts.
REMEDIATION = {
    "waf_shield": ("waf", "WAF blocklists\n(waf_blocker)"),
    "nacl_blocklist": ("lambda", "NACL deny entries\n(nacl_blocker)"),
    "forensics": ("stepfunctions", "forensic isolation\n(Step Functions)"),
}


def render(environment: Environment, directory: Path) -> list[Path]:
    """Write ``<env>.png`` and ``<env>.svg`` into ``directory``; returns their paths."""
    from diagrams import Cluster, Diagram, Edge
    from diagrams.aws.compute import Lambda
    from diagrams.aws.general import Users
    from diagrams.aws.integration import (
        EventbridgeCustomEventBusResource,
        EventbridgeDefaultEventBusResource,
        SimpleNotificationServiceSnsTopic,
        StepFunctions,
    )
    from diagrams.aws.management import Config, Organizations
    from diagrams.aws.security import WAF, Guardduty, SecurityHub

    directory.mkdir(parents=True, exist_ok=True)
    base = directory / environment.name
    kinds = {"waf": WAF, "lambda": Lambda, "stepfunctions": StepFunctions}
    organization = environment.organization
    with Diagram(
        f"{environment.name}: rollout by wave",
        filename=str(base),
        outformat=["png", "svg"],
        show=False,
        direction="LR",
        graph_attr={"fontsize": "20", "pad": "0.4"},
    ):
        people = Users("on-call\n(Slack, Teams, e-mail)")
        hub_bus = None
        if organization is not None:
            with Cluster(f"organisation {organization.id}"):
                Organizations("AWS Organizations")
                with Cluster(f"hub: {organization.hub_account}"):
                    hub_bus = EventbridgeCustomEventBusResource("hub bus\n(PrincipalOrgID)")
                    topics = SimpleNotificationServiceSnsTopic("severity topics")
                    notifier = Lambda("notifier")
                    hub_bus >> Edge(label="findings, reports") >> topics >> notifier >> people
        for number, stacks in environment.waves().items():
            wave = environment.wave(number)
            title = f"wave {number}" + (f": {wave.name}" if wave.name else "")
            title += f"  (max {wave.max_parallel} at once" + (
                ", stops on failure)" if wave.stop_on_failure else ")"
            )
            with Cluster(title):
                for label, group in _account_groups(stacks):
                    modules = sorted({m for stack in group for m in stack.modules})
                    with Cluster(label):
                        bus = EventbridgeDefaultEventBusResource("default bus")
                        for detector in (Guardduty("GuardDuty"), SecurityHub("Security Hub"),
                                         Config("AWS Config")):  # fmt: skip
                            detector >> Edge(label="finding") >> bus
                        for module in modules:
                            if module in REMEDIATION:
                                kind, text = REMEDIATION[module]
                                bus >> Edge(label="remediate") >> kinds[kind](text)
                        if hub_bus is not None and "notifications" in modules:
                            bus >> Edge(label="forward", style="dashed") >> hub_bus
                        elif "notifications" in modules:
                            local = SimpleNotificationServiceSnsTopic("topics + notifier")
                            bus >> local >> people
    return [base.with_suffix(".png"), base.with_suffix(".svg")]


def _account_groups(stacks: Sequence[Stack]) -> list[tuple[str, list[Stack]]]:
    """One group per account, or, past ACCOUNTS_DRAWN_PER_WAVE accounts, one per wave."""
    accounts: dict[str, list[Stack]] = {}
    for stack in stacks:
        accounts.setdefault(stack.account.name, []).append(stack)
    if len(accounts) > ACCOUNTS_DRAWN_PER_WAVE:
        regions = sorted({stack.region for stack in stacks})
        return [(f"{len(accounts)} accounts x {', '.join(regions)}", list(stacks))]
    return [
        (
            f"{name} ({group[0].account.id})\n{', '.join(s.region for s in group)}",
            group,
        )
        for name, group in accounts.items()
    ]
