"""Private helpers: validation, devices and random generators."""
