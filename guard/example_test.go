package guard_test

import (
	"context"
	"encoding/json"
	"errors"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/tokengate/tokengate/guard"
)

// A payments API protected by tokengate: every route needs a valid access
// token, refunds also the "refunds" scope.
func Example() {
	ctx := context.Background()
	g, err := guard.New(ctx, guard.Config{
		Issuer:       "https://auth.example.com",
		ClientID:     "payments-api",                          // created with --can-introspect
		ClientSecret: os.Getenv("PAYMENTS_API_CLIENT_SECRET"), // never in code
		Audience:     "https://auth.example.com",              // tokengate's tokens.audience
		CacheTTL:     5 * time.Minute,
		// How long the revocation feed may be down before every token is
		// checked with the server again.
		FeedDownLimit: 30 * time.Second,
	})
	if err != nil {
		log.Fatal(err) // the issuer could not be reached at start
	}
	defer g.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/balance", func(w http.ResponseWriter, r *http.Request) {
		id := guard.FromContext(r.Context())
		json.NewEncoder(w).Encode(map[string]string{"merchant": id.ClientID})
	})
	mux.Handle("POST /v1/refunds", g.Require("payments", "refunds")(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusAccepted)
		})))
	log.Fatal(http.ListenAndServe(":8080", g.Middleware(mux)))
}

// Validate without the middleware, e.g. in a gRPC interceptor or a queue
// consumer.
func ExampleGuard_Validate() {
	var g *guard.Guard // from guard.New
	validate := func(ctx context.Context, token string) error {
		id, err := g.Validate(ctx, token)
		switch {
		case errors.Is(err, guard.ErrInvalidToken):
			return err // refuse: 401 / UNAUTHENTICATED
		case err != nil:
			return err // guard.ErrUnavailable: retry later, 503 / UNAVAILABLE
		case !id.HasScope("payments"):
			return errors.New("insufficient scope")
		}
		return nil
	}
	_ = validate
}
