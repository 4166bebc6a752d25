"""Local development tools, never deployed: ``host`` (a local Functions host), ``stack`` (the local
stack and a fault-injecting proxy) and ``vault`` (a local Key Vault)."""
