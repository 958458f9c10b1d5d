"""The HTTP side: the site and its limits, the routes, the rules of a request's fields and their
validation, idempotency, the error answers and the OpenAPI description."""
