package adminapi

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/pb33f/jsonschema/v6"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
)

// document parses the served document.
func document(t *testing.T) (libopenapi.Document, map[string]any) {
	t.Helper()
	b, err := OpenAPIJSON()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := libopenapi.NewDocument(b)
	if err != nil {
		t.Fatalf("the OpenAPI document does not parse: %v", err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	return doc, raw
}

// TestOpenAPIDocumentIsValid: the document is valid OpenAPI 3.1 (checked
// against the specification's own schema by libopenapi-validator), and
// every reference resolves.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc, raw := document(t)
	if v := raw["openapi"]; v != "3.1.0" {
		t.Fatalf("openapi: %v", v)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("the document does not build: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, e := range verrs {
			t.Errorf("%s: %s", e.Message, e.Reason)
			for _, se := range e.SchemaValidationErrors {
				t.Errorf("  %s (%s): %s", se.FieldPath, se.KeywordLocation, se.Reason)
			}
		}
	}
	if _, err := doc.BuildV3Model(); err != nil {
		t.Fatalf("the model does not build (an unresolved reference?): %v", err)
	}
	// The OpenAPI 3.1 schema leaves Schema Objects to their dialect: check
	// each against JSON Schema 2020-12's meta-schema too, with the other
	// schemas as its $defs.
	b, _ := OpenAPIJSON()
	schemas := strings.ReplaceAll(string(b), "#/components/schemas/", "#/$defs/")
	var all map[string]any
	if err := json.Unmarshal([]byte(schemas), &all); err != nil {
		t.Fatal(err)
	}
	defs := all["components"].(map[string]any)["schemas"].(map[string]any)
	for name, s := range defs {
		res := map[string]any{"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": defs}
		maps.Copy(res, s.(map[string]any))
		c := jsonschema.NewCompiler()
		url := "mem://schemas/" + name + ".json"
		if err := c.AddResource(url, res); err != nil {
			t.Fatalf("schema %s: %v", name, err)
		}
		if _, err := c.Compile(url); err != nil {
			t.Errorf("schema %s is not a valid JSON Schema 2020-12 schema: %v", name, err)
		}
	}
}

// TestEveryRouteIsDocumented: every route the mux serves is an operation
// of the document, and every operation is a route; idempotent routes
// document Idempotency-Key, public routes need no security, and every
// other route answers 401 and 403.
func TestEveryRouteIsDocumented(t *testing.T) {
	_, raw := document(t)
	paths := raw["paths"].(map[string]any)
	documented := map[string]bool{}
	for p, item := range paths {
		for m := range item.(map[string]any) {
			if m != "parameters" {
				documented[strings.ToUpper(m)+" "+p] = true
			}
		}
	}
	served := map[string]bool{}
	for _, rt := range Routes() {
		key := rt.Method + " " + rt.Path
		served[key] = true
		if !documented[key] {
			t.Errorf("route %s is not in the OpenAPI document", key)
			continue
		}
		op := paths[rt.Path].(map[string]any)[strings.ToLower(rt.Method)].(map[string]any)
		params, _ := json.Marshal(op["parameters"])
		if got := strings.Contains(string(params), "IdempotencyKey"); got != rt.Idempotent {
			t.Errorf("%s: documents Idempotency-Key: %t, honours it: %t", key, got, rt.Idempotent)
		}
		sec, hasSec := op["security"].([]any)
		if rt.Public != (hasSec && len(sec) == 0) {
			t.Errorf("%s: public %t, but its security is %v", key, rt.Public, op["security"])
		}
		resps := op["responses"].(map[string]any)
		if !rt.Public {
			for _, status := range []string{"400", "401", "403", "500", "503"} {
				if resps[status] == nil {
					t.Errorf("%s: response %s is not documented", key, status)
				}
			}
		}
	}
	for key := range documented {
		if !served[key] {
			t.Errorf("the document describes %s, which is not a route", key)
		}
	}
	if len(served) != len(Routes()) {
		t.Errorf("a route is registered twice")
	}
}

// TestProblemCodesAreDocumented: the Problem schema's code enum is exactly
// the problem types the API knows.
func TestProblemCodesAreDocumented(t *testing.T) {
	_, raw := document(t)
	p := raw["components"].(map[string]any)["schemas"].(map[string]any)["Problem"].(map[string]any)
	var enum []string
	for _, c := range p["properties"].(map[string]any)["code"].(map[string]any)["enum"].([]any) {
		enum = append(enum, c.(string))
	}
	slices.Sort(enum)
	if known := slices.Sorted(maps.Keys(problemTypes)); !slices.Equal(enum, known) {
		t.Fatalf("documented codes %v, known codes %v", enum, known)
	}
}
