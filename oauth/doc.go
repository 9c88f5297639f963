// Package oauth holds tokengate's domain: clients, users, tokens, token
// requests and responses, OAuth errors as values, and the Store interface
// every storage backend implements. It imports nothing of HTTP wire formats
// and nothing of any storage engine.
package oauth
