"""The vocabulary every layer shares (models, errors, settings) and the primitives (safe paths, durable writes)."""
