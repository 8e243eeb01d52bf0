package plugin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/confiture-io/confiture-worker/internal/clip"
	"github.com/confiture-io/confiture-worker/internal/redact"
	"github.com/confiture-io/confiture-worker/schemas"
)

// Schema identifiers, files in schemas.FS and $ids of the plugin protocol.
const (
	RequestSchemaV1 = "confiture.plugin-request/v1"
	ResultSchemaV1  = "confiture.plugin-result/v1"

	RequestSchemaFile = "plugin-request.v1.json"
	ResultSchemaFile  = "plugin-result.v1.json"
	RequestSchemaURL  = "https://confiture.dev/schemas/plugin-request.v1.json"
	ResultSchemaURL   = "https://confiture.dev/schemas/plugin-result.v1.json"
)

// Request is what the worker writes on a plugin's standard input. It mirrors
// schemas/plugin-request.v1.json.
type Request struct {
	Schema    string `json:"schema"`
	Run       string `json:"run"`
	RequestID string `json:"request_id"`
	Target    string `json:"target"`
	// Migration is "<version>_<name>".
	Migration string `json:"migration"`
	Version   string `json:"version"`
	Phase     string `json:"phase"`
	// Hook is the declared name of the hook instance, not the plugin's name.
	Hook    string `json:"hook"`
	Attempt int    `json:"attempt"`
	// IdempotencyKey is the same on every attempt; see IdempotencyKey.
	IdempotencyKey string `json:"idempotency_key"`
	// Params is a JSON object, {} when the declaration has none.
	Params       json.RawMessage `json:"params"`
	TargetSchema string          `json:"target_schema,omitempty"`
}

// Result is what a plugin writes on its standard output. It mirrors
// schemas/plugin-result.v1.json.
type Result struct {
	Schema       string         `json:"schema"`
	Success      bool           `json:"success"`
	RowsAffected int64          `json:"rows_affected,omitempty"`
	Stats        map[string]any `json:"stats,omitempty"`
	Message      string         `json:"message,omitempty"`
	Error        *Error         `json:"error,omitempty"`
}

// Error is the failure a plugin reports in its Result.
type Error struct {
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
}

// IdempotencyKey returns the key a plugin gets for one hook of one phase of one migration in one
// run: the hex SHA-256 of the four joined by NUL bytes. It is the same on every attempt, so a
// plugin that records it with its work can tell a retry from a first run.
func IdempotencyKey(run, migration, phase, hook string) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{run, migration, phase, hook}, "\x00")))
	return hex.EncodeToString(sum[:])
}

var (
	compileOnce sync.Once
	reqSchema   *jsonschema.Schema
	resSchema   *jsonschema.Schema
	errCompile  error
)

// protocolSchemas returns the compiled request and result schemas, compiling them on first use.
func protocolSchemas() (req, res *jsonschema.Schema, err error) {
	compileOnce.Do(func() {
		compiled, err := schemas.Compile(map[string]string{RequestSchemaFile: RequestSchemaURL, ResultSchemaFile: ResultSchemaURL})
		if err != nil {
			errCompile = fmt.Errorf("plugin: %w", err)
			return
		}
		reqSchema, resSchema = compiled[RequestSchemaFile], compiled[ResultSchemaFile]
	})
	return reqSchema, resSchema, errCompile
}

// validateRequest checks an outgoing request against its schema.
func validateRequest(data []byte) error {
	req, _, err := protocolSchemas()
	if err != nil {
		return err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	if err := req.Validate(doc); err != nil {
		return errors.New(schemas.Violations(err, nil))
	}
	return nil
}

// decodeResult parses a plugin's standard output: exactly one JSON object that validates against
// the result schema. The error says why not, in words meant for the plugin's author.
// Quotes of the output are redacted with dsn.
func decodeResult(out []byte, dsn string) (*Result, error) {
	quoteOutput := func(b []byte) string { return quoteOutput(b, dsn) }
	_, res, err := protocolSchemas()
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil, errors.New("printed no result on stdout (want one " + ResultSchemaV1 + " JSON object)")
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(out))
	if err != nil {
		return nil, fmt.Errorf("stdout is not one JSON object (%s); it begins with %s", clip.String(err.Error(), 120, ""), quoteOutput(out))
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("stdout must be one JSON object, got %s", quoteOutput(out))
	}
	if id, _ := obj["schema"].(string); id != ResultSchemaV1 {
		return nil, fmt.Errorf("result's \"schema\" must be %q, got %s", ResultSchemaV1, quoteOutput(out))
	}
	if err := res.Validate(doc); err != nil {
		return nil, fmt.Errorf("result does not match %s: %s; got %s", ResultSchemaV1, schemas.Violations(err, nil), quoteOutput(out))
	}
	var r Result
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("result does not match %s: %s", ResultSchemaV1, clip.String(err.Error(), 200, ""))
	}
	return &r, nil
}

// maxQuote bounds how much of a plugin's output an error message quotes.
const maxQuote = 200

// quoteOutput quotes the beginning of a plugin's output for an error message: at most about
// maxQuote bytes, with dsn and passwords redacted before it is shortened (so that a cut cannot
// leave part of a secret behind) and control characters escaped.
func quoteOutput(out []byte, dsn string) string {
	head := out[:min(len(out), maxQuote+len(dsn)+64)]
	s := redact.String(string(head), redact.Secrets(dsn)...)
	if len(head) < len(out) || len(s) > maxQuote {
		return strconv.Quote(clip.String(s, maxQuote, "")) + "..."
	}
	return strconv.Quote(s)
}
