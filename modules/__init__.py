"""The security modules, one CDK Terrain construct each, registered by name."""

from __future__ import annotations

from bundle.module import ModuleStack
from modules.config_rules import ConfigRulesModule
from modules.forensics import ForensicsModule
from modules.incident_response import IncidentResponseModule
from modules.nacl_blocklist import NaclBlocklistModule
from modules.notifications import NotificationsModule
from modules.threat_lists import ThreatListsModule
from modules.waf_shield import WafShieldModule

REGISTRY: dict[str, type[ModuleStack]] = {
    module.name: module
    for module in (
        NotificationsModule,
        WafShieldModule,
        NaclBlocklistModule,
        ForensicsModule,
        ThreatListsModule,
        IncidentResponseModule,
        ConfigRulesModule,
    )
}
