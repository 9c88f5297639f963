// Package batch implements group commit for storage backends: callers
// enqueue small write operations and wait; one writer goroutine runs
// whatever is queued in a single transaction, commits once, and hands every
// caller its own result.
//
// The batcher is generic over the backend's transaction type, so SQLite
// (its writer connection, BEGIN IMMEDIATE and real savepoints) and
// PostgreSQL (a pipelined transaction on a pooled connection, whose
// savepoints cost nothing; see store/postgres/writer.go) share it.
//
// Semantics of one batch:
//
//   - Each operation queued with Do runs between Backend.Savepoint and
//     either Backend.ReleaseSavepoint (the op returned nil or a Keep
//     error) or Backend.RollbackToSavepoint (any other error), so a
//     failing operation's writes are undone without touching its
//     neighbours'. An operation queued with DoAtomic runs without them
//     (see DoAtomic and Clean).
//   - The transaction commits once; only then are the callers woken.
//   - If the transaction as a whole fails after it began (a savepoint
//     statement or COMMIT fails, or an atomic operation fails other than
//     cleanly), every operation of the batch is retried alone, in its own
//     transaction, so one bad operation cannot fail the others. An
//     operation may therefore run more than once; it must not have side
//     effects outside the transaction (results captured by the closure
//     must be reset at its start).
//   - If Begin fails, nothing ran, and every operation of the batch gets
//     that error (retrying would only wait for the same lock again).
//   - A batch of one operation runs without a savepoint.
//
// No timer is involved: the writer takes whatever is queued when it becomes
// free, so an idle store commits a lone operation at once and batches grow
// by themselves under load while the previous commit is syncing.
package batch

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by Do after Close.
var ErrClosed = errors.New("batch: batcher closed")

// Op is one operation run inside a shared transaction. ctx is the
// batcher's own context, not the caller's: a caller giving up must not
// interrupt a transaction other callers' operations share.
type Op[T any] func(ctx context.Context, tx T) error

// Backend begins and ends the transactions the batcher runs operations in.
// Its methods are called only from the batcher's writer goroutine.
type Backend[T any] interface {
	// Begin starts a write transaction (SQLite: BEGIN IMMEDIATE).
	Begin(ctx context.Context) (T, error)
	// Commit makes the transaction durable.
	Commit(ctx context.Context, tx T) error
	// Rollback abandons the transaction. It is also called after a failed
	// Commit and must tolerate a transaction the database already ended.
	Rollback(ctx context.Context, tx T) error
	// Savepoint marks the start of one operation. Savepoints are never
	// nested: the batcher releases or rolls back each before the next.
	Savepoint(ctx context.Context, tx T) error
	// ReleaseSavepoint keeps the operation's writes and forgets the savepoint.
	ReleaseSavepoint(ctx context.Context, tx T) error
	// RollbackToSavepoint undoes the operation's writes and forgets the
	// savepoint (SQL: ROLLBACK TO op; RELEASE op).
	RollbackToSavepoint(ctx context.Context, tx T) error
}

// Options tune a Batcher. The zero value is usable.
type Options struct {
	// MaxBatch is the most operations one transaction runs; default 256.
	MaxBatch int
	// QueueSize is how many operations may wait for the writer before Do
	// blocks; default 4*MaxBatch.
	QueueSize int
	// TxTimeout bounds one transaction attempt (the context the backend
	// and the operations get); 0 means no bound.
	TxTimeout time.Duration
}

// Stats counts the batcher's work since it started.
type Stats struct {
	Batches int64 // transactions attempted, including retries alone
	Ops     int64 // operations run (an op retried alone counts twice)
	Retries int64 // batches whose transaction failed and were retried op by op
	// Savepoints counts operations run under a savepoint of their own
	// (queued with Do, in a batch of more than one); each costs two
	// statements more than an operation queued with DoAtomic.
	Savepoints int64
}

// Batcher runs operations in group-committed transactions. It is safe for
// concurrent use.
type Batcher[T any] struct {
	be   Backend[T]
	opts Options

	mu      sync.RWMutex // guards closed against sends on queue
	closed  bool
	queue   chan *request[T]
	between chan func() // run by the writer between transactions
	stopped chan struct{}

	batches, ops, retries, savepoints atomic.Int64
}

type request[T any] struct {
	ctx    context.Context
	op     Op[T]
	atomic bool        // runs without a savepoint (see DoAtomic)
	done   chan result // buffered 1: the writer never blocks on a departed caller
}

type result struct {
	err   error
	panic any // re-raised in the caller's goroutine
	stack []byte
}

