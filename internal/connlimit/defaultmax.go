package connlimit

// Headroom is the descriptors DefaultMax leaves to everything that is not
// a client connection: the store's files or pool, the log, the operations
// listener and its connections.
const Headroom = 128

// ceiling bounds DefaultMax on hosts with huge descriptor limits: past it,
// memory per connection matters more than descriptors.
const ceiling = 10000

// DefaultMax is a cap derived from the process's RLIMIT_NOFILE soft limit
// (which the Go runtime raises to the hard limit at start): the limit
// minus 128, at least half the limit, at most 10000.
func DefaultMax() int {
	return fromLimit(nofile())
}

func fromLimit(limit uint64) int {
	if limit == 0 || limit > ceiling+Headroom {
		return ceiling
	}
	n := int(limit) - Headroom
	return max(n, int(limit)/2, 1)
}

// DescriptorLimit is the process's soft RLIMIT_NOFILE, 0 if unknown.
func DescriptorLimit() uint64 { return nofile() }
