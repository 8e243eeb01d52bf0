package contract

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"

	"github.com/confiture-io/confiture-worker/schemas"
)

// Schema files in schemas.FS and their $id.
const (
	RequestSchemaFile      = "request.v1.json"
	EventSchemaFile        = "event.v1.json"
	DryRunReportSchemaFile = "dryrun-report.v1.json"
	RequestSchemaURL       = "https://confiture.dev/schemas/request.v1.json"
	EventSchemaURL         = "https://confiture.dev/schemas/event.v1.json"
	DryRunReportSchemaURL  = "https://confiture.dev/schemas/dryrun-report.v1.json"
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
	compiledSet map[string]*jsonschema.Schema
	errCompile  error
)

// compiled returns the compiled schema of file, compiling every contract schema on first use.
func compiled(file string) (*jsonschema.Schema, error) {
	compileOnce.Do(func() {
		compiledSet, errCompile = schemas.Compile(map[string]string{
			RequestSchemaFile:      RequestSchemaURL,
			EventSchemaFile:        EventSchemaURL,
			DryRunReportSchemaFile: DryRunReportSchemaURL,
		})
		if errCompile != nil {
			errCompile = fmt.Errorf("contract: %w", errCompile)
		}
	})
	if errCompile != nil {
		return nil, errCompile
	}
	return compiledSet[file], nil
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
	reqSchema, err := compiled(RequestSchemaFile)
	if err != nil {
		return nil, nil, err
	}
	if d := jsonDepth(data); d > MaxJSONDepth {
		return nil, nil, invalid("request nests %d levels deep, over the limit of %d levels of JSON nesting", d, MaxJSONDepth)
	}
	if err := validate(data, reqSchema, "request", RequestSchemaV1); err != nil {
		return nil, nil, err
	}
	var r Request
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, nil, invalid("malformed request: %s", clip(err.Error(), 200))
	}
	body, err := RequestBody(data)
	if err != nil {
		return nil, nil, invalid("malformed request: %s", clip(err.Error(), 200))
	}
	if err := CheckRequest(&r); err != nil {
		return nil, nil, err
	}
	return &r, body, nil
}

// ValidateEvent checks an event message against schemas/event.v1.json, schema identifier
// first. Every rejection is a *DecodeError.
func ValidateEvent(data []byte) error {
	evSchema, err := compiled(EventSchemaFile)
	if err != nil {
		return err
	}
	return validate(data, evSchema, "event", EventSchemaV1)
}

