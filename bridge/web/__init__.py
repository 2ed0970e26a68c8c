"""The web side: reviewer UI, integration reports, admin pages, JSON API v1, health/metrics."""
