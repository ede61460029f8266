"""HTTP views, one module per resource; ``routes.py`` is the single table that wires them."""
