package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// fullClient returns a client with every field set (a new value each call,
// so tests can compare against a pristine copy).
func fullClient(id string, now time.Time) *oauth.Client {
	return &oauth.Client{
		ID:   id,
		Name: "Merchant " + id + " — café ✓", // non-ASCII on purpose
		Secrets: []oauth.SecretHash{
			{Hash: []byte{0x00, 0x01, 0xfe, 0xff, 'h'}, ExpiresAt: now.Add(24*time.Hour + 123456789)},
			// Never expires; recoverable: the sealed value is opaque bytes
			// to a store, which keeps them as given.
			{Hash: []byte("current-hash"), Sealed: []byte{'t', 'g', 'k', 0x01, 0x00, 0xff, '"', '\\', 0x7f}},
		},
		Grants:                       []string{oauth.GrantClientCredentials, oauth.GrantRefreshToken},
		Scopes:                       []string{"payments:read", "payments:write", "refunds"},
		DefaultScopes:                []string{"payments:read"},
		AccessTTL:                    15*time.Minute + 7*time.Nanosecond,
		TokenFormat:                  oauth.FormatJWT,
		SigningAlg:                   oauth.AlgES256,
		RefreshWithClientCredentials: true,
		PublicKeyPEM:                 "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n",
		AuthMethods:                  []string{oauth.AuthSNAPSignature, oauth.AuthSecretPost}, // order is kept
		Endpoints:                    []string{"/v2/auth/oauth2/token", "/oauth/token"},
		CanIntrospect:                true,
		SNAPServiceSignature:         oauth.SNAPSignatureBoth,
		PartnerID:                    "partner-" + id,
		TokensNotBefore:              now.Add(-time.Minute + 123*time.Microsecond),
		OwnerAccount:                 "account-" + id,
		Disabled:                     true,
		CreatedAt:                    now.Add(-time.Hour),
		UpdatedAt:                    now,
	}
}

func testClients(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := baseTime()
	requireAllSet(t, fullClient("x", now))

	c := fullClient("c2", now)
	noErr(t, s.CreateClient(ctx, c), "CreateClient(c2)")
	c.Name, c.Scopes[0], c.AuthMethods[0] = "changed after create", "changed", "changed" // the store must not keep the caller's value
	got, err := s.GetClient(ctx, "c2")
	noErr(t, err, "GetClient(c2)")
	checkEqual(t, "GetClient(c2)", fullClient("c2", now), got)

	dup := &oauth.Client{ID: "c2", Name: "impostor"}
	isErr(t, s.CreateClient(ctx, dup), oauth.ErrAlreadyExists, "CreateClient(c2) again")
	got, err = s.GetClient(ctx, "c2")
	noErr(t, err, "GetClient(c2)")
	checkEqual(t, "GetClient(c2) after a duplicate create", fullClient("c2", now), got)

	// Zero values round-trip as zero: times, durations, empty lists,
	// false (no AuthMethods or Endpoints, CanIntrospect false, no
	// TokensNotBefore).
	minimal := &oauth.Client{ID: "c1"}
	noErr(t, s.CreateClient(ctx, minimal), "CreateClient(c1)")
	got, err = s.GetClient(ctx, "c1")
	noErr(t, err, "GetClient(c1)")
	checkEqual(t, "GetClient(c1)", minimal, got)
	noErr(t, s.CreateClient(ctx, &oauth.Client{ID: "c3", Name: "three", Scopes: []string{}}), "CreateClient(c3)")

	// Plain, the recoverable secret in clear, is never stored: only
	// Sealed is (sealing is the kek.Store decorator's job, not the store's).
	withPlain := &oauth.Client{ID: "c4", Secrets: []oauth.SecretHash{{Hash: []byte("h4"), Sealed: []byte("s4"), Plain: []byte("the secret itself")}}}
	noErr(t, s.CreateClient(ctx, withPlain), "CreateClient(c4)")
	got, err = s.GetClient(ctx, "c4")
	noErr(t, err, "GetClient(c4)")
	if p := got.Secrets[0].Plain; p != nil || string(got.Secrets[0].Sealed) != "s4" {
		t.Fatalf("GetClient(c4): Plain %q, Sealed %q; want no Plain and the Sealed given", p, got.Secrets[0].Sealed)
	}
	noErr(t, s.DeleteClient(ctx, "c4"), "DeleteClient(c4)")

	_, err = s.GetClient(ctx, "missing")
	isErr(t, err, oauth.ErrNotFound, "GetClient(missing)")
	// Keys no record can have (a NUL byte, invalid UTF-8, as a client may
	// send them) find nothing: they are not a store failure.
	for _, odd := range []string{"a\x00b", "\xff\xfe", "\xed\xa0\x80"} {
		_, err = s.GetClient(ctx, odd)
		isErr(t, err, oauth.ErrNotFound, "GetClient(%q)", odd)
		_, err = s.GetUser(ctx, odd)
		isErr(t, err, oauth.ErrNotFound, "GetUser(%q)", odd)
	}

	list, err := s.ListClients(ctx)
	noErr(t, err, "ListClients")
	if ids := clientIDs(list); !slices.Equal(ids, []string{"c1", "c2", "c3"}) {
		t.Fatalf("ListClients IDs = %v, want [c1 c2 c3]", ids)
	}
	checkEqual(t, "ListClients()[1]", fullClient("c2", now), list[1])

	noErr(t, s.DeleteClient(ctx, "c1"), "DeleteClient(c1)")
	_, err = s.GetClient(ctx, "c1")
	isErr(t, err, oauth.ErrNotFound, "GetClient(c1) after delete")
	isErr(t, s.DeleteClient(ctx, "c1"), oauth.ErrNotFound, "DeleteClient(c1) again")
	list, err = s.ListClients(ctx)
	noErr(t, err, "ListClients")
	if ids := clientIDs(list); !slices.Equal(ids, []string{"c2", "c3"}) {
		t.Fatalf("ListClients IDs after delete = %v, want [c2 c3]", ids)
	}
	// The ID is free again.
	noErr(t, s.CreateClient(ctx, &oauth.Client{ID: "c1"}), "CreateClient(c1) after delete")
}

