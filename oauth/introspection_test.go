package oauth

import (
	"encoding/json"
	"testing"
)

func TestIntrospectionJSON(t *testing.T) {
	for _, tc := range []struct {
		in   Introspection
		want string
	}{
		{Introspection{}, `{"active":false}`},
		// An inactive result never says more, whatever it holds.
		{Introspection{ClientID: "c", Scope: []string{"a"}}, `{"active":false}`},
		{Introspection{Active: true, Scope: []string{"payments", "refunds"}, ClientID: "c", TokenType: "Bearer", Exp: 2, Iat: 1,
			Sub: "c", Aud: []string{"https://api"}, Iss: "https://auth", Jti: "j"},
			`{"active":true,"scope":"payments refunds","client_id":"c","token_type":"Bearer","exp":2,"iat":1,"sub":"c","aud":["https://api"],"iss":"https://auth","jti":"j"}`},
		{Introspection{Active: true, Username: "alice"}, `{"active":true,"username":"alice"}`},
	} {
		got, err := json.Marshal(tc.in)
		if err != nil || string(got) != tc.want {
			t.Errorf("%+v: %s, %v; want %s", tc.in, got, err, tc.want)
		}
		p := &tc.in // through a pointer, as handlers pass it
		if got, _ := json.Marshal(p); string(got) != tc.want {
			t.Errorf("*%+v: %s", tc.in, got)
		}
	}
}
