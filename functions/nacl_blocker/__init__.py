"""GuardDuty attacker addresses -> network ACL deny entries that expire on their own."""
