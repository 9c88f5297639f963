package secret

import (
	"context"
	"errors"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
)

const testPassword = "correct horse battery staple"

var phcPattern = regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)

func TestPasswordRoundTrip(t *testing.T) {
	p := NewPasswords(2, 0)
	ctx := context.Background()
	enc, err := p.Hash(ctx, testPassword)
	if err != nil {
		t.Fatal(err)
	}
	if !phcPattern.MatchString(enc) {
		t.Errorf("Hash = %q, not the expected PHC string", enc)
	}
	if strings.Contains(enc, testPassword) {
		t.Error("hash contains the password")
	}
	for _, tc := range []struct {
		password string
		want     bool
	}{{testPassword, true}, {"wrong", false}, {"", false}, {testPassword + " ", false}, {strings.ToUpper(testPassword), false}} {
		ok, err := p.Verify(ctx, tc.password, enc)
		if err != nil || ok != tc.want {
			t.Errorf("Verify(%q) = %v, %v; want %v, nil", tc.password, ok, err, tc.want)
		}
	}
	enc2, _ := p.Hash(ctx, testPassword)
	if enc2 == enc {
		t.Error("two hashes of one password are equal: salt not random")
	}
}

// TestPasswordVerifyReadsParams verifies hashes made with other parameters
// than the current ones, computed directly with argon2.IDKey.
func TestPasswordVerifyReadsParams(t *testing.T) {
	p := NewPasswords(1, 0)
	salt := []byte("0123456789abcdef0123")
	for _, ap := range []argonParams{{memory: 8192, time: 1, threads: 2}, {memory: 19456, time: 3, threads: 1}} {
		key := argon2.IDKey([]byte(testPassword), salt, ap.time, ap.memory, ap.threads, 24)
		enc := encodePHC(ap, salt, key)
		if ok, err := p.Verify(context.Background(), testPassword, enc); !ok || err != nil {
			t.Errorf("params %+v: Verify = %v, %v", ap, ok, err)
		}
		if ok, err := p.Verify(context.Background(), "x", enc); ok || err != nil {
			t.Errorf("params %+v, wrong password: Verify = %v, %v", ap, ok, err)
		}
	}
}

func TestPasswordMalformed(t *testing.T) {
	p := NewPasswords(1, 0)
	const salt, key = "c2FsdHNhbHRzYWx0c2FsdA", "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
	for _, enc := range []string{
		"",
		testPassword,
		"$argon2i$v=19$m=19456,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=16$m=19456,t=2,p=1$" + salt + "$" + key,
		"$argon2id$m=19456,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$t=2,m=19456,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=0,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2,p=0$" + salt + "$" + key,
		"$argon2id$v=19$m=4,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=99999999,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=1000,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2,p=256$" + salt + "$" + key,
		"$argon2id$v=19$m=-1,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2,p=1$!!!$" + key,
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + key + "=",
		"$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$" + key,
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$aGFzaA",
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + key + "$extra",
		"$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
	} {
		ok, err := p.Verify(context.Background(), testPassword, enc)
		if ok || !errors.Is(err, ErrMalformedHash) {
			t.Errorf("Verify(%q) = %v, %v; want ErrMalformedHash", enc, ok, err)
			continue
		}
		if strings.Contains(err.Error(), testPassword) || (len(enc) > 8 && strings.Contains(err.Error(), enc)) {
			t.Errorf("error %q contains the password or the stored hash", err)
		}
	}
}

// instrument replaces p's KDF with one that records how many run at once
// and with which parameters, then waits on release (or returns at once if
// release is nil).
type kdfProbe struct {
	inFlight, maxInFlight, calls atomic.Int32
	entered                      chan struct{}
	release                      chan struct{}
	mu                           sync.Mutex
	params                       [][4]uint32 // time, memory, threads, keyLen
}

