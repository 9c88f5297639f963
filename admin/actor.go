package admin

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// Kinds of actors: the surface an action came through.
const (
	ActorCLI    = "cli"
	ActorAPI    = "api"
	ActorPortal = "portal"
)

// Roles (see Actor.Role and oauth.Account.Role).
const (
	RoleOperator = oauth.RoleOperator
	RoleMerchant = oauth.RoleMerchant
)

// Actor is who calls the service: what the skin (CLI, admin API, portal)
// authenticated. The service trusts it; it does not authenticate anyone
// itself except in VerifyLogin. Every method but VerifyLogin needs one in
// its context (WithActor), and every change is recorded in the audit
// trail under its name.
type Actor struct {
	// Kind is ActorCLI, ActorAPI or ActorPortal.
	Kind string
	// ID identifies the actor within its kind: "user@host" for the CLI,
	// the client ID of the bearer token for the API, the account ID for
	// the portal.
	ID string
	// Name is for people: the same user@host, the client's name, the
	// account's email.
	Name string
	// Remote is the network address the call came from ("" for the CLI).
	Remote string
	// Account is the ID of the portal account acting ("" for none). When
	// set, the service reads the account on every call and acts with its
	// stored role and limits; a disabled or deleted account is refused
	// (ErrUnauthenticated), whatever Role says.
	Account string
	// SessionStart is when the actor's portal session began (zero: not a
	// session). The service refuses an account's actor whose session
	// began before the account's SessionsNotBefore (a password change, a
	// disable, a second factor turned on or reset ends every session at
	// once).
	SessionStart time.Time
	// Role is RoleOperator or RoleMerchant for an actor without an
	// Account. Such an actor can only be an operator (the CLI, an API
	// client holding the admin scope): a merchant always acts through its
	// account.
	Role string
}

// String names the actor for messages: kind and name.
func (a Actor) String() string { return a.Kind + ":" + a.Name }

type actorKey struct{}

// WithActor returns ctx carrying a, for the service's methods.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor ctx carries.
func ActorFrom(ctx context.Context) (Actor, bool) {
	a, ok := ctx.Value(actorKey{}).(Actor)
	return a, ok
}

// CLIActor is the operator at this machine's command line: user@host by
// the process's user and host name.
func CLIActor() Actor {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	id := name + "@" + host
	return Actor{Kind: ActorCLI, ID: id, Name: id, Role: RoleOperator}
}

// AccountActor is the actor for a signed-in portal account (kind
// ActorPortal, or ActorAPI for an API call made with an account's
// session). Set SessionStart on the result to have the service end the
// session when the account's sessions are ended.
func AccountActor(kind string, a *AccountView, remote string) Actor {
	return Actor{Kind: kind, ID: a.ID, Name: a.Email, Remote: remote, Account: a.ID, Role: a.Role}
}

// principal is an actor resolved for one call: its effective role and,
// for a portal account, the account as stored now.
type principal struct {
	actor   Actor
	role    string
	account *oauth.Account // nil for an actor without an account
}

func (p *principal) operator() bool { return p.role == RoleOperator }

// accountID is the acting account's ID, "" for none.
func (p *principal) accountID() string {
	if p.account == nil {
		return ""
	}
	return p.account.ID
}

// who resolves ctx's actor. Errors: ErrUnauthenticated (no actor, an
// unknown kind, a disabled or missing account, a merchant without an
// account), ErrUnavailable.
func (s *Service) who(ctx context.Context) (*principal, error) {
	a, ok := ActorFrom(ctx)
	if !ok {
		return nil, fmt.Errorf("%w: no actor in the context", ErrUnauthenticated)
	}
	switch a.Kind {
	case ActorCLI, ActorAPI, ActorPortal:
	default:
		return nil, fmt.Errorf("%w: unknown actor kind %q", ErrUnauthenticated, a.Kind)
	}
	if a.ID == "" {
		return nil, fmt.Errorf("%w: the actor has no ID", ErrUnauthenticated)
	}
	p := &principal{actor: a}
	if a.Account == "" {
		if a.Role != RoleOperator {
			return nil, fmt.Errorf("%w: an actor without an account must be an operator", ErrUnauthenticated)
		}
		p.role = RoleOperator
		return p, nil
	}
	acc, err := s.store.GetAccount(ctx, a.Account)
	if err != nil {
		if err = storeErr("account "+a.Account, err); ErrorCode(err) == CodeNotFound {
			return nil, fmt.Errorf("%w: the account no longer exists", ErrUnauthenticated)
		}
		return nil, err
	}
	if acc.Disabled {
		return nil, fmt.Errorf("%w: the account is disabled", ErrUnauthenticated)
	}
	if !a.SessionStart.IsZero() && a.SessionStart.Before(acc.SessionsNotBefore) {
		return nil, fmt.Errorf("%w: the session has ended; sign in again", ErrUnauthenticated)
	}
	if !oauth.KnownRole(acc.Role) {
		return nil, fmt.Errorf("%w: the account has no known role", ErrUnauthenticated)
	}
	p.account, p.role = acc, acc.Role
	return p, nil
}

// operator resolves ctx's actor and requires an operator. Errors: who's,
// ErrForbidden.
func (s *Service) operator(ctx context.Context, what string) (*principal, error) {
	p, err := s.who(ctx)
	if err != nil {
		return nil, err
	}
	if !p.operator() {
		return nil, fmt.Errorf("%w: only an operator may %s", ErrForbidden, what)
	}
	return p, nil
}
