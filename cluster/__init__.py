"""bin/cluster: several squad instances on one PostgreSQL-backed database behind nginx."""
