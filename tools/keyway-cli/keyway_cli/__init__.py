"""Keyway's operator tools, outside every service image.

The ``keyway`` command (``keyway keys rotate``, ``export``, ``import``, ``import-nango``; see ``main``)
and the generator of ``docs/configuration.md`` (``config_reference``), which reads every service's
settings class and so may import the services, which the shared library never does.
"""
