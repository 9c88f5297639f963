package batch

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeDB is an in-memory key-value "database" with transactions and one
// level of savepoint, enough to observe what the batcher commits.
type fakeDB struct {
	mu         sync.Mutex
	committed  map[string]string
	sizes      []int // operations (savepoints) per committed multi-op transaction
	failCommit int   // fail this many next commits of multi-op transactions
	failBegin  int   // fail this many next begins
}

type fakeTx struct {
	db      *fakeDB
	writes  map[string]string
	saved   map[string]string // snapshot at the savepoint
	ops     int
	aborted bool
}

func newFakeDB() *fakeDB { return &fakeDB{committed: map[string]string{}} }

func (d *fakeDB) Begin(context.Context) (*fakeTx, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failBegin > 0 {
		d.failBegin--
		return nil, errors.New("begin failed")
	}
	return &fakeTx{db: d, writes: map[string]string{}}, nil
}

func (d *fakeDB) Commit(_ context.Context, tx *fakeTx) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if tx.aborted {
		return errors.New("commit after abort")
	}
	if d.failCommit > 0 && tx.ops > 0 {
		d.failCommit--
		tx.aborted = true
		return errors.New("commit failed")
	}
	maps.Copy(d.committed, tx.writes)
	if tx.ops > 0 {
		d.sizes = append(d.sizes, tx.ops)
	}
	return nil
}

func (d *fakeDB) Rollback(_ context.Context, tx *fakeTx) error {
	tx.aborted = true
	return nil
}

func (d *fakeDB) Savepoint(_ context.Context, tx *fakeTx) error {
	if tx.saved != nil {
		return errors.New("nested savepoint")
	}
	tx.saved = maps.Clone(tx.writes)
	tx.ops++
	return nil
}

func (d *fakeDB) ReleaseSavepoint(_ context.Context, tx *fakeTx) error {
	if tx.saved == nil {
		return errors.New("no savepoint")
	}
	tx.saved = nil
	return nil
}

func (d *fakeDB) RollbackToSavepoint(_ context.Context, tx *fakeTx) error {
	if tx.saved == nil {
		return errors.New("no savepoint")
	}
	tx.writes, tx.saved = tx.saved, nil
	return nil
}

func (d *fakeDB) get(k string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.committed[k]
	return v, ok
}

func put(k string, err error) Op[*fakeTx] {
	return func(_ context.Context, tx *fakeTx) error {
		tx.writes[k] = "v"
		return err
	}
}

// blockWriter queues an op that holds the writer until release is closed,
// so that the ops queued meanwhile form one batch.
func blockWriter(t *testing.T, b *Batcher[*fakeTx]) (release func()) {
	t.Helper()
	started, gate := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- b.Do(context.Background(), func(context.Context, *fakeTx) error {
			close(started)
			<-gate
			return nil
		})
	}()
	<-started
	return func() {
		close(gate)
		if err := <-done; err != nil {
			t.Errorf("blocking op: %v", err)
		}
	}
}

// waitQueued waits until n requests wait in the queue.
func waitQueued(t *testing.T, b *Batcher[*fakeTx], n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(b.queue) < n {
		if time.Now().After(deadline) {
			t.Fatalf("queue has %d requests, want %d", len(b.queue), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBatchIsolatesFailures(t *testing.T) {
	db := newFakeDB()
	b := New[*fakeTx](db, Options{})
	defer b.Close()

	errBad := errors.New("bad op")
	errKept := errors.New("kept op")
	release := blockWriter(t, b)
	type call struct {
		key  string
		err  error
		want error
	}
	calls := []call{
		{"a", nil, nil},
		{"b", errBad, errBad},
		{"c", nil, nil},
		{"d", Keep(errKept), errKept},
	}
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.Do(context.Background(), put(c.key, c.err)); !errors.Is(err, c.want) {
				t.Errorf("Do(%s) = %v, want %v", c.key, err, c.want)
			}
		}()
		waitQueued(t, b, i+1) // fixes the order of the batch
	}
	release()
	wg.Wait()

	for _, k := range []string{"a", "c", "d"} {
		if _, ok := db.get(k); !ok {
			t.Errorf("%s not committed", k)
		}
	}
	if _, ok := db.get("b"); ok {
		t.Error("failed op b was committed")
	}
	if len(db.sizes) != 1 || db.sizes[0] != 4 {
		t.Errorf("multi-op transactions = %v, want one of 4 ops", db.sizes)
	}
	// The blocking op ran alone, without a savepoint; the batch's four
	// each under one.
	if s := b.Stats(); s.Batches != 2 || s.Ops != 5 || s.Retries != 0 || s.Savepoints != 4 {
		t.Errorf("Stats = %+v, want 2 batches, 5 ops, 0 retries, 4 savepoints", s)
	}
}

func TestBatchRespectsMaxBatch(t *testing.T) {
	db := newFakeDB()
	b := New[*fakeTx](db, Options{MaxBatch: 4})
	defer b.Close()

	release := blockWriter(t, b)
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.Do(context.Background(), put(fmt.Sprint(i), nil)); err != nil {
				t.Error(err)
			}
		}()
	}
	waitQueued(t, b, 10)
	release()
	wg.Wait()
	total := 0
	for _, n := range db.sizes {
		if n > 4 {
			t.Errorf("transaction of %d ops, MaxBatch is 4", n)
		}
		total += n
	}
	if total != 10 || len(db.sizes) != 3 { // 4+4+2
		t.Errorf("transaction sizes %v, want [4 4 2]", db.sizes)
	}
}

