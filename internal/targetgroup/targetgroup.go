// Package targetgroup resolves target groups: named sets of targets from the worker's
// configuration that a request may name instead of a target (SPEC, "target group"), so that one
// request migrates a fleet of tenant databases or schemas.
//
// A group is one of:
//
//   - a static list of configured targets (targets: [a, b]);
//   - the schemas of one database whose names match a glob (schemas: {target: main, match:
//     "tenant_*"}): schema per tenant. Each member is a target on that database with the schema
//     as its search_path and its own tracking schema, confiture_<schema>;
//   - the rows of a catalog query (query: {target: catalog, sql: ..., name: ..., dsn: ...}): each
//     row becomes a member whose name, DSN (and optionally schema) are text/template templates
//     over the row's columns. Secrets come from the worker's environment ({{env "TENANT_PASSWORD"}})
//     or files ({{file "/run/secrets/tenant_password"}}), never from a request.
//
// Discovered groups are resolved each time they are asked for (Resolve), on the database of a
// configured target, so a tenant added since the last request is found. Bad configuration is
// refused at load (Check) and bad discovery results when resolving, each with a reason that
// names the group and, for a member, the member; connection strings are never echoed.
package targetgroup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"
	"text/template"

	"github.com/jackc/pgx/v5"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/target"
)

// Config is one group of the worker's configuration (target_groups). Exactly one of Targets,
// Schemas and Query is set.
type Config struct {
	// Name is how requests name the group; it shares the targets' alphabet and must not be the
	// name of a target.
	Name string `yaml:"name" json:"name"`
	// Targets lists configured targets by name.
	Targets []string `yaml:"targets" json:"targets,omitempty"`
	// Schemas discovers the schemas of one database.
	Schemas *Schemas `yaml:"schemas" json:"schemas,omitempty"`
	// Query discovers the rows of a catalog query.
	Query *Query `yaml:"query" json:"query,omitempty"`
	// Rollout is the group's rollout policy where a request says nothing: the canary, the
	// waves, the runs at once, the pause and the failure threshold (see contract.RolloutPolicy;
	// the worker's defaults fill in what it leaves unset).
	Rollout *contract.RolloutPolicy `yaml:"rollout" json:"rollout,omitempty"`
}

// Schemas discovers the schemas of the database of a configured target whose names match a glob.
type Schemas struct {
	// Target is the configured target whose database holds the schemas; its DSN is used.
	Target string `yaml:"target" json:"target"`
	// Match is a glob over schema names: '*' any run of characters, '?' one character, [...] a
	// class (path.Match). System schemas and confiture's own never match.
	Match string `yaml:"match" json:"match"`
}

// Query discovers members from the rows of a catalog query.
type Query struct {
	// Target is the configured target the query runs on (read-only, in a transaction that is
	// rolled back).
	Target string `yaml:"target" json:"target"`
	// SQL is the query; its columns are the templates' fields ({{.id}}, {{.host}}).
	SQL string `yaml:"sql" json:"sql"`
	// Name, DSN and Schema are text/template templates over a row. Name and DSN are required.
	// Functions: env "VAR" (the worker's environment; an unset variable is an error) and file
	// "PATH" (a file's contents, trailing newline removed), besides text/template's own
	// (urlquery to escape a password in a URL).
	Name   string `yaml:"name" json:"name"`
	DSN    string `yaml:"dsn" json:"-"`
	Schema string `yaml:"schema" json:"schema,omitempty"`
}

// Kind names how a group finds its members: "targets", "schemas" or "query".
func (c *Config) Kind() string {
	switch {
	case c.Schemas != nil:
		return "schemas"
	case c.Query != nil:
		return "query"
	}
	return "targets"
}

// ErrUnknownGroup is returned for a group name that is not configured.
var ErrUnknownGroup = errors.New("unknown target group")

// ErrUnreachable wraps a failure to connect to the database a group discovers its members in:
// passing trouble, unlike a failing query or a discovery that finds nothing.
var ErrUnreachable = errors.New("discovery database unreachable")

