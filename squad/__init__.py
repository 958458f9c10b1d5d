"""squad: a fast, fault-tolerant sign-up service on Twisted, Klein and MongoDB."""

__all__ = ["__version__"]

__version__ = "0.1.0"
