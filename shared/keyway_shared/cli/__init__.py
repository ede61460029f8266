"""The ``keyway`` operator command (``keyway keys rotate``, ``export``, ``import``, ``import-nango``)."""