func testUpdateClient(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := baseTime()
	noErr(t, s.CreateClient(ctx, fullClient("c", now)), "CreateClient")

	later := now.Add(time.Minute)
	change := func(c *oauth.Client) {
		c.Name = "renamed"
		c.Scopes = append(c.Scopes, "payouts")
		c.Secrets = c.Secrets[1:]
		c.Secrets[0].Sealed = []byte("sealed again")
		c.AccessTTL = time.Hour
		c.AuthMethods = []string{oauth.AuthSecretBasic}
		c.Endpoints = nil
		c.CanIntrospect = false
		c.TokensNotBefore = later
		c.Disabled = false
		c.UpdatedAt = later
	}
	// update may run on another goroutine: record, check afterwards.
	var seen []string
	called := 0
	noErr(t, s.UpdateClient(ctx, "c", func(c *oauth.Client) error {
		called++
		seen = diff(fullClient("c", now), c)
		change(c)
		return nil
	}), "UpdateClient")
	if called == 0 {
		t.Fatal("UpdateClient did not call update")
	}
	if len(seen) > 0 {
		t.Fatalf("client passed to update differs from the stored one:\n  %s", strings.Join(seen, "\n  "))
	}
	want := fullClient("c", now)
	change(want)
	got, err := s.GetClient(ctx, "c")
	noErr(t, err, "GetClient after update")
	checkEqual(t, "GetClient after UpdateClient", want, got)

	errVeto := errors.New("veto")
	err = s.UpdateClient(ctx, "c", func(c *oauth.Client) error {
		c.Name = "must not be written"
		c.Scopes = nil
		return errVeto
	})
	isErr(t, err, errVeto, "UpdateClient with a failing update")
	got, err = s.GetClient(ctx, "c")
	noErr(t, err, "GetClient after failed update")
	checkEqual(t, "GetClient after a failed UpdateClient", want, got)

	// Every field the update touches is written, back to zero values too,
	// and to set values from zero.
	for i, f := range []func(c *oauth.Client){
		func(c *oauth.Client) {
			c.AuthMethods, c.Grants, c.TokensNotBefore, c.CreatedAt = nil, nil, time.Time{}, time.Time{}
			c.Endpoints, c.CanIntrospect = []string{"/oauth/token"}, true
			c.SNAPServiceSignature, c.PartnerID, c.Secrets[0].Sealed = "", "", nil
		},
		func(c *oauth.Client) {
			c.Endpoints, c.CanIntrospect, c.Secrets = []string{}, false, nil
			c.AuthMethods, c.TokensNotBefore = []string{oauth.AuthSecretPost, oauth.AuthSecretBasic}, later.Add(time.Second)
			c.SNAPServiceSignature, c.PartnerID = oauth.SNAPSignatureSymmetric, "P-0001"
		},
	} {
		noErr(t, s.UpdateClient(ctx, "c", func(c *oauth.Client) error { f(c); return nil }), "UpdateClient #%d", i)
		f(want)
		got, err = s.GetClient(ctx, "c")
		noErr(t, err, "GetClient after update #%d", i)
		checkEqual(t, fmt.Sprintf("GetClient after UpdateClient #%d", i), want, got)
	}

	err = s.UpdateClient(ctx, "missing", func(*oauth.Client) error { return nil })
	isErr(t, err, oauth.ErrNotFound, "UpdateClient(missing)")
	_, err = s.GetClient(ctx, "missing")
	isErr(t, err, oauth.ErrNotFound, "GetClient(missing) after UpdateClient(missing)")
}

