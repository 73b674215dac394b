"""Each port (store, object store, bus, Clowder, runtime, mail) beside the adapters that implement it."""
