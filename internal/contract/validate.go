package contract

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"

	"github.com/confiture-io/confiture-worker/internal/clip"
	"github.com/confiture-io/confiture-worker/schemas"
)

// Schema files in schemas.FS and their $id.
const (
	RequestSchemaFile = "request.v1.json"
	EventSchemaFile   = "event.v1.json"
	RequestSchemaURL  = "https://confiture.dev/schemas/request.v1.json"
	EventSchemaURL    = "https://confiture.dev/schemas/event.v1.json"
	// DryRunReportSchemaFile is the report this version writes (version 2); version 1, which
	// older workers wrote, is still read.
	DryRunReportSchemaFile   = "dryrun-report.v2.json"
	DryRunReportSchemaURL    = "https://confiture.dev/schemas/dryrun-report.v2.json"
	DryRunReportV1SchemaFile = "dryrun-report.v1.json"
	DryRunReportV1SchemaURL  = "https://confiture.dev/schemas/dryrun-report.v1.json"
)

// DecodeError says why a message was rejected. Code is CodeUnsupportedSchema when the message's
// schema identifier is missing or unknown, and CodeInvalidRequest for everything else (not
// JSON, not an object, a schema violation, a failed semantic check). Message is meant for the
// person who sent the message: short (about 1 KiB at most), deterministic, and it never echoes
// long stretches of the input.
type DecodeError struct {
	Code    string
	Message string
}

func (e *DecodeError) Error() string { return e.Code + ": " + e.Message }

func invalid(format string, args ...any) *DecodeError {
	return &DecodeError{Code: CodeInvalidRequest, Message: fmt.Sprintf(format, args...)}
}

// Checksum is the checksum of a migration: the lower-case hex SHA-256 of its up SQL.
func Checksum(upSQL string) string {
	sum := sha256.Sum256([]byte(upSQL))
	return hex.EncodeToString(sum[:])
}

var (
	compileOnce sync.Once
	compiledSet map[string]*jsonschema.Schema // by ref: a contract file's $id, or one of its parts
	errCompile  error
)

// compiled returns the compiled schema at ref (a contract schema file's $id, or a part of one
// validated on its own), compiling every contract schema on first use.
func compiled(ref string) (*jsonschema.Schema, error) {
	compileOnce.Do(func() {
		refs := []string{RequestSchemaURL, EventSchemaURL, DryRunReportSchemaURL, DryRunReportV1SchemaURL}
		for _, def := range apiDefs {
			refs = append(refs, apiDefRef(def))
		}
		compiledSet, errCompile = schemas.CompileRefs(map[string]string{
			RequestSchemaFile:        RequestSchemaURL,
			EventSchemaFile:          EventSchemaURL,
			DryRunReportSchemaFile:   DryRunReportSchemaURL,
			DryRunReportV1SchemaFile: DryRunReportV1SchemaURL,
			APISchemaFile:            APISchemaURL,
		}, refs...)
		if errCompile != nil {
			errCompile = fmt.Errorf("contract: %w", errCompile)
		}
	})
	if errCompile != nil {
		return nil, errCompile
	}
	sch, ok := compiledSet[ref]
	if !ok {
		return nil, fmt.Errorf("contract: no schema %s", ref)
	}
	return sch, nil
}

// DecodeRequest parses, validates and checks a request message. It checks the schema
// identifier first, then validates against schemas/request.v1.json, decodes, and finally runs
// CheckRequest. Every rejection is a *DecodeError; it never panics, whatever data holds.
func DecodeRequest(data []byte) (*Request, error) {
	r, _, err := DecodeRequestBody(data)
	return r, err
}

// DecodeRequestBody is DecodeRequest that also returns the request's body, RequestBody(data):
// its canonical form without the signature, which identifies what it asks for. Beyond the
// schema it refuses JSON nested deeper than MaxJSONDepth and objects with a duplicate member
// name (which JSON parsers disagree about).
func DecodeRequestBody(data []byte) (*Request, []byte, error) {
	reqSchema, err := compiled(RequestSchemaURL)
	if err != nil {
		return nil, nil, err
	}
	if d := jsonDepth(data); d > MaxJSONDepth {
		return nil, nil, invalid("request nests %d levels deep, over the limit of %d levels of JSON nesting", d, MaxJSONDepth)
	}
	if err := validate(data, reqSchema, "request", RequestSchemaV1); err != nil {
		// The schema's oneOf says only that it is not matched: say which names are wrong.
		var probe Request
		if json.Unmarshal(data, &probe) == nil && probe.Schema == RequestSchemaV1 && (probe.Target == "") == (probe.Group == "") {
			if aerr := checkAddressee(&probe); aerr != nil {
				return nil, nil, aerr
			}
		}
		return nil, nil, err
	}
	var r Request
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, nil, invalid("malformed request: %s", clip.String(err.Error(), 200, "..."))
	}
	body, err := RequestBody(data)
	if err != nil {
		return nil, nil, invalid("malformed request: %s", clip.String(err.Error(), 200, "..."))
	}
	if err := checkAddressee(&r); err != nil {
		return nil, nil, err
	}
	if err := CheckRequest(&r); err != nil {
		return nil, nil, err
	}
	return &r, body, nil
}

