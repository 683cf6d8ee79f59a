"""The ``edge-sdk`` command line: one small class per verb, heavy imports inside ``run``."""
