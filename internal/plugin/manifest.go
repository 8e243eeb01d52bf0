package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/confiture-io/confiture-worker/internal/clip"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/schemas"
)

// Manifest file suffixes, and limits of a manifest.
const (
	YAMLSuffix = ".hook.yaml"
	JSONSuffix = ".hook.json"

	// DefaultTimeout is how long a plugin may run when its manifest sets no timeout.
	DefaultTimeout = 5 * time.Minute
	// MaxTimeout is the longest timeout a manifest may set.
	MaxTimeout = 24 * time.Hour

	maxManifestSize = 1 << 20
)

// Manifest is a plugin manifest, as written in a *.hook.yaml or *.hook.json file. Unknown keys
// are errors, so that a typo does not silently change what a plugin does.
type Manifest struct {
	// Name is the hook type that hooks files name in `hook:`; the rules of hooks.Registry apply
	// (1 to 64 lower-case letters, digits, '_', '.', '-', starting with a letter or digit).
	Name string `json:"name"`
	// Version of the plugin, shown by `worker hooks list`.
	Version string `json:"version,omitempty"`
	// Description is one line for `worker hooks list`.
	Description string `json:"description,omitempty"`
	// Phases the hook may be declared in, a subset of the six hook phases. Empty means all.
	Phases []string `json:"phases,omitempty"`
	// Command is the program to run. A relative path is relative to the manifest's directory;
	// it is not looked up in PATH. It must exist and be executable when the manifest loads.
	Command string `json:"command"`
	// Args are passed to Command as they are (no shell, no expansion).
	Args []string `json:"args,omitempty"`
	// Timeout is a Go duration ("90s", "10m"). Defaults to 5m; at most 24h.
	Timeout string `json:"timeout,omitempty"`
	// Transactional is the plugin's promise that its own work is all-or-nothing. A plugin never
	// joins the worker's transaction.
	Transactional bool `json:"transactional,omitempty"`
	// Env names the variables of the worker's environment the plugin may receive. The worker's
	// own secrets (CONFITURE_*, NATS_*, DATABASE_URL, PGPASSWORD, ...) are never passed, even if
	// listed.
	Env []string `json:"env,omitempty"`
	// ParamsSchema is a JSON Schema (draft 2020-12) object that a declaration's parameters must
	// satisfy. It must be self-contained: $ref may only point inside it.
	ParamsSchema json.RawMessage `json:"params_schema,omitempty"`
	// Example holds parameters shown by `worker hooks describe`; they must satisfy ParamsSchema.
	Example map[string]any `json:"example,omitempty"`
}

// ManifestError says why a manifest could not be loaded.
type ManifestError struct {
	// Path of the manifest file.
	Path string
	// Name of the hook, when the manifest got far enough to tell.
	Name   string
	Reason string
}

func (e *ManifestError) Error() string {
	if e.Name != "" {
		return fmt.Sprintf("plugin manifest %s (hook %q): %s", e.Path, e.Name, e.Reason)
	}
	return fmt.Sprintf("plugin manifest %s: %s", e.Path, e.Reason)
}

// LoadFailure converts e for hooks.Registry.RecordFailure.
func (e *ManifestError) LoadFailure() hooks.LoadFailure {
	return hooks.LoadFailure{Name: e.Name, Source: e.Path, Reason: e.Reason}
}

// hookNameRe repeats the rule of hooks.Registry, so that a bad name is reported with the
// manifest's path.
var hookNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

var envNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// manifestKeys lists the keys a manifest may have, for the unknown-key message.
var manifestKeys = []string{
	"name", "version", "description", "phases", "command", "args", "timeout",
	"transactional", "env", "params_schema", "example",
}

// plugin is a loaded manifest, ready to run.
type plugin struct {
	manifest Manifest
	path     string // of the manifest
	dir      string // of the manifest: the working directory
	command  string // absolute
	timeout  time.Duration
	env      []string // allowed names that are not worker secrets
	denied   []string // allowed names that are worker secrets, never passed
}

// Load reads and checks one manifest and returns its hook definition. path should be absolute:
// it is the definition's Source. Every error is a *ManifestError.
func Load(path string) (hooks.Definition, error) {
	p, err := load(path)
	if err != nil {
		return hooks.Definition{}, err
	}
	return p.definition(), nil
}

func load(path string) (*plugin, error) {
	fail := func(name, format string, args ...any) error {
		return &ManifestError{Path: path, Name: name, Reason: fmt.Sprintf(format, args...)}
	}
	raw, err := readManifest(path)
	if err != nil {
		return nil, fail("", "%v", err)
	}
	m, name, err := parseManifest(path, raw)
	if err != nil {
		return nil, fail(name, "%v", err)
	}
	p, err := check(path, m)
	if err != nil {
		return nil, fail(name, "%v", err)
	}
	return p, nil
}

