"""The typed shapes (pydantic v2 models) of every answer and file the project writes, one module per domain."""
