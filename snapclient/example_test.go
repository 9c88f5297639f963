package snapclient_test

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/tokengate/tokengate/dialect/snap"
	"github.com/tokengate/tokengate/snapclient"
)

// A merchant's client for a SNAP provider: B2B tokens fetched with the
// RSA key and renewed before they expire, every call signed with the
// client secret (HMAC-SHA512).
func Example() {
	keyPEM, err := os.ReadFile("merchant-private.pem")
	if err != nil {
		log.Fatal(err)
	}
	key, err := snap.ParsePrivateKey(keyPEM) // PKCS #1 or PKCS #8 PEM
	if err != nil {
		log.Fatal(err)
	}
	clientID, secret := os.Getenv("CLIENT_ID"), os.Getenv("CLIENT_SECRET")
	jakarta, err := time.LoadLocation("Asia/Jakarta")
	if err != nil {
		log.Fatal(err)
	}
	tokens, err := snapclient.NewTokenSource(snapclient.TokenConfig{
		URL:        "http://127.0.0.1:8080/v1.0/access-token/b2b",
		ClientID:   clientID,
		PrivateKey: key,
		Location:   jakarta, // X-TIMESTAMP in +07:00
	})
	if err != nil {
		log.Fatal(err)
	}
	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &snapclient.Transport{
			Tokens:       tokens,
			Variant:      snapclient.Symmetric, // or Asymmetric with PrivateKey: key
			ClientSecret: []byte(secret),
			PartnerID:    clientID,
			ChannelID:    "95221",
			Location:     jakarta,
		},
	}
	body := `{"partnerServiceId":"  088899","customerNo":"12345678901234567890","virtualAccountNo":"  08889912345678901234567890",` +
		`"virtualAccountName":"Jokul Doe","trxId":"INV-0003","totalAmount":{"value":"150000.00","currency":"IDR"}}`
	resp, err := client.Post("http://127.0.0.1:8080/v1.0/transfer-va/create-va", "application/json", strings.NewReader(body))
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status, string(answer))
}