// testUpdateClientConcurrent: 20 read-modify-writes racing, none lost.
func testUpdateClientConcurrent(t *testing.T, s oauth.Store, clk *clock) {
	ctx := ctxTimeout(t)
	noErr(t, s.CreateClient(ctx, &oauth.Client{ID: "c", Scopes: []string{"base"}}), "CreateClient")
	const n = 20
	errs := make([]error, n)
	run(n, func(i int) {
		errs[i] = s.UpdateClient(ctx, "c", func(c *oauth.Client) error {
			c.Scopes = append(c.Scopes, fmt.Sprintf("s%02d", i))
			return nil
		})
	})
	for i, err := range errs {
		noErr(t, err, "UpdateClient #%d", i)
	}
	got, err := s.GetClient(ctx, "c")
	noErr(t, err, "GetClient")
	want := []string{"base"}
	for i := range n {
		want = append(want, fmt.Sprintf("s%02d", i))
	}
	if len(got.Scopes) != len(want) || !containsAll(got.Scopes, want...) {
		t.Fatalf("after %d concurrent updates Scopes = %v, want all of %v (an update was lost)", n, got.Scopes, want)
	}
}

func fullUser(name string, now time.Time) *oauth.User {
	return &oauth.User{
		Username:        name,
		PasswordHash:    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
		Disabled:        true,
		TokensNotBefore: now.Add(-time.Minute + 456*time.Microsecond),
		CreatedAt:       now.Add(-time.Hour),
		UpdatedAt:       now,
	}
}

func testUsers(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := baseTime()
	requireAllSet(t, fullUser("x", now))

	u := fullUser("bob", now)
	noErr(t, s.CreateUser(ctx, u), "CreateUser(bob)")
	u.PasswordHash = "changed after create"
	got, err := s.GetUser(ctx, "bob")
	noErr(t, err, "GetUser(bob)")
	checkEqual(t, "GetUser(bob)", fullUser("bob", now), got)

	isErr(t, s.CreateUser(ctx, &oauth.User{Username: "bob"}), oauth.ErrAlreadyExists, "CreateUser(bob) again")
	got, err = s.GetUser(ctx, "bob")
	noErr(t, err, "GetUser(bob)")
	checkEqual(t, "GetUser(bob) after a duplicate create", fullUser("bob", now), got)

	minimal := &oauth.User{Username: "alice"}
	noErr(t, s.CreateUser(ctx, minimal), "CreateUser(alice)")
	got, err = s.GetUser(ctx, "alice")
	noErr(t, err, "GetUser(alice)")
	checkEqual(t, "GetUser(alice)", minimal, got)
	noErr(t, s.CreateUser(ctx, &oauth.User{Username: "carol"}), "CreateUser(carol)")

	_, err = s.GetUser(ctx, "missing")
	isErr(t, err, oauth.ErrNotFound, "GetUser(missing)")

	list, err := s.ListUsers(ctx)
	noErr(t, err, "ListUsers")
	if names := usernames(list); !slices.Equal(names, []string{"alice", "bob", "carol"}) {
		t.Fatalf("ListUsers = %v, want [alice bob carol]", names)
	}
	checkEqual(t, "ListUsers()[1]", fullUser("bob", now), list[1])
}

