package adminapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/tokengate/tokengate/admin"
	"github.com/tokengate/tokengate/internal/jsonx"
	"github.com/tokengate/tokengate/internal/reqbody"
)

// Body limits: a JSON request body, and an import file.
const (
	maxBody       = 1 << 20
	maxImportBody = admin.MaxImportSize
)

// readBody reads r's body, at most limit bytes. A body needs Content-Type
// application/json (any parameters, such as charset=utf-8, are ignored).
// Errors: *apiError (too large, not JSON, unreadable).
func readBody(r *http.Request, limit int) (string, error) {
	body, err := reqbody.Read(r, limit)
	if errors.Is(err, reqbody.ErrTooLarge) {
		return "", &apiError{code: CodeTooLarge, detail: fmt.Sprintf("the request body is larger than %d bytes", limit)}
	}
	if err != nil {
		return "", invalidField("", "the request body could not be read")
	}
	if body != "" && !isJSON(r.Header.Get("Content-Type")) {
		return "", &apiError{code: CodeUnsupportedMediaType, detail: "the request body must be JSON (Content-Type: application/json)"}
	}
	return body, nil
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}

// decodeObject reads body, which must be one JSON object (strictly:
// valid UTF-8, no repeated member, no trailing data; see jsonx.ReadObject),
// into the struct dst points to, member by member, so that an error names
// its member. A member the struct does not have, or a null, is refused:
// absent means "unchanged" (a PATCH) or "the default" (a create), and ""
// or [] clear a value, so null would only be a third spelling of one of
// them. An empty body is an empty object. Errors: *apiError (a validation
// problem naming every member at fault).
func decodeObject(body string, dst any) error {
	if strings.TrimSpace(body) == "" {
		body = "{}"
	}
	obj, err := jsonx.ReadObject(body)
	if err != nil {
		var dup *jsonx.DuplicateKeyError
		if errors.As(err, &dup) && !dup.Nested {
			return invalidField(fieldName(dup.Key), "given twice")
		}
		return invalidField("", "the body is not a JSON object: "+strings.TrimPrefix(err.Error(), "jsonx: "))
	}
	fields := jsonFields(reflect.TypeOf(dst).Elem())
	v := reflect.ValueOf(dst).Elem()
	var errs []FieldError
	for name, val := range obj.All() {
		idx, ok := fields[name]
		switch {
		case !ok:
			errs = append(errs, FieldError{Field: fieldName(name), Message: "unknown field"})
			continue
		case val.IsNull():
			errs = append(errs, FieldError{Field: name, Message: "null is not a value here: leave the field out to keep it as it is, or give \"\" or [] to clear it"})
			continue
		}
		if msg, sub := decodeValue(val.Raw(), v.Field(idx).Addr().Interface()); msg != "" {
			errs = append(errs, FieldError{Field: joinField(name, sub), Message: msg})
		}
	}
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return &apiError{code: admin.CodeInvalid, detail: fieldDetail(errs[0].Field, errs[0].Message), fields: errs}
	}
	return &apiError{code: admin.CodeInvalid, detail: plural(len(errs), "field is", "fields are") + " unusable (see errors)", fields: errs}
}

// decodeValue decodes one member's JSON text into dst strictly (nested
// objects refuse unknown members). It returns what is wrong ("" for
// nothing) and the nested field at fault, if any.
func decodeValue(raw string, dst any) (msg, field string) {
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil {
		return "", ""
	}
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te):
		// te.Field is the path inside a nested object ("max_clients").
		return "wrong type (want " + jsonType(te.Type) + ")", te.Field
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field", fieldName(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`))
	}
	// A value's own error (a duration that does not parse): its text
	// quotes the caller's own value, never anything stored.
	return strings.TrimPrefix(err.Error(), "json: "), ""
}

func joinField(name, sub string) string {
	if sub == "" {
		return name
	}
	return name + "." + sub
}

// fieldName is a member name as a problem may show it: the caller's own
// text, unless it is long or not printable (a pasted secret, garbage).
func fieldName(name string) string {
	if len(name) > 64 || !utf8.ValidString(name) || strings.IndexFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return "(a member name)"
	}
	return name
}

func jsonType(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "a list of strings"
		}
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Pointer:
		return jsonType(t.Elem())
	}
	return t.String()
}

// jsonFields maps the JSON member names of struct type t to field
// indexes.
func jsonFields(t reflect.Type) map[string]int {
	out := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = i
	}
	return out
}

// encodeJSON is v as the API writes it.
func encodeJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
