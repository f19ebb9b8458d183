"""The wire contract, defined once: the request, the result event, their JSON Schemas and the AsyncAPI document."""
