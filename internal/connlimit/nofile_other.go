//go:build !unix

package connlimit

// nofile is 0 (unknown) where there is no RLIMIT_NOFILE.
func nofile() uint64 { return 0 }
