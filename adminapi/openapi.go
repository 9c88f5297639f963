package adminapi

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"sync"

	"gopkg.in/yaml.v3"
)

// openAPIYAML is the API's OpenAPI 3.1 document, kept in YAML for people
// to read and change; the API serves it as JSON.
//
//go:embed openapi.yaml
var openAPIYAML []byte

var openAPIJSON = sync.OnceValues(func() ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(openAPIYAML, &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	return append(b, '\n'), nil
})

// OpenAPIJSON returns the document as JSON, as GET /admin/v1/openapi.json
// serves it. Errors: the document does not decode (a test catches it).
func OpenAPIJSON() ([]byte, error) { return openAPIJSON() }
