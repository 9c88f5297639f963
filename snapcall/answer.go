package snapcall

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/tokengate/tokengate/dialect/snap"
)

// A responseCase is one row of SNAP's response code table, whatever the
// service: responseCode = HTTP status + service code + case code.
type responseCase struct {
	status  int
	code    string
	message string
}

var (
	caseBadRequest    = responseCase{http.StatusBadRequest, "00", "Bad Request"}
	caseFormat        = responseCase{http.StatusBadRequest, "01", "Invalid Field Format"}
	caseMandatory     = responseCase{http.StatusBadRequest, "02", "Invalid Mandatory Field"}
	caseUnauthorized  = responseCase{http.StatusUnauthorized, "00", "Unauthorized"}
	caseInvalidToken  = responseCase{http.StatusUnauthorized, "01", "Invalid Token (B2B)"}
	caseConflict      = responseCase{http.StatusConflict, "00", "Conflict"}
	caseExternalError = responseCase{http.StatusInternalServerError, "02", "External Server Error"}
	caseTimeout       = responseCase{http.StatusGatewayTimeout, "00", "Timeout"}
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
func answer(svc int, c responseCase, detail string) *Answer {
	msg := c.message
	switch {
	case detail == "":
	case c == caseUnauthorized:
		msg += ". " + detail
	default:
		msg += " " + detail
	}
	return &Answer{Status: c.status, ResponseCode: strconv.Itoa(c.status) + twoDigits(svc) + c.code, ResponseMessage: msg}
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
