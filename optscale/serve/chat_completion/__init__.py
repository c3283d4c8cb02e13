"""``POST /v1/chat/completions``: router, request model and serving apart (as vLLM does)."""
