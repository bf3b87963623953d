"""The requirement-traced tests, one module per conformance class.

Run them through `cpin certify` or plain pytest (`pytest --pyargs conformance.suite --ics F`).
Every test carries `@pytest.mark.requirement(...)` with catalogue ids; the plugin refuses
a test without ids or with an unknown id.
"""
