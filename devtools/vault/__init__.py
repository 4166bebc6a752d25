"""localvault: a local stand-in for the Azure Key Vault keys API.

It serves the subset of the Key Vault REST API that this project uses over HTTPS,
plus a managed-identity token endpoint over HTTP, so the real Azure SDK
(``KeyClient``, ``CryptographyClient``, ``ManagedIdentityCredential``) can run
against it.  Ports, paths and the time-shift API follow Lowkey Vault's
conventions so the two can be swapped.  Run it with ``python -m devtools.vault``.
"""
