"""The web layer every service mounts: problem+json, probes, metrics, request ids, auth."""
