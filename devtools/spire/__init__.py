"""SPIRE tooling: a Go tools module pinning spire-server and the contract suite, the e2e run, the server runner."""
