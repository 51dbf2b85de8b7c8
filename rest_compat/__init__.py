"""REST compatibility: each documented endpoint parses its body, runs a GraphQL mutation
through the same schema, and renders the documented response or error."""
