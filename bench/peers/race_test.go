//go:build race

package peers_test

// buildFlags build the servers with the race detector when the test runs
// with it: a race makes a server exit with status 66, which testSigterm
// reports.
func buildFlags(server string) []string {
	if server == "nbio" {
		// nbio v1.6.9 itself is reported: its listener goroutine accepts
		// a conn and its poller goroutine reads the conn's address, synchronized
		// through epoll, which the race detector does not see.
		return nil
	}
	return []string{"-race"}
}