// ValidateEvent checks an event message against schemas/event.v1.json, schema identifier
// first. Every rejection is a *DecodeError.
func ValidateEvent(data []byte) error {
	evSchema, err := compiled(EventSchemaURL)
	if err != nil {
		return err
	}
	return validate(data, evSchema, "event", EventSchemaV1)
}

// ValidateDryRunReport checks a dry-run report, the data of a dryrun.report event: against
// schemas/dryrun-report.v2.json when it has a schema field (DryRunReportSchemaV2), else against
// schemas/dryrun-report.v1.json, the version older workers write, which carries no schema
// identifier of its own. Every rejection is a *DecodeError.
func ValidateDryRunReport(data []byte) error {
	var probe struct {
		Schema *string `json:"schema"`
	}
	if json.Unmarshal(data, &probe) == nil && probe.Schema == nil {
		sch, err := compiled(DryRunReportV1SchemaURL)
		if err != nil {
			return err
		}
		return validate(data, sch, "dry-run report", "")
	}
	sch, err := compiled(DryRunReportSchemaURL)
	if err != nil {
		return err
	}
	return validate(data, sch, "dry-run report", DryRunReportSchemaV2)
}

// DecodeDryRunReport validates a dry-run report (see ValidateDryRunReport) and decodes it.
func DecodeDryRunReport(data []byte) (*DryRunReport, error) {
	return decodeValid[DryRunReport](data, ValidateDryRunReport, "dry-run report")
}

// DecodeEvent validates an event message (see ValidateEvent) and decodes it.
func DecodeEvent(data []byte) (*Event, error) {
	return decodeValid[Event](data, ValidateEvent, "event")
}

// decodeValid checks data with validate, then decodes it into a T.
func decodeValid[T any](data []byte, validate func([]byte) error, what string) (*T, error) {
	if err := validate(data); err != nil {
		return nil, err
	}
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, invalid("malformed %s: %s", what, clip.String(err.Error(), 200, "..."))
	}
	return &v, nil
}

// validate parses data, checks its "schema" field against want (unless want is ""), then
// validates it against sch.
func validate(data []byte, sch *jsonschema.Schema, what, want string) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return invalid("malformed JSON: empty message")
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return invalid("malformed JSON: unexpected end of input")
		}
		return invalid("malformed JSON: %s", clip.String(err.Error(), 200, "..."))
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return invalid("%s must be a JSON object, got %s", what, jsonType(doc))
	}
	if want == "" {
		return validateDoc(doc, sch, what)
	}
	id, present := obj["schema"]
	if !present {
		return &DecodeError{Code: CodeUnsupportedSchema, Message: fmt.Sprintf("missing %q field (want %q)", "schema", want)}
	}
	s, ok := id.(string)
	if !ok {
		return &DecodeError{Code: CodeUnsupportedSchema, Message: fmt.Sprintf("%q field must be a string, got %s (want %q)", "schema", jsonType(id), want)}
	}
	if s != want {
		return &DecodeError{Code: CodeUnsupportedSchema, Message: fmt.Sprintf("schema %s is not supported (want %q)", quote(s, 64), want)}
	}
	return validateDoc(doc, sch, what)
}

// validateDoc validates a parsed document against sch.
func validateDoc(doc any, sch *jsonschema.Schema, what string) error {
	if err := sch.Validate(doc); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			return invalid("%s", schemas.Violations(ve, limitName))
		}
		return invalid("invalid %s: %s", what, clip.String(err.Error(), 200, "..."))
	}
	return nil
}

// limitName names the request limit a size violation at loc hits, as " (the limit of ...)",
// or returns "".
func limitName(loc []string, k jsonschema.ErrorKind) string {
	name := ""
	switch k.(type) {
	case *kind.MaxItems:
		switch {
		case len(loc) == 1 && loc[0] == "migrations":
			name = "migrations per request"
		case len(loc) == 3 && loc[0] == "migrations" && loc[2] == "hooks":
			name = "hooks per migration"
		case len(loc) == 5 && loc[0] == "migrations" && loc[2] == "hooks" && loc[4] == "depends_on":
			name = "depends_on entries per hook"
		}
	case *kind.MaxLength:
		if len(loc) == 3 && loc[0] == "migrations" && (loc[2] == "up_sql" || loc[2] == "down_sql") {
			name = "SQL size per migration"
		}
	}
	if name == "" {
		return ""
	}
	return " (the limit of " + name + ")"
}

// jsonType names the JSON type of a value produced by jsonschema.UnmarshalJSON.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number, float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// quote quotes s for a message, shortened to at most max runes of s.
func quote(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return strconv.Quote(s)
	}
	return strconv.Quote(string([]rune(s)[:max])) + "..."
}

// plain is quote without the quotes: s with control and invalid characters escaped.
func plain(s string, max int) string {
	q := quote(s, max)
	if strings.HasSuffix(q, "...") {
		return q[1:len(q)-4] + "..."
	}
	return q[1 : len(q)-1]
}
