"""The platform's services: accounts, the catalog, stacks, transfers, exports and dead letters."""
