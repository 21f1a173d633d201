"""The typed shape of every answer and file the project writes, one module per domain (pydantic v2 models).

Producers build these, the HTTP API declares and returns them, readers parse through them; results stay typed
until they are serialised.
"""
