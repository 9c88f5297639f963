package snapguard_test

import (
	"encoding/json"
	"log"
	"net/http"
	"os"

	"github.com/tokengate/tokengate/snapguard"
)

// A payment service's create-VA endpoint, verified by tokengate.
func Example() {
	guard, err := snapguard.New(snapguard.Config{
		URL:          "https://auth.example.com",
		ClientID:     os.Getenv("SERVICE_ID"), // a tokengate client with --can-introspect
		ClientSecret: os.Getenv("SERVICE_SECRET"),
		Route:        snapguard.Route{ServiceCode: 27, Scopes: []string{"va"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	createVA := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, _ := snapguard.FromContext(r.Context())
		var req struct {
			TrxID string `json:"trxId"`
		}
		json.NewDecoder(r.Body).Decode(&req) // the body the merchant sent, restored
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"responseCode": "2002700", "responseMessage": "Successful",
			"virtualAccountData": map[string]string{"partnerId": caller.PartnerID, "trxId": req.TrxID}})
	})
	mux := http.NewServeMux()
	mux.Handle("POST /v1.0/transfer-va/create-va", guard.Wrap(createVA))
	_ = http.ListenAndServe("127.0.0.1:9100", mux)
}