// Check validates groups against the configured targets: names, exactly one kind per group,
// the targets they refer to, globs and templates. It changes nothing and connects to nothing.
func Check(groups []Config, targets []target.Config) error {
	known := map[string]bool{}
	for _, t := range targets {
		known[t.Name] = true
	}
	seen := map[string]bool{}
	for i, g := range groups {
		where := fmt.Sprintf("target_groups[%d]", i)
		if g.Name != "" {
			where = fmt.Sprintf("target group %q", g.Name)
		}
		switch {
		case !contract.ValidTargetName(g.Name):
			return fmt.Errorf("%s: name must be 1 to 64 letters, digits, '_' or '-'", where)
		case known[g.Name]:
			return fmt.Errorf("%s: a target has the same name; requests could not tell them apart", where)
		case seen[g.Name]:
			return fmt.Errorf("%s: defined twice", where)
		}
		seen[g.Name] = true
		kinds := 0
		if len(g.Targets) > 0 {
			kinds++
		}
		if g.Schemas != nil {
			kinds++
		}
		if g.Query != nil {
			kinds++
		}
		if kinds != 1 {
			return fmt.Errorf("%s: set exactly one of targets (a list), schemas (discovered in a database) and query (discovered by a catalog query)", where)
		}
		if g.Rollout != nil {
			if err := g.Rollout.Check(); err != nil {
				return fmt.Errorf("%s: rollout: %v", where, err)
			}
		}
		ref := func(field, name string) error {
			if !known[name] {
				return fmt.Errorf("%s: %s names %q, which is not a configured target", where, field, name)
			}
			return nil
		}
		switch {
		case len(g.Targets) > 0:
			dup := map[string]bool{}
			for _, n := range g.Targets {
				if err := ref("targets", n); err != nil {
					return err
				}
				if dup[n] {
					return fmt.Errorf("%s: targets lists %q twice", where, n)
				}
				dup[n] = true
			}
		case g.Schemas != nil:
			if err := ref("schemas.target", g.Schemas.Target); err != nil {
				return err
			}
			if _, err := path.Match(g.Schemas.Match, ""); err != nil || g.Schemas.Match == "" {
				return fmt.Errorf("%s: schemas.match %q is not a glob (like tenant_*)", where, g.Schemas.Match)
			}
		default:
			q := g.Query
			if err := ref("query.target", q.Target); err != nil {
				return err
			}
			if strings.TrimSpace(q.SQL) == "" {
				return fmt.Errorf("%s: query.sql is empty", where)
			}
			if q.Name == "" || q.DSN == "" {
				return fmt.Errorf("%s: query.name and query.dsn are required: templates over each row, like \"tenant-{{.id}}\"", where)
			}
			for field, text := range map[string]string{"name": q.Name, "dsn": q.DSN, "schema": q.Schema} {
				if _, err := parse(field, text); err != nil {
					return fmt.Errorf("%s: query.%s: %v", where, field, err)
				}
			}
		}
	}
	return nil
}

// Member is a target of a resolved group.
type Member = target.Config

// Resolver resolves the groups of one configuration.
type Resolver struct {
	groups  map[string]Config
	targets map[string]target.Config
	// Getenv and ReadFile give the templates' env and file functions; os.Getenv and
	// os.ReadFile when nil.
	Getenv   func(string) string
	ReadFile func(string) ([]byte, error)
}

// NewResolver returns a resolver for groups over targets; call Check first.
func NewResolver(groups []Config, targets []target.Config) *Resolver {
	r := &Resolver{groups: map[string]Config{}, targets: map[string]target.Config{}}
	for _, g := range groups {
		r.groups[g.Name] = g
	}
	for _, t := range targets {
		r.targets[t.Name] = t
	}
	return r
}