func TestBatchRetriesAloneWhenCommitFails(t *testing.T) {
	db := newFakeDB()
	b := New[*fakeTx](db, Options{})
	defer b.Close()

	release := blockWriter(t, b)
	db.mu.Lock()
	db.failCommit = 1
	db.mu.Unlock()
	runs := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, k := range []string{"x", "y", "z"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := b.Do(context.Background(), func(ctx context.Context, tx *fakeTx) error {
				mu.Lock()
				runs[k]++
				mu.Unlock()
				return put(k, nil)(ctx, tx)
			})
			if err != nil {
				t.Errorf("Do(%s) = %v, want nil after retry alone", k, err)
			}
		}()
	}
	waitQueued(t, b, 3)
	release()
	wg.Wait()
	for _, k := range []string{"x", "y", "z"} {
		if _, ok := db.get(k); !ok {
			t.Errorf("%s not committed after retry", k)
		}
		if runs[k] != 2 {
			t.Errorf("%s ran %d times, want 2 (batch, then alone)", k, runs[k])
		}
	}
	if s := b.Stats(); s.Retries != 1 {
		t.Errorf("Retries = %d, want 1", s.Retries)
	}
}

func TestBatchBeginFailureFailsBatch(t *testing.T) {
	db := newFakeDB()
	b := New[*fakeTx](db, Options{})
	defer b.Close()

	db.mu.Lock()
	db.failBegin = 1
	db.mu.Unlock()
	if err := b.Do(context.Background(), put("a", nil)); err == nil || err.Error() != "begin failed" {
		t.Fatalf("Do = %v, want the begin error", err)
	}
	if err := b.Do(context.Background(), put("a", nil)); err != nil {
		t.Fatalf("Do after begin recovered = %v", err)
	}
}

func TestBatchCallerContext(t *testing.T) {
	db := newFakeDB()
	b := New[*fakeTx](db, Options{})
	defer b.Close()

	release := blockWriter(t, b)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{}, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- b.Do(ctx, func(context.Context, *fakeTx) error {
			ran <- struct{}{}
			return nil
		})
	}()
	waitQueued(t, b, 1)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Do = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Do did not return when its context ended")
	}
	release()
	// The writer skips the abandoned op; a later op proves it has moved on.
	if err := b.Do(context.Background(), put("later", nil)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ran:
		t.Error("op of a caller that gave up was run")
	default:
	}
	if err := b.Do(ctx, put("never", nil)); !errors.Is(err, context.Canceled) {
		t.Errorf("Do with ended ctx = %v", err)
	}
}

func TestBatchPanicReachesCaller(t *testing.T) {
	db := newFakeDB()
	b := New[*fakeTx](db, Options{})
	defer b.Close()

	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic in op was not re-raised by Do")
			}
		}()
		_ = b.Do(context.Background(), func(_ context.Context, tx *fakeTx) error {
			tx.writes["p"] = "v"
			panic("boom")
		})
	}()
	if _, ok := db.get("p"); ok {
		t.Error("writes of a panicking op were committed")
	}
	if err := b.Do(context.Background(), put("after", nil)); err != nil {
		t.Fatalf("writer did not survive the panic: %v", err)
	}
}

