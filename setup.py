"""Packaging for squad. Kept thin on purpose: tool settings live in pyproject.toml."""

from setuptools import setup

setup(
    name="squad",
    version="0.1.0",
    description="A fast, fault-tolerant sign-up service on Twisted, Klein and MongoDB",
    python_requires=">=3.11",
    packages=[
        "squad",
        "squad.http",
        "squad.storage",
        "squad.background",
        "squad.runtime",
        "twisted.plugins",
    ],
    package_data={"squad": ["py.typed"], "twisted": ["plugins/squad_plugin.py"]},
    install_requires=[
        "Twisted==26.10.0",
        "klein==24.8.0",
        "txmongo==26.0.0",
        "treq==26.7.0",
        "prometheus-client==0.26.0",
        "argon2-cffi==25.1.0",
        "cryptography==50.0.2",
    ],
    extras_require={
        "test": [
            "hypothesis==6.170.17",
            "pymongo",
            "openapi-spec-validator==0.9.0",
            "jsonschema==4.26.0",
            "referencing==0.37.0",
            "PyYAML==6.0.4",
            "schemathesis==4.32.5",
            "psutil==7.2.2",
        ],
        "bench": [
            "matplotlib==3.11.2",
            "pymongo",
            "psutil==7.2.2",
        ],
    },
)
