package secret

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters for new password hashes: the OWASP minimum
// (m=19 MiB, t=2, p=1) with a 16-byte salt and a 32-byte key.
const (
	ArgonMemory  = 19 * 1024 // KiB
	ArgonTime    = 2
	ArgonThreads = 1
	ArgonSaltLen = 16
	ArgonKeyLen  = 32
)

// Bounds on parameters read from a stored hash, so a corrupted or hostile
// record cannot make Verify allocate gigabytes or spin for minutes.
const (
	maxArgonMemory = 1 << 20 // KiB (1 GiB)
	maxArgonTime   = 64
	minSaltLen     = 8
	minKeyLen      = 16
	maxKeyLen      = 128
)

// ErrMalformedHash is returned by Passwords.Verify for a stored hash that is
// not an argon2id PHC string tokengate can read. It never includes the
// stored string.
var ErrMalformedHash = errors.New("secret: malformed password hash")

type argonParams struct {
	memory  uint32
	time    uint32
	threads uint8
}

var defaultParams = argonParams{memory: ArgonMemory, time: ArgonTime, threads: ArgonThreads}

// dummySalt is the salt DummyVerify hashes with; its value is irrelevant,
// only the cost matters.
var dummySalt = make([]byte, ArgonSaltLen)

// ErrBusy is returned when every hashing slot is taken and the queue of
// waiting callers is full: the caller should answer "retry later" at once
// rather than hold the request.
var ErrBusy = errors.New("secret: too many password hashes in progress")

// Passwords hashes and verifies user passwords with argon2id. At most a
// fixed number of hashes run at once (each takes 19 MiB); a bounded number
// of further callers wait, and the rest get ErrBusy. It is safe for
// concurrent use.
type Passwords struct {
	sem chan struct{}
	// queue holds a token per caller waiting or hashing: its capacity is
	// the slots plus the waiting places.
	queue chan struct{}
	// kdf is argon2.IDKey; tests replace it to observe the concurrency limit.
	kdf func(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte
}

// DefaultQueue is how many callers may wait for a hashing slot when
// NewPasswords is given no queue length: a few hashes' worth of waiting
// (each takes tens of milliseconds), not seconds.
const DefaultQueue = 16

// NewPasswords returns a Passwords that runs at most concurrency hashes at
// once (concurrency <= 0 means runtime.NumCPU()) and lets at most queue more
// callers wait (queue <= 0 means DefaultQueue), respecting their context;
// beyond that calls fail with ErrBusy at once. A burst of password grants
// can therefore neither exhaust memory nor hold requests for seconds.
func NewPasswords(concurrency, queue int) *Passwords {
	if concurrency <= 0 {
		concurrency = runtime.NumCPU()
	}
	if queue <= 0 {
		queue = DefaultQueue
	}
	return &Passwords{sem: make(chan struct{}, concurrency), queue: make(chan struct{}, concurrency+queue), kdf: argon2.IDKey}
}

// Capacity is how many password checks may run or wait at once.
func (p *Passwords) Capacity() int { return cap(p.queue) }

// derive runs the KDF once a slot is free, or returns ctx's error.
func (p *Passwords) derive(ctx context.Context, password string, salt []byte, ap argonParams, keyLen uint32) ([]byte, error) {
	// Checked first because select picks at random among ready cases.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case p.queue <- struct{}{}:
	default:
		return nil, ErrBusy
	}
	defer func() { <-p.queue }()
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-p.sem }()
	return p.kdf([]byte(password), salt, ap.time, ap.memory, ap.threads, keyLen), nil
}

// Hash returns the argon2id hash of password as a PHC string:
// "$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>" (salt and hash in
// unpadded standard base64, as PHC specifies). It fails only if ctx ends
// while waiting for a slot or crypto/rand fails.
func (p *Passwords) Hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, ArgonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key, err := p.derive(ctx, password, salt, defaultParams, ArgonKeyLen)
	if err != nil {
		return "", err
	}
	return encodePHC(defaultParams, salt, key), nil
}

func encodePHC(ap argonParams, salt, key []byte) string {
	b := make([]byte, 0, 96)
	b = append(b, "$argon2id$v="...)
	b = strconv.AppendInt(b, argon2.Version, 10)
	b = append(b, "$m="...)
	b = strconv.AppendUint(b, uint64(ap.memory), 10)
	b = append(b, ",t="...)
	b = strconv.AppendUint(b, uint64(ap.time), 10)
	b = append(b, ",p="...)
	b = strconv.AppendUint(b, uint64(ap.threads), 10)
	b = append(b, '$')
	b = base64.RawStdEncoding.AppendEncode(b, salt)
	b = append(b, '$')
	b = base64.RawStdEncoding.AppendEncode(b, key)
	return string(b)
}

// parsePHC reads an argon2id PHC string. The parameters come from the string,
// so hashes made with older parameters keep verifying after a change.
func parsePHC(s string) (ap argonParams, salt, key []byte, err error) {
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return ap, nil, nil, ErrMalformedHash
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return ap, nil, nil, ErrMalformedHash
	}
	params := strings.Split(parts[3], ",")
	if len(params) != 3 {
		return ap, nil, nil, ErrMalformedHash
	}
	m, ok1 := paramValue(params[0], "m=", maxArgonMemory)
	t, ok2 := paramValue(params[1], "t=", maxArgonTime)
	par, ok3 := paramValue(params[2], "p=", 255)
	if !ok1 || !ok2 || !ok3 || t < 1 || par < 1 || m < 8*par {
		return ap, nil, nil, ErrMalformedHash
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	key, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(salt) < minSaltLen || len(key) < minKeyLen || len(key) > maxKeyLen {
		return ap, nil, nil, ErrMalformedHash
	}
	return argonParams{memory: m, time: t, threads: uint8(par)}, salt, key, nil
}

func paramValue(s, prefix string, max uint64) (uint32, bool) {
	v, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n > max {
		return 0, false
	}
	return uint32(n), true
}

// Verify reports whether password matches the PHC string encoded. A wrong
// password is (false, nil); the error is ErrMalformedHash for a stored hash
// it cannot read, ErrBusy when the queue is full, or ctx's error if ctx ends
// while waiting for a slot.
func (p *Passwords) Verify(ctx context.Context, password, encoded string) (bool, error) {
	ap, salt, want, err := parsePHC(encoded)
	if err != nil {
		return false, err
	}
	got, err := p.derive(ctx, password, salt, ap, uint32(len(want)))
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// DummyVerify costs what a Verify against a hash with the current
// parameters costs, including waiting for a slot. The engine calls it for
// unknown usernames so response timing does not reveal which users exist.
// Its error, like Verify's, is only ctx's: the caller must answer it as it
// answers Verify's, or a busy server would tell unknown users apart.
func (p *Passwords) DummyVerify(ctx context.Context, password string) error {
	_, err := p.derive(ctx, password, dummySalt, defaultParams, ArgonKeyLen)
	return err
}
