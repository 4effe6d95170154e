"""Lightning callbacks of hm2bp (spike observability)."""
