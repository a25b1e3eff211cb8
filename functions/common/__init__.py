"""Runtime code shared by every remediator (packaged into each function zip)."""