// Names returns the configured groups' names, sorted.
func (r *Resolver) Names() []string {
	out := make([]string, 0, len(r.groups))
	for n := range r.groups {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Group returns a group's configuration.
func (r *Resolver) Group(name string) (Config, bool) {
	g, ok := r.groups[name]
	return g, ok
}

// Resolve returns the members of group name, in a stable order (by name), discovering them
// now for a discovered group. A group that does not exist is ErrUnknownGroup; one that finds
// no member, a failing discovery, and a member whose name or DSN is invalid are errors naming
// the group (and the member).
func (r *Resolver) Resolve(ctx context.Context, name string) ([]Member, error) {
	g, ok := r.groups[name]
	if !ok {
		return nil, fmt.Errorf("%w %q (configured: %s)", ErrUnknownGroup, name, strings.Join(r.Names(), ", "))
	}
	var members []Member
	var err error
	switch g.Kind() {
	case "targets":
		for _, n := range g.Targets {
			members = append(members, r.targets[n].WithDefaults())
		}
	case "schemas":
		members, err = r.schemas(ctx, g)
	default:
		members, err = r.query(ctx, g)
	}
	if err != nil {
		return nil, err
	}
	if len(members) == 0 {
		return nil, fmt.Errorf("target group %q: discovery found no member (%s)", g.Name, describe(g))
	}
	sort.Slice(members, func(i, j int) bool { return members[i].Name < members[j].Name })
	seen := map[string]bool{}
	for _, m := range members {
		if seen[m.Name] {
			return nil, fmt.Errorf("target group %q: two members are named %q; make the name template unique per row", g.Name, m.Name)
		}
		seen[m.Name] = true
	}
	return members, nil
}

// describe says in words where a group looks for its members.
func describe(g Config) string {
	switch g.Kind() {
	case "schemas":
		return fmt.Sprintf("schemas matching %q in the database of target %q", g.Schemas.Match, g.Schemas.Target)
	case "query":
		return fmt.Sprintf("rows of the catalog query on target %q", g.Query.Target)
	}
	return "a list of targets"
}

// Sources returns the configured targets group name draws on: its listed targets, or the
// target it discovers its members through.
func (r *Resolver) Sources(name string) []string {
	g := r.groups[name]
	switch g.Kind() {
	case "targets":
		return g.Targets
	case "schemas":
		return []string{g.Schemas.Target}
	case "query":
		return []string{g.Query.Target}
	}
	return nil
}

// Describe says in words where group name looks for its members.
func (r *Resolver) Describe(name string) string { return describe(r.groups[name]) }

// withConn runs fn (what, in words) in a read-only transaction on the database of the
// configured target t, rolled back.
func (r *Resolver) withConn(ctx context.Context, group, t, what string, fn func(pgx.Tx) error) error {
	cfg := r.targets[t]
	conn, err := pgx.Connect(ctx, cfg.DSN)
	if err != nil {
		return fmt.Errorf("target group %q: connect to target %q: %s (%w)", group, t, target.ConnectMessage(err, cfg.DSN), ErrUnreachable)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("target group %q: target %q: %s", group, t, target.ConnectMessage(err, cfg.DSN))
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only, always rolled back
	if err := fn(tx); err != nil {
		return fmt.Errorf("target group %q: %s on target %q failed: %w", group, what, t, err)
	}
	return nil
}

func (r *Resolver) schemas(ctx context.Context, g Config) ([]Member, error) {
	var names []string
	err := r.withConn(ctx, g.Name, g.Schemas.Target, "listing the schemas", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT nspname FROM pg_namespace
			WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\_%'
			  AND nspname NOT LIKE 'confiture%' ORDER BY 1`)
		if err != nil {
			return err
		}
		names, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, err
	}
	base := r.targets[g.Schemas.Target]
	var out []Member
	for _, s := range names {
		if ok, _ := path.Match(g.Schemas.Match, s); !ok {
			continue
		}
		name := g.Name + "-" + s
		if !contract.ValidTargetName(name) {
			return nil, fmt.Errorf("target group %q: schema %q gives the member name %q, which is not 1 to 64 letters, digits, '_' or '-'; narrow schemas.match or rename the schema", g.Name, s, name)
		}
		out = append(out, Member{Name: name, DSN: base.DSN, Schema: s, MaxConns: base.MaxConns}.WithDefaults())
	}
	return out, nil
}

func (r *Resolver) query(ctx context.Context, g Config) ([]Member, error) {
	q := g.Query
	var rows []map[string]any
	err := r.withConn(ctx, g.Name, q.Target, "the catalog query", func(tx pgx.Tx) error {
		rs, err := tx.Query(ctx, q.SQL)
		if err != nil {
			return err
		}
		rows, err = pgx.CollectRows(rs, pgx.RowToMap)
		return err
	})
	if err != nil {
		return nil, err
	}
	funcs := template.FuncMap{"env": r.env, "file": r.file}
	tmpl := func(field, text string) (*template.Template, error) {
		t, err := parse(field, text)
		if err != nil {
			return nil, err
		}
		return t.Funcs(funcs).Option("missingkey=error"), nil
	}
	nameT, err := tmpl("name", q.Name)
	if err != nil {
		return nil, err
	}
	dsnT, err := tmpl("dsn", q.DSN)
	if err != nil {
		return nil, err
	}
	schemaT, err := tmpl("schema", q.Schema)
	if err != nil {
		return nil, err
	}
	var out []Member
	for i, row := range rows {
		name, err := execute(nameT, row)
		if err != nil {
			return nil, fmt.Errorf("target group %q: row %d: query.name: %v", g.Name, i+1, err)
		}
		if !contract.ValidTargetName(name) {
			return nil, fmt.Errorf("target group %q: row %d: query.name gives %q, which is not 1 to 64 letters, digits, '_' or '-'", g.Name, i+1, name)
		}
		dsn, err := execute(dsnT, row)
		if err != nil {
			// The error may quote a secret the template read: say only which template.
			return nil, fmt.Errorf("target group %q: member %q: query.dsn could not be filled in: %s", g.Name, name, templateReason(err))
		}
		if _, err := pgx.ParseConfig(dsn); err != nil {
			return nil, fmt.Errorf("target group %q: member %q: query.dsn gives an invalid connection string (not shown: it may hold a secret)", g.Name, name)
		}
		schema, err := execute(schemaT, row)
		if err != nil {
			return nil, fmt.Errorf("target group %q: member %q: query.schema: %v", g.Name, name, err)
		}
		out = append(out, Member{Name: name, DSN: dsn, Schema: schema}.WithDefaults())
	}
	return out, nil
}

// parse parses a template of the query; env and file are declared so that Check finds
// misspelt functions.
func parse(field, text string) (*template.Template, error) {
	return template.New(field).Funcs(template.FuncMap{
		"env":  func(string) (string, error) { return "", nil },
		"file": func(string) (string, error) { return "", nil },
	}).Parse(text)
}

func execute(t *template.Template, row map[string]any) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, row); err != nil {
		return "", err
	}
	return strings.TrimSpace(b.String()), nil
}

// templateReason is the part of a template error that cannot hold a value: which function or
// field failed.
func templateReason(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "map has no entry for key"):
		if i := strings.Index(msg, "map has no entry for key"); i >= 0 {
			return "the query has no column " + strings.TrimPrefix(msg[i:], "map has no entry for key ")
		}
	case strings.Contains(msg, `error calling env`), strings.Contains(msg, `error calling file`):
		if i := strings.Index(msg, "error calling "); i >= 0 {
			return msg[i:]
		}
	}
	return "the template failed"
}

func (r *Resolver) env(name string) (string, error) {
	get := r.Getenv
	if get == nil {
		get = os.Getenv
	}
	v := get(name)
	if v == "" {
		return "", fmt.Errorf("environment variable %s is not set", name)
	}
	return v, nil
}

func (r *Resolver) file(p string) (string, error) {
	read := r.ReadFile
	if read == nil {
		read = os.ReadFile
	}
	b, err := read(p)
	if err != nil {
		return "", fmt.Errorf("read %s: %v", p, errors.Unwrap(err))
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