func TestBatchCloseDrainsQueue(t *testing.T) {
	db := newFakeDB()
	b := New[*fakeTx](db, Options{})
	release := blockWriter(t, b)
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.Do(context.Background(), put(fmt.Sprint(i), nil)); err != nil {
				t.Error(err)
			}
		}()
	}
	waitQueued(t, b, 5)
	closed := make(chan struct{})
	go func() { b.Close(); close(closed) }()
	release()
	<-closed
	wg.Wait()
	for i := range 5 {
		if _, ok := db.get(fmt.Sprint(i)); !ok {
			t.Errorf("queued op %d not run before Close returned", i)
		}
	}
	if err := b.Do(context.Background(), put("late", nil)); !errors.Is(err, ErrClosed) {
		t.Errorf("Do after Close = %v, want ErrClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestDoAtomicSkipsSavepoints(t *testing.T) {
	db := newFakeDB()
	b := New[*fakeTx](db, Options{})
	defer b.Close()

	release := blockWriter(t, b)
	// An atomic op writes all or nothing itself: the failing one here
	// writes nothing, as a failed single SQL statement would.
	atomicPut := func(k string, fail bool) Op[*fakeTx] {
		return func(_ context.Context, tx *fakeTx) error {
			if tx.saved != nil {
				return errors.New("atomic op ran inside a savepoint")
			}
			if fail {
				return Clean(errConflict)
			}
			tx.writes[k] = "v"
			return nil
		}
	}
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i, c := range []struct {
		k      string
		atomic bool
		fail   bool
	}{{"a", true, false}, {"b", true, true}, {"c", false, false}, {"d", true, false}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.atomic {
				errs[i] = b.DoAtomic(context.Background(), atomicPut(c.k, c.fail))
			} else {
				errs[i] = b.Do(context.Background(), put(c.k, nil))
			}
		}()
		waitQueued(t, b, i+1)
	}
	release()
	wg.Wait()
	if errs[0] != nil || !errors.Is(errs[1], errConflict) || isClean(errs[1]) || errs[2] != nil || errs[3] != nil {
		t.Fatalf("results %v, want only b to fail, with its own error", errs)
	}
	for _, k := range []string{"a", "c", "d"} {
		if _, ok := db.get(k); !ok {
			t.Errorf("%s not committed", k)
		}
	}
	// Only the one non-atomic op took a savepoint in the shared transaction.
	if len(db.sizes) != 1 || db.sizes[0] != 1 {
		t.Errorf("savepoints per multi-op transaction = %v, want [1]", db.sizes)
	}
	if s := b.Stats(); s.Retries != 0 || s.Savepoints != 1 {
		t.Errorf("Stats = %+v: want no retry for an atomic op's failure, 1 savepoint", s)
	}
}

var errConflict = errors.New("conflict")

// TestDoAtomicUncleanFailureFailsTheBatch: an atomic operation failing for
// a reason it does not mark Clean may have ended the transaction (SQLite
// rolls back on I/O errors), so nothing after it may run in that batch:
// the batch is rolled back and every operation retried alone.
func TestDoAtomicUncleanFailureFailsTheBatch(t *testing.T) {
	db := newFakeDB()
	b := New[*fakeTx](db, Options{})
	defer b.Close()

	release := blockWriter(t, b)
	var attempts atomic.Int32
	ioError := func(_ context.Context, tx *fakeTx) error {
		if attempts.Add(1) == 1 {
			tx.aborted = true // what SQLite does on SQLITE_IOERR
			return errors.New("disk I/O error")
		}
		tx.writes["io"] = "v"
		return nil
	}
	ran := map[string]int{}
	var mu sync.Mutex
	after := func(_ context.Context, tx *fakeTx) error {
		mu.Lock()
		ran["after"]++
		mu.Unlock()
		if tx.aborted {
			return errors.New("ran in an aborted transaction")
		}
		tx.writes["after"] = "v"
		return nil
	}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, op := range []Op[*fakeTx]{ioError, after} {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = b.DoAtomic(context.Background(), op) }()
		waitQueued(t, b, i+1)
	}
	release()
	wg.Wait()
	if ran["after"] != 1 || errs[1] != nil {
		t.Errorf("the op after the failure ran %d times, err %v: want once, alone, successfully", ran["after"], errs[1])
	}
	if errs[0] != nil {
		t.Errorf("the failed op retried alone: %v", errs[0])
	}
	if _, ok := db.get("after"); !ok {
		t.Error("the later op's write was lost")
	}
	if s := b.Stats(); s.Retries != 1 {
		t.Errorf("Stats = %+v, want one batch retried", s)
	}
}

// TestBetweenRunsOutsideTransactions: Between's function runs on the writer
// goroutine when no transaction is open, even under a stream of operations.
func TestBetweenRunsOutsideTransactions(t *testing.T) {
	db := newFakeDB()
	b := New[*fakeTx](db, Options{})
	var inTx atomic.Bool
	op := func(_ context.Context, tx *fakeTx) error {
		inTx.Store(true)
		time.Sleep(100 * time.Microsecond)
		inTx.Store(false)
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				b.Do(ctx, op)
			}
		}()
	}
	for range 20 {
		ran := false
		if err := b.Between(context.Background(), func() { ran = !inTx.Load() }); err != nil || !ran {
			t.Fatalf("Between: err %v, ran outside a transaction: %v", err, ran)
		}
	}
	cancel()
	wg.Wait()
	b.Close()
	if err := b.Between(context.Background(), func() {}); !errors.Is(err, ErrClosed) {
		t.Errorf("Between after Close: %v", err)
	}
}
