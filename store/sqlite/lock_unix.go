//go:build unix

package sqlite

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// fileLock is an exclusive advisory lock (flock) on a file beside the
// database, shared by every Store on the directory, in any process.
//
// It does what SQLite's own locking cannot:
//   - Open holds it while creating and migrating the database: switching a
//     new file to WAL fails at once with SQLITE_BUSY, without waiting, if
//     another connection is doing the same.
//   - Writers hold it while acquiring SQLite's write lock (a turnstile).
//     SQLite's lock is not fair: its busy handler sleeps up to 100 ms
//     between attempts, while a busy server re-takes the lock microseconds
//     after each commit, so the admin CLI could wait out its busy_timeout.
//     Through the turnstile, a waiting process holds the lock file while it
//     waits for the write lock, and the server cannot begin its next
//     transaction until the waiter has had its turn.
type fileLock struct {
	f *os.File
}

func openLock(path string) (*fileLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return &fileLock{f: f}, nil
}

// lock takes the lock, polling until timeout; it returns errLockTimeout if
// another process held it that long.
func (l *fileLock) lock(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	wait := 50 * time.Microsecond
	for {
		err := syscall.Flock(int(l.f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return err
		}
		if time.Now().After(deadline) {
			return errLockTimeout
		}
		// The lock is normally held only for the instant of a BEGIN, so
		// poll fast first.
		time.Sleep(wait)
		wait = min(2*wait, 2*time.Millisecond)
	}
}

func (l *fileLock) unlock() error {
	return syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
}

func (l *fileLock) close() error { return l.f.Close() }
