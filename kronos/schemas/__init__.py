"""Every JSON answer and file the package writes, one typed model (pydantic v2) per shape, one module per domain."""