// New starts a batcher's writer goroutine. Close stops it.
func New[T any](be Backend[T], opts Options) *Batcher[T] {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 4 * opts.MaxBatch
	}
	b := &Batcher[T]{
		be:      be,
		opts:    opts,
		queue:   make(chan *request[T], opts.QueueSize),
		between: make(chan func()),
		stopped: make(chan struct{}),
	}
	go b.writer()
	return b
}

// Do queues op, waits until the transaction that ran it has committed (or
// failed) and returns op's error, or the transaction's error. If op
// returned Keep(err), its writes were committed and Do returns err.
//
// If ctx ends first, Do returns ctx.Err() at once; an op already taken
// into a batch still runs and may commit. An op whose caller has gone
// before the writer reaches it is skipped. A panic in op is re-raised in
// Do's goroutine (the op's writes are rolled back).
func (b *Batcher[T]) Do(ctx context.Context, op Op[T]) error {
	return b.do(ctx, op, false)
}

// DoAtomic is Do for an operation that writes all or nothing by itself (a
// single SQL statement, which the database applies atomically): it runs
// without the savepoint statements around it, because when it fails there
// is nothing of its own to undo. That is one statement instead of three per
// operation on the hot path of token issuance. A failure the operation does
// not mark Clean fails the whole batch (see Clean).
func (b *Batcher[T]) DoAtomic(ctx context.Context, op Op[T]) error {
	return b.do(ctx, op, true)
}

