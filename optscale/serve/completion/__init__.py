"""``POST /v1/completions``: router, request model and serving apart (as vLLM does)."""
