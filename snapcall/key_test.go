package snapcall

import (
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/tokengate/tokengate/dialect/snap"
)

func TestExternalIDKey(t *testing.T) {
	wib := time.FixedZone("WIB", 7*3600)
	at := func(h, m int, day int) time.Time { return time.Date(2026, 3, day, h, m, 0, 0, wib) }
	k1, exp := externalIDKey("P-1", "E-1", at(23, 58, 10), 5*time.Minute)
	if k1 != "snapx:20260310:3:P-1:E-1" || !exp.Equal(at(0, 5, 11)) {
		t.Errorf("key %q expires %v", k1, exp)
	}
	if k2, _ := externalIDKey("P-1", "E-1", at(0, 2, 11), 5*time.Minute); k2 == k1 {
		t.Error("the next day has the same key")
	}
	if k, _ := externalIDKey("P-1", "E-1", at(0, 0, 10), 5*time.Minute); k != k1 {
		t.Errorf("the same day has another key: %q", k)
	}
	// The partner's length keeps partner and external ID apart.
	a, _ := externalIDKey("P:1", "E", at(12, 0, 10), 0)
	b, _ := externalIDKey("P", "1:E", at(12, 0, 10), 0)
	if a == b {
		t.Errorf("%q and %q collide", a, b)
	}
}

func TestAnswer(t *testing.T) {
	for _, c := range []struct {
		svc    int
		rc     snap.ResponseCase
		detail string
		code   string
		msg    string
	}{
		{27, caseUnauthorized, "[Signature]", "4012700", "Unauthorized. [Signature]"},
		{6, caseFormat, "{X-TIMESTAMP}", "4000601", "Invalid Field Format {X-TIMESTAMP}"},
		{26, caseMandatory, "{CHANNEL-ID}", "4002602", "Invalid Mandatory Field {CHANNEL-ID}"},
		{27, caseInvalidToken, "", "4012701", "Invalid Token (B2B)"},
		{27, caseConflict, "", "4092700", "Conflict"},
		{25, caseTimeout, "", "5042500", "Timeout"},
		{28, caseExternalError, "", "5002802", "External Server Error"},
		{99, caseBadRequest, "", "4009900", "Bad Request"},
	} {
		a := answer(c.svc, c.rc, c.detail)
		if a.ResponseCode != c.code || a.ResponseMessage != c.msg || strconv.Itoa(a.Status) != c.code[:3] {
			t.Errorf("%+v", a)
		}
		w := httptest.NewRecorder()
		a.Write(w)
		want := `{"responseCode":"` + c.code + `","responseMessage":"` + c.msg + `"}`
		if strconv.Itoa(w.Code) != c.code[:3] || w.Body.String() != want || w.Header().Get("X-TIMESTAMP") == "" ||
			(w.Header().Get("Retry-After") != "") != (c.code[:3] == "504") {
			t.Errorf("%s: %d %v %s", c.code, w.Code, w.Header(), w.Body)
		}
	}
}
