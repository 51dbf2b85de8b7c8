"""Domain logic: plain async functions with keyword-only arguments, no web framework."""