// parseManifest decodes the content raw of the manifest file path (YAML, or JSON for a
// JSONSuffix path) strictly, without checking it further. name is the manifest's name, when
// it got far enough to tell, even on error.
func parseManifest(path string, raw []byte) (m *Manifest, name string, err error) {
	data, err := manifestJSON(path, raw)
	if err != nil {
		return nil, "", err
	}
	if string(bytes.TrimSpace(data)) == "null" {
		return nil, "", errors.New("manifest is empty")
	}
	var loose map[string]any
	if err := json.Unmarshal(data, &loose); err != nil || loose == nil {
		return nil, "", errors.New("a manifest must be a mapping of keys to values")
	}
	name, _ = loose["name"].(string)
	m = &Manifest{}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(m); err != nil {
		return nil, name, errors.New(decodeReason(err))
	}
	return m, name, nil
}

func readManifest(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > maxManifestSize {
		return nil, errors.New("manifest is larger than 1 MiB")
	}
	return raw, nil
}

// manifestJSON returns a manifest's content as JSON: YAML is converted, JSON must be exactly one
// JSON value.
func manifestJSON(path string, raw []byte) ([]byte, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, errors.New("manifest is empty")
	}
	if strings.HasSuffix(path, JSONSuffix) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("malformed JSON: %v", err)
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, errors.New("malformed JSON: more than one value")
		}
		return v, nil
	}
	// Aliases could expand exponentially (a "billion laughs" manifest would stall start-up);
	// a manifest has no use for them.
	if len(raw) > maxManifest {
		return nil, fmt.Errorf("manifest is %d bytes, over the limit of %d", len(raw), maxManifest)
	}
	// The YAML parser takes time and memory quadratic in the nesting of flow collections (a
	// 20 KB manifest of '[' would cost it 600 MB): refuse such nesting before parsing.
	if flowNesting(raw) > maxFlowNesting {
		return nil, fmt.Errorf("manifest nests more than %d levels deep ('[' and '{' without their closing bracket)", maxFlowNesting)
	}
	return yamlToJSON(raw)
}

// yamlToJSON converts a YAML manifest, refusing aliases; a panic of the YAML library is an
// error like any other.
func yamlToJSON(raw []byte) (data []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			data, err = nil, fmt.Errorf("malformed YAML: the YAML parser failed: %v", r)
		}
	}()
	if f, perr := parser.ParseBytes(raw, 0); perr == nil {
		for _, doc := range f.Docs {
			if doc.Body != nil && hasAlias(doc.Body) {
				return nil, errors.New("YAML aliases (*name) are not allowed in a manifest")
			}
		}
	}
	data, err = yaml.YAMLToJSON(raw)
	if err != nil {
		// The library's message quotes the source after its first line; the position is enough.
		first, _, _ := strings.Cut(err.Error(), "\n")
		return nil, fmt.Errorf("malformed YAML: %s", oneLine(first))
	}
	return data, nil
}

// decodeReason rewords the errors of the strict decoding of a manifest.
func decodeReason(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return "a manifest must be a mapping of keys to values"
		}
		typ := te.Type.String()
		if te.Field == "args" || te.Field == "env" || te.Field == "phases" {
			typ = "[]string" // te.Type is the element's type
		}
		want := map[string]string{
			"string": "a string", "bool": "true or false", "[]string": "a list of strings",
			"map[string]interface {}": "a mapping",
		}[typ]
		if want == "" {
			want = typ
		}
		hint := ""
		if te.Value == "number" && strings.Contains(typ, "string") {
			hint = " (quote numbers in YAML)"
		}
		return fmt.Sprintf("%s must be %s%s, got %s", te.Field, want, hint, te.Value)
	}
	msg := err.Error()
	if key, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return fmt.Sprintf("unknown key %s (known keys: %s)", key, strings.Join(manifestKeys, ", "))
	}
	return strings.TrimPrefix(msg, "json: ")
}

