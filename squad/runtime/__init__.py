"""The process plumbing: settings, one process's service tree, the parent's worker
supervisor and the worker's entry point, logs, metrics and garbage-collector tuning."""
