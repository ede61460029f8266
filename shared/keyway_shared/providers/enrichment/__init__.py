"""What happens once a connection is made: calls whose answers fill ``connection_config`` fields
(Nango's post-connection scripts), declared by the template.

- ``steps``: the declarative ``post_connection`` steps (a pydantic model the template is typed with);
- ``context``: what a step or hook works with, and the calls made as the proxy makes them;
- ``hooks``: code by Nango's script names, one module per provider, for what steps cannot say;
- ``runner``: :func:`~.runner.enrich`, which never fails a connection (problems come back as text).

Only the step model is imported here: the template imports this package, and the runner imports
the template (``from keyway_shared.providers.enrichment.runner import enrich``).
"""

from .steps import JsonPath, Pick, PostConnectionStep, StepRequest, parse_path

__all__ = ["JsonPath", "Pick", "PostConnectionStep", "StepRequest", "parse_path"]
