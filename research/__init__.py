"""Research code: probes, experiment drivers and outcome analyses (see research/README.md).

Not part of the installed package: pyproject's ``packages.find`` leaves it out. It imports the library
as any user would; nothing in the library imports it. Run a script from the repository root as
``python -m research.<script>``.
"""
