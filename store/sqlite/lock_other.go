//go:build !unix

package sqlite

import "time"

// fileLock is a no-op where flock is unavailable: SQLite's own locking and
// busy_timeout still keep the data consistent, without the fairness and
// first-open protection the unix version adds.
type fileLock struct{}

func openLock(string) (*fileLock, error)   { return &fileLock{}, nil }
func (*fileLock) lock(time.Duration) error { return nil }
func (*fileLock) unlock() error            { return nil }
func (*fileLock) close() error             { return nil }