func (b *Batcher[T]) do(ctx context.Context, op Op[T], atomic bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &request[T]{ctx: ctx, op: op, atomic: atomic, done: make(chan result, 1)}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return ErrClosed
	}
	select {
	case b.queue <- r:
	case <-ctx.Done():
		b.mu.RUnlock()
		return ctx.Err()
	}
	b.mu.RUnlock()

	select {
	case res := <-r.done:
		if res.panic != nil {
			panic(fmt.Sprintf("%v\n\nbatch: op panicked in the writer goroutine:\n%s", res.panic, res.stack))
		}
		return res.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Between runs fn on the writer goroutine between two transactions (the
// backend is then in none) and waits for it. It is for maintenance that
// must not overlap a write transaction, such as finishing a checkpoint.
func (b *Batcher[T]) Between(ctx context.Context, fn func()) error {
	done := make(chan struct{})
	select {
	case b.between <- func() { fn(); close(done) }:
	case <-b.stopped:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	<-done // fn is running: wait for it rather than leave it behind
	return nil
}

// Close stops accepting operations, runs those already queued and waits for
// the writer goroutine to exit. It is safe to call more than once.
func (b *Batcher[T]) Close() error {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.queue)
	}
	b.mu.Unlock()
	<-b.stopped
	return nil
}

// Stats returns counters of the work done so far.
func (b *Batcher[T]) Stats() Stats {
	return Stats{Batches: b.batches.Load(), Ops: b.ops.Load(), Retries: b.retries.Load(), Savepoints: b.savepoints.Load()}
}

// Keep marks an operation's error as one that must not undo its writes:
// the batcher commits them and reports err to the caller. (Example: a
// reused refresh token revokes its family and still fails.)
func Keep(err error) error {
	if err == nil {
		return nil
	}
	return &keepError{err}
}

type keepError struct{ err error }

func (e *keepError) Error() string { return e.err.Error() }
func (e *keepError) Unwrap() error { return e.err }

// Clean marks the error of an operation run with DoAtomic as a clean
// refusal: it wrote nothing and left the transaction as it was (a unique
// conflict, a used nonce), so the batch goes on. Any other error of an
// atomic operation fails the batch and every operation is retried alone.
// The caller gets err itself.
func Clean(err error) error {
	if err == nil {
		return nil
	}
	return &cleanError{err}
}

type cleanError struct{ err error }

func (e *cleanError) Error() string { return e.err.Error() }
func (e *cleanError) Unwrap() error { return e.err }

func isClean(err error) bool {
	var c *cleanError
	return errors.As(err, &c)
}

func unwrapClean(err error) error {
	var c *cleanError
	if errors.As(err, &c) {
		return c.err
	}
	return err
}

// outcome classifies an op's return: keep reports whether its writes stay,
// and callerErr is what the caller gets.
func outcome(err error) (keep bool, callerErr error) {
	if err == nil {
		return true, nil
	}
	var k *keepError
	if errors.As(err, &k) {
		return true, k.err
	}
	return false, err
}

func (b *Batcher[T]) writer() {
	defer close(b.stopped)
	batch := make([]*request[T], 0, b.opts.MaxBatch)
	for {
		var first *request[T]
		select {
		case fn := <-b.between:
			fn()
			continue
		case r, ok := <-b.queue:
			if !ok {
				return
			}
			first = r
		}
		batch = append(batch[:0], first)
	drain:
		for len(batch) < b.opts.MaxBatch {
			select {
			case r, ok := <-b.queue:
				if !ok {
					break drain // run what we have; the next receive ends the loop
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		b.run(batch)
		clear(batch) // let finished requests be collected
	}
}

func (b *Batcher[T]) run(reqs []*request[T]) {
	live := reqs[:0]
	for _, r := range reqs {
		if err := r.ctx.Err(); err != nil {
			r.done <- result{err: err}
			continue
		}
		live = append(live, r)
	}
	switch len(live) {
	case 0:
		return
	case 1:
		live[0].done <- b.runAlone(live[0])
		return
	}

	results, began, err := b.runBatch(live)
	if err == nil {
		for i, r := range live {
			r.done <- results[i]
		}
		return
	}
	if !began {
		for _, r := range live {
			r.done <- result{err: err}
		}
		return
	}
	b.retries.Add(1)
	for _, r := range live {
		if r.ctx.Err() != nil {
			r.done <- result{err: r.ctx.Err()}
			continue
		}
		r.done <- b.runAlone(r)
	}
}

func (b *Batcher[T]) txContext() (context.Context, context.CancelFunc) {
	if b.opts.TxTimeout > 0 {
		return context.WithTimeout(context.Background(), b.opts.TxTimeout)
	}
	return context.Background(), func() {}
}

// runBatch runs reqs in one transaction. began reports whether Begin
// succeeded; a non-nil err means the transaction did not commit.
func (b *Batcher[T]) runBatch(reqs []*request[T]) (results []result, began bool, err error) {
	ctx, cancel := b.txContext()
	defer cancel()
	b.batches.Add(1)
	tx, err := b.be.Begin(ctx)
	if err != nil {
		return nil, false, err
	}
	results = make([]result, len(reqs))
	fail := func(err error) ([]result, bool, error) {
		_ = b.be.Rollback(ctx, tx)
		return nil, true, err
	}
	for i, r := range reqs {
		if r.atomic {
			res := b.call(ctx, tx, r.op)
			b.ops.Add(1)
			if res.err != nil && !isClean(res.err) && res.panic == nil {
				// It may have ended the transaction (SQLite rolls back
				// on I/O errors): later operations must not run in what
				// would be autocommit mode. Every operation is retried alone.
				return fail(res.err)
			}
			res.err = unwrapClean(res.err)
			results[i] = res
			continue
		}
		if err := b.be.Savepoint(ctx, tx); err != nil {
			return fail(err)
		}
		b.savepoints.Add(1)
		res := b.call(ctx, tx, r.op)
		b.ops.Add(1)
		keep, callerErr := outcome(res.err)
		if keep {
			if err := b.be.ReleaseSavepoint(ctx, tx); err != nil {
				return fail(err)
			}
		} else if err := b.be.RollbackToSavepoint(ctx, tx); err != nil {
			return fail(err)
		}
		res.err = callerErr
		results[i] = res
	}
	if err := b.be.Commit(ctx, tx); err != nil {
		return fail(err)
	}
	return results, true, nil
}

// runAlone runs one request in its own transaction.
func (b *Batcher[T]) runAlone(r *request[T]) result {
	ctx, cancel := b.txContext()
	defer cancel()
	b.batches.Add(1)
	tx, err := b.be.Begin(ctx)
	if err != nil {
		return result{err: err}
	}
	res := b.call(ctx, tx, r.op)
	b.ops.Add(1)
	keep, callerErr := outcome(res.err)
	if !keep {
		_ = b.be.Rollback(ctx, tx)
		res.err = unwrapClean(callerErr)
		return res
	}
	if err := b.be.Commit(ctx, tx); err != nil {
		_ = b.be.Rollback(ctx, tx)
		return result{err: err}
	}
	res.err = callerErr
	return res
}

// call runs op, turning a panic into a result so the writer survives it.
func (b *Batcher[T]) call(ctx context.Context, tx T, op Op[T]) (res result) {
	defer func() {
		if p := recover(); p != nil {
			res = result{err: fmt.Errorf("batch: op panicked: %v", p), panic: p, stack: debug.Stack()}
		}
	}()
	return result{err: op(ctx, tx)}
}
