"""Optional integrations; each imports its library on first use."""
