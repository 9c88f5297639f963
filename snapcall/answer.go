package snapcall

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/tokengate/tokengate/dialect/snap"
)

var (
	caseBadRequest    = snap.CaseBadRequest
	caseFormat        = snap.CaseInvalidFormat
	caseMandatory     = snap.CaseInvalidMandatory
	caseUnauthorized  = snap.CaseUnauthorized
	caseInvalidToken  = snap.CaseInvalidToken
	caseConflict      = snap.CaseConflict
	caseExternalError = snap.CaseExternalError
	caseTimeout       = snap.CaseTimeout
)

// Answer is a SNAP error answer: HTTP status equal to the first three
// digits of responseCode. It implements gateway.Refusal.
type Answer struct {
	Status          int
	ResponseCode    string
	ResponseMessage string
}

// answer builds the answer of case c for service svc; detail follows the
// message ("Unauthorized. [reason]", "Invalid Field Format {field}").
func answer(svc int, c snap.ResponseCase, detail string) *Answer {
	status, code, msg := c.Answer(twoDigits(svc), detail)
	return &Answer{Status: status, ResponseCode: code, ResponseMessage: msg}
}

func twoDigits(n int) string {
	if n < 10 {
		return "0" + strconv.Itoa(n)
	}
	return strconv.Itoa(n % 100)
}

// Result implements gateway.Refusal: the responseCode.
func (a *Answer) Result() string { return a.ResponseCode }

// Write implements gateway.Refusal: {"responseCode","responseMessage"} with
// SNAP's X-TIMESTAMP response header.
func (a *Answer) Write(w http.ResponseWriter) {
	body, _ := json.Marshal(struct {
		ResponseCode    string `json:"responseCode"`
		ResponseMessage string `json:"responseMessage"`
	}{a.ResponseCode, a.ResponseMessage})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set(snap.HeaderTimestamp, snap.Timestamp(time.Now()))
	if a.Status == http.StatusGatewayTimeout {
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(a.Status)
	w.Write(body)
}
