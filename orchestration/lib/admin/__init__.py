"""Administration: least-privilege PostgreSQL roles (``ops-warehouse admin roles``)."""
