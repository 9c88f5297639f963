package engine

import (
	"context"

	"github.com/tokengate/tokengate/limit"
)

// unlimited is the RateLimiter when none is configured.
type unlimited struct{}

func (unlimited) Allow(context.Context, string) (limit.Decision, error) {
	return limit.Decision{Allowed: true}, nil
}

// noLockout is the Lockout when none is configured.
type noLockout struct{}

func (noLockout) Check(context.Context, string) (limit.Decision, error) {
	return limit.Decision{Allowed: true}, nil
}
func (noLockout) Fail(context.Context, string) (limit.Decision, error) {
	return limit.Decision{Allowed: true}, nil
}
func (noLockout) Succeed(context.Context, string) error { return nil }
