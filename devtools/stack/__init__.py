"""The local stack: Azurite, the local Key Vault and devhost as processes, for `make run` and the tests."""
