"""The conformance harness: judges a node over HTTP against spec/.

Built so far: identifier rules (`conformance.identifiers`), used by the spec validator to hold
the spec's vectors to account. The pytest plugin, requirement-traced tests, verdicts and
reports are not built yet (issue 4).
"""
