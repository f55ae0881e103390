"""Prefect flows and deployments: thin wiring over pipelines/, plus the `lacgan` command line."""