func instrument(p *Passwords, release chan struct{}) *kdfProbe {
	pr := &kdfProbe{release: release, entered: make(chan struct{}, 64)}
	p.kdf = func(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte {
		n := pr.inFlight.Add(1)
		for {
			m := pr.maxInFlight.Load()
			if n <= m || pr.maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		pr.calls.Add(1)
		pr.mu.Lock()
		pr.params = append(pr.params, [4]uint32{time, memory, uint32(threads), keyLen})
		pr.mu.Unlock()
		pr.entered <- struct{}{}
		if release != nil {
			<-release
		}
		pr.inFlight.Add(-1)
		return make([]byte, keyLen)
	}
	return pr
}

func TestPasswordConcurrencyLimit(t *testing.T) {
	p := NewPasswords(2, 0)
	release := make(chan struct{})
	pr := instrument(p, release)
	enc, _ := NewPasswords(1, 0).Hash(context.Background(), testPassword)

	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			var err error
			switch i % 3 {
			case 0:
				_, err = p.Hash(context.Background(), testPassword)
			case 1:
				_, err = p.Verify(context.Background(), testPassword, enc)
			default:
				p.DummyVerify(context.Background(), testPassword)
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
	// Let the hashes through one at a time, checking the limit holds while
	// the other goroutines are queued.
	for range 16 {
		<-pr.entered
		time.Sleep(time.Millisecond) // give a third goroutine the chance to get in
		if n := pr.inFlight.Load(); n > 2 {
			t.Errorf("%d hashes in flight, limit 2", n)
		}
		release <- struct{}{}
	}
	wg.Wait()
	if got := pr.maxInFlight.Load(); got != 2 {
		t.Errorf("max in flight = %d, want exactly the limit 2", got)
	}
	if got := pr.calls.Load(); got != 16 {
		t.Errorf("%d KDF calls, want 16", got)
	}
}

func TestPasswordDefaultConcurrency(t *testing.T) {
	for _, n := range []int{0, -3} {
		if got := cap(NewPasswords(n, 0).sem); got != runtime.NumCPU() {
			t.Errorf("NewPasswords(%d) allows %d, want NumCPU %d", n, got, runtime.NumCPU())
		}
	}
}

func TestPasswordContextCancelledWhileWaiting(t *testing.T) {
	p := NewPasswords(1, 0)
	release := make(chan struct{})
	pr := instrument(p, release)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := p.Hash(context.Background(), testPassword); err != nil {
			t.Error(err)
		}
	}()
	<-pr.entered // the only slot is taken

	enc, _ := NewPasswords(1, 0).Hash(context.Background(), testPassword)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	ok, err := p.Verify(ctx, testPassword, enc)
	if ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Verify while waiting = %v, %v; want DeadlineExceeded", ok, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Verify returned after %v", d)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { time.Sleep(10 * time.Millisecond); cancel2() }()
	if _, err := p.Hash(ctx2, testPassword); !errors.Is(err, context.Canceled) {
		t.Errorf("Hash while waiting: %v, want Canceled", err)
	}
	if err := p.DummyVerify(ctx2, testPassword); err == nil { // returns at once, without a slot
		t.Error("DummyVerify with an ended context returned no error")
	}
	if got := pr.calls.Load(); got != 1 {
		t.Errorf("%d KDF calls, want 1: a cancelled waiter ran the KDF", got)
	}
	close(release)
	<-done

	// An already cancelled context fails even when a slot is free.
	if _, err := p.Hash(ctx2, testPassword); !errors.Is(err, context.Canceled) {
		t.Errorf("Hash with cancelled ctx and a free slot: %v", err)
	}
}

// TestDummyVerifyCost checks DummyVerify runs the KDF with the parameters a
// Verify against a current hash uses, so both cost the same.
func TestDummyVerifyCost(t *testing.T) {
	enc, err := NewPasswords(1, 0).Hash(context.Background(), testPassword)
	if err != nil {
		t.Fatal(err)
	}
	p := NewPasswords(1, 0)
	pr := instrument(p, nil)
	if _, err := p.Verify(context.Background(), testPassword, enc); err != nil {
		t.Fatal(err)
	}
	p.DummyVerify(context.Background(), "no such user's password")
	if len(pr.params) != 2 || pr.params[0] != pr.params[1] || pr.params[0] != [4]uint32{ArgonTime, ArgonMemory, ArgonThreads, ArgonKeyLen} {
		t.Errorf("KDF params: %v", pr.params)
	}
}

// TestDummyVerifyTiming is a coarse real-time check with the real KDF.
func TestDummyVerifyTiming(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	p := NewPasswords(1, 0)
	ctx := context.Background()
	enc, _ := p.Hash(ctx, testPassword)
	measure := func(f func()) time.Duration {
		best := time.Hour
		for range 3 {
			start := time.Now()
			f()
			best = min(best, time.Since(start))
		}
		return best
	}
	real := measure(func() { _, _ = p.Verify(ctx, "wrong", enc) })
	dummy := measure(func() { p.DummyVerify(ctx, "wrong") })
	if ratio := float64(dummy) / float64(real); ratio < 0.5 || ratio > 2 {
		t.Errorf("DummyVerify %v vs Verify %v", dummy, real)
	}
}

// TestPasswordQueueFullFailsFast fills the slots and the queue, then shows a
// further caller gets ErrBusy at once instead of waiting, and gets a place
// again once one frees up.
func TestPasswordQueueFullFailsFast(t *testing.T) {
	p := NewPasswords(1, 2)
	release := make(chan struct{})
	pr := instrument(p, release)
	enc, _ := NewPasswords(1, 0).Hash(context.Background(), testPassword)
	var wg sync.WaitGroup
	for range 3 { // one hashing, two waiting
		wg.Go(func() {
			if _, err := p.Verify(context.Background(), testPassword, enc); err != nil {
				t.Error(err)
			}
		})
	}
	<-pr.entered
	deadline := time.Now().Add(5 * time.Second)
	for len(p.queue) < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // waiting for the goroutines to queue, not for time to pass
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, call := range []func() error{
		func() error { _, err := p.Verify(ctx, testPassword, enc); return err },
		func() error { _, err := p.Hash(ctx, testPassword); return err },
		func() error { return p.DummyVerify(ctx, testPassword) },
	} {
		if err := call(); !errors.Is(err, ErrBusy) {
			t.Errorf("with the queue full: %v, want ErrBusy", err)
		}
	}
	if ctx.Err() != nil {
		t.Error("a call with the queue full waited instead of failing at once")
	}
	release <- struct{}{}
	<-pr.entered // a waiting caller got the slot: a place in the queue is free
	go func() {
		for range 3 { // the two queued callers and this one
			release <- struct{}{}
		}
	}()
	if _, err := p.Verify(ctx, testPassword, enc); err != nil {
		t.Errorf("after a place freed up: %v", err)
	}
	wg.Wait()
}
