"""The HTTP side: the site and its limits, the routes, request validation, idempotency, the
error answers and the OpenAPI description."""