// check validates a decoded manifest and resolves its command.
func check(path string, m *Manifest) (*plugin, error) {
	if m.Name == "" {
		return nil, errors.New("name is missing")
	}
	if !hookNameRe.MatchString(m.Name) {
		return nil, fmt.Errorf("name %q is not a valid hook name: 1 to 64 lower-case letters, digits, '_', '.' or '-', starting with a letter or digit", m.Name)
	}
	for i, ph := range m.Phases {
		if !hooks.IsHookPhase(ph) {
			return nil, fmt.Errorf("phases: %q is not a hook phase (want some of %s)", ph, strings.Join(hooks.HookPhases, ", "))
		}
		if slices.Contains(m.Phases[:i], ph) {
			return nil, fmt.Errorf("phases: %q is listed twice", ph)
		}
	}
	p := &plugin{manifest: *m, path: path, dir: filepath.Dir(path), timeout: DefaultTimeout}
	if m.Timeout != "" {
		d, err := time.ParseDuration(m.Timeout)
		switch {
		case err != nil:
			return nil, fmt.Errorf("timeout %q is not a duration (for example \"90s\" or \"10m\")", m.Timeout)
		case d <= 0:
			return nil, fmt.Errorf("timeout %q must be positive", m.Timeout)
		case d > MaxTimeout:
			return nil, fmt.Errorf("timeout %q is longer than the maximum of 24h", m.Timeout)
		}
		p.timeout = d
	}
	for _, name := range m.Env {
		if !envNameRe.MatchString(name) {
			return nil, fmt.Errorf("env: %q is not an environment variable name", name)
		}
		if workerSecret(name) {
			p.denied = append(p.denied, name)
		} else {
			p.env = append(p.env, name)
		}
	}
	cmd, err := resolveCommand(p.dir, m.Command)
	if err != nil {
		return nil, err
	}
	p.command = cmd
	if len(m.ParamsSchema) > 0 {
		sch, err := compileParamsSchema(m.Name, m.ParamsSchema)
		if err != nil {
			return nil, fmt.Errorf("params_schema does not compile: %s", oneLine(err.Error()))
		}
		if m.Example != nil {
			if err := sch.Validate(jsonValue(m.Example)); err != nil {
				return nil, fmt.Errorf("example does not satisfy params_schema: %s", schemas.Violations(err, nil))
			}
		}
	}
	return p, nil
}

// resolveCommand makes command absolute (relative to dir) and checks that it is an executable
// file.
func resolveCommand(dir, command string) (string, error) {
	if command == "" {
		return "", errors.New("command is missing")
	}
	path := command
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("command %s does not exist", path)
	case err != nil:
		return "", fmt.Errorf("command %s: %v", path, err)
	case fi.IsDir():
		return "", fmt.Errorf("command %s is a directory", path)
	case fi.Mode()&0o111 == 0:
		return "", fmt.Errorf("command %s is not executable (chmod +x it)", path)
	}
	return path, nil
}

// compileParamsSchema compiles a manifest's parameter schema without loading anything it refers
// to: a schema must be self-contained.
func compileParamsSchema(name string, raw json.RawMessage) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	if _, ok := doc.(map[string]any); !ok {
		return nil, errors.New("it must be a JSON Schema object")
	}
	return schemas.CompileDoc("plugin:///"+name+"/params.json", raw)
}

// jsonValue converts v to the representation the schema library validates (json.Number for
// numbers).
func jsonValue(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return v
	}
	return doc
}

// oneLine joins the lines of a multi-line error message (YAML errors quote the source).
func oneLine(s string) string {
	return clip.String(strings.Join(strings.Fields(s), " "), 500, "")
}

// definition turns a loaded plugin into a hook definition for the registry.
func (p *plugin) definition() hooks.Definition {
	m := &p.manifest
	return hooks.Definition{
		Name:          m.Name,
		Description:   m.Description,
		Source:        p.path,
		Version:       m.Version,
		Phases:        slices.Clone(m.Phases),
		Transactional: m.Transactional,
		External:      true,
		ParamsSchema:  slices.Clone(m.ParamsSchema),
		Example:       m.Example,
		New:           p.newHook,
	}
}

// newHook builds the hook for one declaration. It has no side effects: it only keeps the
// parameters, as the JSON the plugin will receive.
func (p *plugin) newHook(params map[string]any) (hooks.Hook, error) {
	raw := []byte("{}")
	if len(params) > 0 {
		var err error
		if raw, err = json.Marshal(params); err != nil {
			return nil, fmt.Errorf("parameters: %w", err)
		}
	}
	return &hook{plugin: p, params: raw}, nil
}

// maxManifest bounds a manifest file.
const maxManifest = 256 << 10

// maxFlowNesting bounds the raw nesting of '[' and '{' in a YAML manifest, counted without
// parsing (brackets in strings and comments count too).
const maxFlowNesting = 1000

// flowNesting returns the deepest raw nesting of '[' and '{' in data.
func flowNesting(data []byte) int {
	depth, deepest := 0, 0
	for _, c := range data {
		switch c {
		case '[', '{':
			depth++
			deepest = max(deepest, depth)
		case ']', '}':
			depth = max(depth-1, 0)
		}
	}
	return deepest
}

// hasAlias reports whether the YAML tree holds an alias.
func hasAlias(n ast.Node) bool {
	found := false
	ast.Walk(visitFunc(func(n ast.Node) bool {
		if _, ok := n.(*ast.AliasNode); ok {
			found = true
		}
		return !found
	}), n)
	return found
}

type visitFunc func(ast.Node) bool

func (f visitFunc) Visit(n ast.Node) ast.Visitor {
	if f(n) {
		return f
	}
	return nil
}
