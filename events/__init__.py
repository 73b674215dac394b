"""CloudEvent types, payload models, schemas and the codec: the only package that imports cloudevents."""
