//go:build !race

package peers_test

// buildFlags are the extra flags of go build for a server.
func buildFlags(server string) []string { return nil }