// ValidateDryRunReport checks a dry-run report, the data of a dryrun.report event, against
// schemas/dryrun-report.v1.json. A report carries no schema identifier of its own (the event
// that carries it does). Every rejection is a *DecodeError with code CodeInvalidRequest.
func ValidateDryRunReport(data []byte) error {
	sch, err := compiled(DryRunReportSchemaFile)
	if err != nil {
		return err
	}
	return validate(data, sch, "dry-run report", "")
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
		return nil, invalid("malformed %s: %s", what, clip(err.Error(), 200))
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
		return invalid("malformed JSON: %s", clip(err.Error(), 200))
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
		return invalid("invalid %s: %s", what, clip(err.Error(), 200))
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

// clip shortens s to at most max bytes, on a rune boundary.
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

var versionRE = regexp.MustCompile(`^[0-9]{1,32}$`)

// Limits of a request. The schema (schemas/request.v1.json) sets the first four; the worker
// adds the others. Every rejection for a limit names it.
const (
	// MaxMigrations is the most migrations one request carries.
	MaxMigrations = 1000
	// MaxHooksPerMigration is the most hooks one migration declares.
	MaxHooksPerMigration = 200
	// MaxSQLChars is the longest up_sql or down_sql, in characters.
	MaxSQLChars = 1 << 20
	// MaxDependsOn is the most depends_on entries of one hook.
	MaxDependsOn = 200
	// MaxHooksPerRequest is the most hooks all the migrations of one request declare together.
	MaxHooksPerRequest = 10000
	// MaxParamsDepth is how deep a hook's params may nest, the params object being level 1.
	MaxParamsDepth = 32
)

// CheckRequest runs the checks on a request that its JSON Schema cannot express: unique
// versions, checksums that match up_sql, unique hook names within a migration and phase,
// depends_on naming another hook of the same migration and phase, no dependency cycle, a
// well-formed "to", at most MaxHooksPerRequest hooks and params at most MaxParamsDepth deep.
// It returns a *DecodeError with code CodeInvalidRequest naming the migration and hook at
// fault, or nil. It does not repeat the schema's checks: use DecodeRequest on the marshalled
// request for a full validation.
func CheckRequest(r *Request) error {
	if r == nil {
		return invalid("request is missing")
	}
	if r.To != "" && !versionRE.MatchString(r.To) {
		return invalid("to %s is not a version (1 to 32 digits)", quote(r.To, 40))
	}
	total := 0
	for i := range r.Migrations {
		total += len(r.Migrations[i].Hooks)
	}
	if total > MaxHooksPerRequest {
		return invalid("the migrations declare %d hooks together, over the limit of %d hooks per request: submit fewer migrations at a time", total, MaxHooksPerRequest)
	}
	for i := range r.Migrations {
		m := &r.Migrations[i]
		for _, h := range m.Hooks {
			if d := depthOf(h.Params, 0); d > MaxParamsDepth {
				return invalid("params of hook %s of migration %s (phase %s) nest more than %d levels deep (the limit of params depth)",
					quote(h.Name, 64), plain(m.ID(), 170), quote(h.Phase, 32), MaxParamsDepth)
			}
		}
	}
	versions := make(map[string]string, len(r.Migrations))
	for i := range r.Migrations {
		m := &r.Migrations[i]
		id := plain(m.ID(), 170)
		if prev, dup := versions[m.Version]; dup {
			return invalid("migrations %s and %s have the same version %s", prev, id, quote(m.Version, 40))
		}
		versions[m.Version] = id
		if m.Checksum != Checksum(m.UpSQL) {
			return invalid("checksum of migration %s does not match its up_sql (want the sha256 hex of up_sql)", id)
		}
		if err := checkHooks(id, m.Hooks); err != nil {
			return err
		}
	}
	return nil
}

// checkHooks checks the hooks of one migration, phase by phase, in declaration order.
func checkHooks(migration string, hooks []HookSpec) error {
	type phaseHooks struct {
		names []string            // declaration order
		deps  map[string][]string // name -> depends_on
	}
	phases := map[string]*phaseHooks{}
	for _, h := range hooks {
		ph := phases[h.Phase]
		if ph == nil {
			ph = &phaseHooks{deps: map[string][]string{}}
			phases[h.Phase] = ph
		}
		if _, dup := ph.deps[h.Name]; dup {
			return invalid("migration %s declares hook %s twice in phase %s", migration, quote(h.Name, 64), quote(h.Phase, 32))
		}
		ph.names = append(ph.names, h.Name)
		ph.deps[h.Name] = h.DependsOn
		if h.DependsOn == nil {
			ph.deps[h.Name] = []string{}
		}
	}
	for _, p := range Phases { // deterministic order; unknown phases are the schema's business
		ph := phases[p]
		if ph == nil {
			continue
		}
		for _, name := range ph.names {
			for _, dep := range ph.deps[name] {
				if dep == name {
					return invalid("hook %s of migration %s (phase %s) depends on itself", quote(name, 64), migration, p)
				}
				if _, ok := ph.deps[dep]; !ok {
					return invalid("hook %s of migration %s (phase %s) depends on %s, which is not a hook of that migration and phase", quote(name, 64), migration, p, quote(dep, 64))
				}
			}
		}
		if cycle := FindCycle(ph.names, ph.deps); cycle != nil {
			for i := range cycle {
				cycle[i] = quote(cycle[i], 64)
			}
			return invalid("hooks of migration %s (phase %s) form a dependency cycle: %s", migration, p, clip(strings.Join(cycle, " -> "), 400))
		}
	}
	return nil
}

// depthOf returns the nesting depth of v below depth (an object or array counts one level),
// stopping as soon as it passes MaxParamsDepth: it never recurses further than that.
func depthOf(v any, depth int) int {
	if depth > MaxParamsDepth {
		return depth
	}
	deepest := depth
	switch t := v.(type) {
	case map[string]any:
		if t == nil {
			return depth
		}
		deepest = depth + 1
		for _, e := range t {
			if d := depthOf(e, depth+1); d > deepest {
				deepest = d
			}
			if deepest > MaxParamsDepth {
				break
			}
		}
	case []any:
		deepest = depth + 1
		for _, e := range t {
			if d := depthOf(e, depth+1); d > deepest {
				deepest = d
			}
			if deepest > MaxParamsDepth {
				break
			}
		}
	}
	return deepest
}

// FindCycle returns a dependency cycle among names (deps[n] are what n depends on) as a path
// that starts and ends with the same name, or nil: the one cycle finder of requests, hooks
// files and hook plans. Iterative, so deep chains cannot exhaust the stack.
func FindCycle(names []string, deps map[string][]string) []string {
	const (
		unvisited = iota
		active
		done
	)
	state := make(map[string]int, len(names))
	type frame struct {
		name string
		next int
	}
	for _, start := range names {
		if state[start] != unvisited {
			continue
		}
		stack := []frame{{name: start}}
		state[start] = active
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			if top.next == len(deps[top.name]) {
				state[top.name] = done
				stack = stack[:len(stack)-1]
				continue
			}
			dep := deps[top.name][top.next]
			top.next++
			switch state[dep] {
			case unvisited:
				state[dep] = active
				stack = append(stack, frame{name: dep})
			case active:
				var cycle []string
				for i := range stack {
					if stack[i].name == dep {
						for _, f := range stack[i:] {
							cycle = append(cycle, f.name)
						}
						break
					}
				}
				return append(cycle, dep)
			}
		}
	}
	return nil
}
