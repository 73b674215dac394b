"""How requests and CloudEvents reach the domain: the API helpers, the event adapter, the function registry."""
