"""The `cpin` command: one CLI over the spec, the harness, the reference node and the load tests."""

__version__ = "0.1.0"
