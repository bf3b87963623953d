"""Handlers, one module per conformance class; each registers with `@handles`."""
