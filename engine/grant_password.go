package engine

import (
	"context"
	"errors"
	"time"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/secevent"
	"github.com/tokengate/tokengate/secret"
)

// maxUsernameLen is the longest username an operator can create; a longer
// one cannot exist and is refused without a lookup.
const maxUsernameLen = 255

// password runs RFC 6749 §4.3. Guessing is throttled per username, on
// every node sharing the Lockout: a locked username is refused without
// spending argon2id time, and on this node only one password check per
// username runs at a time, so a flood of guesses at one user holds at most
// one argon2id slot and cannot starve other users' logins. When every slot
// and the bounded queue behind them are taken, the answer is 503 at once.
func (e *Engine) password(ctx context.Context, cl *oauth.Client, req *oauth.TokenRequest) (*oauth.TokenResponse, *oauth.Error) {
	if req.Username == "" {
		return nil, oauth.Missing("username")
	}
	if req.Password == "" {
		return nil, oauth.Missing("password")
	}
	scopes, changed, ae := grantScopes(req.Scopes, req.Policy.DefaultScopes, cl.DefaultScopes, cl.Scopes)
	if ae != nil {
		return nil, ae
	}
	if len(req.Username) > maxUsernameLen {
		return nil, badCredentials()
	}
	// Security events name the username only once it is known to be one:
	// a caller may have typed a password into the username field.
	if d, err := e.cfg.Lockout.Check(ctx, req.Username); err == nil && !d.Allowed {
		e.event(ctx, secevent.UserLocked, cl.ID, "", "sign-in refused: the username is locked")
		return nil, locked(d.RetryAfter)
	}
	if !e.signingIn.Acquire(req.Username) {
		e.event(ctx, secevent.RateLimited, cl.ID, "", "another sign-in for the username is in progress")
		return nil, oauth.RateLimited("another sign-in for this username is in progress, retry shortly", time.Second)
	}
	defer e.signingIn.Release(req.Username)
	if !e.hashing.Acquire(cl.ID) {
		e.event(ctx, secevent.RateLimited, cl.ID, "", "the client's share of the password checks is in use")
		return nil, oauth.RateLimited("too many sign-ins in progress for this client, retry shortly", time.Second)
	}
	defer e.hashing.Release(cl.ID)

	u, err := e.store.GetUser(ctx, req.Username)
	var ok bool
	switch {
	case errors.Is(err, oauth.ErrNotFound):
		// Spend the same time as a real check so timing does not reveal
		// which usernames exist; count the failure the same way too.
		err = e.passwords.DummyVerify(ctx, req.Password)
	case err != nil:
		return nil, e.StoreError(ctx, "get user", err)
	default:
		ok, err = e.passwords.Verify(ctx, req.Password, u.PasswordHash)
	}
	switch {
	case errors.Is(err, secret.ErrBusy):
		e.event(ctx, secevent.Overloaded, cl.ID, "", "password check queue full")
		return nil, oauth.Overloaded("too many password checks in progress, retry shortly", time.Second)
	case err != nil && ctx.Err() != nil:
		return nil, oauth.Timeout()
	case err != nil:
		e.cfg.Logger.Error("stored password hash unreadable", "err", err)
		return nil, oauth.ServerError()
	}
	if !ok {
		known := ""
		if u != nil {
			known = u.Username
		}
		e.event(ctx, secevent.PasswordFailed, cl.ID, known, "wrong password or unknown username")
		if d, err := e.cfg.Lockout.Fail(ctx, req.Username); err == nil && !d.Allowed {
			e.event(ctx, secevent.UserLocked, cl.ID, known, "too many failed sign-ins: the username is locked")
			return nil, locked(d.RetryAfter)
		}
		return nil, badCredentials()
	}
	if u.Disabled {
		// Answered like a wrong password, so the answer does not confirm
		// the password to someone who guessed it; the failures are not
		// cleared either.
		e := badCredentials()
		e.Cause = oauth.CauseUserDisabled
		return nil, e
	}
	if err := e.cfg.Lockout.Succeed(ctx, req.Username); err != nil {
		e.cfg.Logger.Warn("lockout: clearing failures failed", "err", err)
	}
	return e.issue(ctx, issuance{client: cl, subject: u.Username, scopes: scopes, scopeChanged: changed,
		policy: req.Policy, withRefresh: cl.AllowsGrant(oauth.GrantRefreshToken) && !req.NoRefreshToken, nonce: req.Nonce})
}

func badCredentials() *oauth.Error {
	return oauth.InvalidGrant(oauth.CauseBadGrant, "invalid resource owner credentials")
}

// locked answers a locked username: invalid_grant like a wrong password
// (a lock says nothing about whether the user exists: unknown usernames
// lock too), with the real wait.
func locked(wait time.Duration) *oauth.Error {
	e := oauth.InvalidGrant(oauth.CauseUserLocked, "too many failed sign-ins for this username, try again later")
	e.RetryAfter = wait
	return e
}