func testUpdateUser(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := baseTime()
	noErr(t, s.CreateUser(ctx, fullUser("bob", now)), "CreateUser")

	later := now.Add(time.Minute)
	change := func(u *oauth.User) {
		u.PasswordHash = "$argon2id$new"
		u.Disabled = false
		u.TokensNotBefore = later
		u.UpdatedAt = later
	}
	var seen []string
	noErr(t, s.UpdateUser(ctx, "bob", func(u *oauth.User) error {
		seen = diff(fullUser("bob", now), u)
		change(u)
		return nil
	}), "UpdateUser")
	if len(seen) > 0 {
		t.Fatalf("user passed to update differs from the stored one:\n  %s", strings.Join(seen, "\n  "))
	}
	want := fullUser("bob", now)
	change(want)
	got, err := s.GetUser(ctx, "bob")
	noErr(t, err, "GetUser")
	checkEqual(t, "GetUser after UpdateUser", want, got)

	errVeto := errors.New("veto")
	err = s.UpdateUser(ctx, "bob", func(u *oauth.User) error {
		u.PasswordHash = "must not be written"
		return errVeto
	})
	isErr(t, err, errVeto, "UpdateUser with a failing update")
	got, err = s.GetUser(ctx, "bob")
	noErr(t, err, "GetUser after failed update")
	checkEqual(t, "GetUser after a failed UpdateUser", want, got)

	// Back to zero, and set again.
	for i, f := range []func(u *oauth.User){
		func(u *oauth.User) { u.TokensNotBefore, u.PasswordHash = time.Time{}, "" },
		func(u *oauth.User) { u.TokensNotBefore, u.Disabled = later.Add(time.Second), true },
	} {
		noErr(t, s.UpdateUser(ctx, "bob", func(u *oauth.User) error { f(u); return nil }), "UpdateUser #%d", i)
		f(want)
		got, err = s.GetUser(ctx, "bob")
		noErr(t, err, "GetUser after update #%d", i)
		checkEqual(t, fmt.Sprintf("GetUser after UpdateUser #%d", i), want, got)
	}

	isErr(t, s.UpdateUser(ctx, "missing", func(*oauth.User) error { return nil }), oauth.ErrNotFound, "UpdateUser(missing)")
}

func testUpdateUserConcurrent(t *testing.T, s oauth.Store, clk *clock) {
	ctx := ctxTimeout(t)
	noErr(t, s.CreateUser(ctx, &oauth.User{Username: "bob"}), "CreateUser")
	const n = 20
	errs := make([]error, n)
	run(n, func(i int) {
		errs[i] = s.UpdateUser(ctx, "bob", func(u *oauth.User) error {
			u.PasswordHash += fmt.Sprintf("<%02d>", i)
			return nil
		})
	})
	for i, err := range errs {
		noErr(t, err, "UpdateUser #%d", i)
	}
	got, err := s.GetUser(ctx, "bob")
	noErr(t, err, "GetUser")
	for i := range n {
		if m := fmt.Sprintf("<%02d>", i); strings.Count(got.PasswordHash, m) != 1 {
			t.Fatalf("after %d concurrent updates PasswordHash = %q: marker %s appears %d times, want once",
				n, got.PasswordHash, m, strings.Count(got.PasswordHash, m))
		}
	}
}
