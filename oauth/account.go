package oauth

import (
	"fmt"
	"strings"
	"time"
)

// Roles of a merchant-portal account (Account.Role).
const (
	// RoleOperator manages everything: every account and every client.
	RoleOperator = "operator"
	// RoleMerchant manages only the clients it owns (Client.OwnerAccount),
	// within its AccountLimits.
	RoleMerchant = "merchant"
)

// KnownRole reports whether r is an account role.
func KnownRole(r string) bool { return r == RoleOperator || r == RoleMerchant }

// AccountLimits is what a merchant account may create by itself.
type AccountLimits struct {
	// Grants and Scopes bound the grants and scopes of the clients it
	// creates or changes.
	Grants []string `json:"grants"`
	Scopes []string `json:"scopes"`
	// MaxClients is how many clients it may own; 0: it may create none.
	MaxClients int `json:"max_clients"`
	// SNAPKeys lets it register SNAP public keys and SNAP service
	// signatures on its clients.
	SNAPKeys bool `json:"snap_keys"`
}

// Account is a person who signs in to the portal: an operator, or a
// merchant who owns clients.
type Account struct {
	ID    string
	Email string // unique among accounts, case-insensitively (EmailKey)
	// PasswordHash is argon2id, PHC string format.
	PasswordHash string
	// TOTPSecret is the RFC 6238 shared secret; nil when none is enrolled.
	// Like a signing key's private key it is opaque bytes to a store; the
	// kek.Store decorator seals it on every write and opens it on every
	// read (AccountTOTPSecret), so in memory it is the secret itself.
	TOTPSecret []byte
	// TOTPEnabled: the enrolled secret was confirmed with a code, and
	// signing in asks for one.
	TOTPEnabled bool
	// TOTPRequired: the account may not work without a confirmed second
	// factor (an operator's decision).
	TOTPRequired bool
	// TOTPLastStep is the last RFC 6238 time step a code was accepted for;
	// a code of that step or an earlier one is not accepted again.
	TOTPLastStep int64
	Role         string // RoleOperator or RoleMerchant
	Disabled     bool
	Limits       AccountLimits
	// SessionsNotBefore: every portal session started before it is over
	// (a password change, a disable, a second factor turned on or reset). Zero: none.
	SessionsNotBefore time.Time
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// EmailKey is the form of an email address accounts are unique by and
// looked up by: trimmed and lower-cased.
func EmailKey(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// AccountTOTPSecret is the name RewriteSecrets gives the TOTP secret of
// account id, and the associated data that binds its encrypted value to
// its row.
func AccountTOTPSecret(id string) string { return "account_totp:" + id }

// Format prints a without its password hash or TOTP secret, whatever the
// verb, so that no %v of an account can put a secret in a log or an error.
func (a Account) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "{id:%s email:%s role:%s disabled:%t totp_enabled:%t}", a.ID, a.Email, a.Role, a.Disabled, a.TOTPEnabled)
}
