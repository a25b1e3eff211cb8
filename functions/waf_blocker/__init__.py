"""GuardDuty attacker addresses -> WAF IP set blocks that expire on their own."""
