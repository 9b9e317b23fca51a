"""The operator console under /console/: pages, actions and forms (staff only)."""
