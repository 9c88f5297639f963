package neox

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

var errNotObject = errors.New("body is not a JSON object")

// duplicateKeyError reports a member name that appears twice.
type duplicateKeyError struct{ key string }

func (e *duplicateKeyError) Error() string { return "duplicate key " + e.key }

// readObject reads a JSON object's top-level members. Unlike
// json.Unmarshal into a map it refuses duplicate keys (json.Unmarshal keeps
// the last one silently, so two parsers could disagree about a request)
// and trailing data after the object.
func readObject(body []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errNotObject
	}
	members := make(map[string]json.RawMessage)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errNotObject
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if _, dup := members[key]; dup {
			return nil, &duplicateKeyError{key}
		}
		members[key] = v
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return members, nil
}

// isNull reports whether a raw JSON value is the literal null.
func isNull(v json.RawMessage) bool { return string(v) == "null" }
