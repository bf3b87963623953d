"""The reference node (national, regional, industry roles). Not built yet (issue 3).

It will share nothing with `conformance` but `spec/`.
"""
