"""See DESIGN.md: never imports prefect."""
