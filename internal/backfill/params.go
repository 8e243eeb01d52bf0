package backfill

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/confiture-io/confiture-worker/internal/hooks"
)

// Name is the hook type a hooks file names: `hook: backfill`.
const Name = "backfill"

// Defaults of Params.
const (
	DefaultBatchSize     = 1000
	DefaultMinBatchSize  = 100
	DefaultMaxBatchSize  = 100_000
	DefaultTargetBatchMS = 200
	DefaultLockTimeoutMS = 1000
	DefaultBatchTimeout  = 30_000
	DefaultRetryPauseMS  = 1000
	DefaultMaxRetries    = 30
	DefaultSampleMS      = 1000
	// DefaultDryRunCompleteMS is the default of dry_run_complete_ms.
	DefaultDryRunCompleteMS = 30000
)

// RangePlaceholder is where an update template takes the key range of each batch.
const RangePlaceholder = "{{range}}"

// Params are a backfill declaration's parameters.
type Params struct {
	// Table is the table to fill: "name" (found on the search_path) or "schema.name". Names are
	// taken as written (case-sensitive) and quoted by the worker.
	Table string `json:"table"`
	// Set is the SET list: "email_lower = lower(email)". User SQL, by design.
	Set string `json:"set,omitempty"`
	// Update is a full UPDATE statement instead of Set, for joins: it must contain {{range}}
	// once, where the batch's key range goes (the key columns qualified by Alias).
	Update string `json:"update,omitempty"`
	// Alias qualifies the key columns in {{range}}; defaults to the table's name.
	Alias string `json:"alias,omitempty"`
	// Where selects the rows still to do ("email_lower IS NULL"); with Set only. User SQL.
	Where string `json:"where,omitempty"`
	// Key lists the key columns; defaults to the primary key. They must be the columns of a
	// unique index and NOT NULL.
	Key []string `json:"key,omitempty"`
	// BatchSize is the first batch's size; later batches adapt between MinBatchSize and
	// MaxBatchSize toward TargetBatchMS.
	BatchSize     int `json:"batch_size,omitempty"`
	MinBatchSize  int `json:"min_batch_size,omitempty"`
	MaxBatchSize  int `json:"max_batch_size,omitempty"`
	TargetBatchMS int `json:"target_batch_ms,omitempty"`
	// RowsPerSecond caps the rate; 0 is no cap.
	RowsPerSecond float64 `json:"rows_per_second,omitempty"`
	// PauseMS is a pause between batches.
	PauseMS int `json:"pause_ms,omitempty"`
	// LockTimeoutMS is each batch's lock_timeout: a batch that waits longer for a lock is
	// rolled back and retried smaller after RetryPauseMS.
	LockTimeoutMS int `json:"lock_timeout_ms,omitempty"`
	// BatchTimeoutMS is each batch's statement_timeout, treated like a lock timeout.
	BatchTimeoutMS int `json:"batch_timeout_ms,omitempty"`
	RetryPauseMS   int `json:"retry_pause_ms,omitempty"`
	// MaxRetries is how many batches in a row may time out before the hook fails (and its phase
	// is retried by River).
	MaxRetries int `json:"max_retries,omitempty"`
	// SampleMS bounds how long a dry-run samples batches before it extrapolates.
	SampleMS int `json:"sample_ms,omitempty"`
	// DryRunCompleteMS: after sampling, a dry-run runs the rest of the backfill too when the
	// sample's rate says it takes at most this long, so that later hooks (a validation that
	// every row is filled) see the rows a real run fills. 0 always stops after the sample.
	DryRunCompleteMS *int `json:"dry_run_complete_ms,omitempty"`
}

// paramsSchema is the JSON Schema of Params, checked at intake.
const paramsSchema = `{
	"type": "object", "additionalProperties": false, "required": ["table"],
	"oneOf": [{"required": ["set"], "not": {"required": ["update"]}},
	          {"required": ["update"], "not": {"anyOf": [{"required": ["set"]}, {"required": ["where"]}]}}],
	"properties": {
		"table": {"type": "string", "minLength": 1, "maxLength": 255, "description": "table to fill, \"name\" or \"schema.name\", case-sensitive"},
		"set": {"type": "string", "minLength": 1, "description": "the SET list, e.g. email_lower = lower(email)"},
		"update": {"type": "string", "minLength": 1, "description": "a full UPDATE with {{range}} where each batch's key range goes"},
		"alias": {"type": "string", "minLength": 1, "maxLength": 63, "description": "qualifier of the key columns in {{range}}; defaults to the table name"},
		"where": {"type": "string", "minLength": 1, "description": "selects the rows still to do, e.g. email_lower IS NULL"},
		"key": {"type": "array", "minItems": 1, "maxItems": 8, "items": {"type": "string", "minLength": 1, "maxLength": 63}, "description": "key columns; default the primary key"},
		"batch_size": {"type": "integer", "minimum": 1, "description": "first batch size (default 1000)"},
		"min_batch_size": {"type": "integer", "minimum": 1, "description": "default 100"},
		"max_batch_size": {"type": "integer", "minimum": 1, "description": "default 100000"},
		"target_batch_ms": {"type": "integer", "minimum": 1, "description": "batch duration to aim for (default 200)"},
		"rows_per_second": {"type": "number", "exclusiveMinimum": 0, "description": "rate cap; none by default"},
		"pause_ms": {"type": "integer", "minimum": 0, "description": "pause between batches"},
		"lock_timeout_ms": {"type": "integer", "minimum": 1, "description": "each batch's lock_timeout (default 1000)"},
		"batch_timeout_ms": {"type": "integer", "minimum": 1, "description": "each batch's statement_timeout (default 30000)"},
		"retry_pause_ms": {"type": "integer", "minimum": 0, "description": "pause before retrying a batch that timed out (default 1000)"},
		"max_retries": {"type": "integer", "minimum": 0, "description": "timed-out batches in a row before the hook fails (default 30)"},
		"sample_ms": {"type": "integer", "minimum": 1, "description": "how long a dry-run samples batches (default 1000)"},
		"dry_run_complete_ms": {"type": "integer", "minimum": 0, "description": "a dry-run runs the whole backfill when the sample says it takes at most this long (default 30000; 0: sample only)"}
	}}`

// Definition returns the backfill hook's definition.
func Definition() hooks.Definition {
	return hooks.Definition{
		Name:          Name,
		Description:   "fill a table in resumable, throttled key-range batches, each committed with its checkpoint",
		Source:        hooks.SourceBuiltin,
		Phases:        []string{"before_ddl", "after_ddl", "cleanup"},
		Transactional: false,
		ParamsSchema:  json.RawMessage(paramsSchema),
		Example: map[string]any{
			"table": "users", "set": "email_lower = lower(email)", "where": "email_lower IS NULL",
			"target_batch_ms": DefaultTargetBatchMS,
		},
		New: func(params map[string]any) (hooks.Hook, error) {
			var p Params
			if err := hooks.DecodeParams(params, &p); err != nil {
				return nil, err
			}
			return New(p)
		},
	}
}

// Register adds the backfill hook to r.
func Register(r *hooks.Registry) error { return r.Register(Definition()) }

// New validates p and returns the hook. It does not connect: the table is looked up when the
// hook runs (the migration may create it).
func New(p Params) (*Hook, error) {
	p = p.withDefaults()
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &Hook{p: p}, nil
}

func (p Params) withDefaults() Params {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if p.MinBatchSize <= 0 {
		// A small max or first size given lowers the default min rather than being overridden.
		p.MinBatchSize = DefaultMinBatchSize
		for _, n := range []int{p.MaxBatchSize, p.BatchSize} {
			if n > 0 {
				p.MinBatchSize = min(p.MinBatchSize, n)
			}
		}
	}
	def(&p.MinBatchSize, DefaultMinBatchSize)
	def(&p.MaxBatchSize, DefaultMaxBatchSize)
	def(&p.BatchSize, max(DefaultBatchSize, p.MinBatchSize))
	def(&p.TargetBatchMS, DefaultTargetBatchMS)
	def(&p.LockTimeoutMS, DefaultLockTimeoutMS)
	def(&p.BatchTimeoutMS, DefaultBatchTimeout)
	def(&p.SampleMS, DefaultSampleMS)
	if p.DryRunCompleteMS == nil {
		v := DefaultDryRunCompleteMS
		p.DryRunCompleteMS = &v
	}
	if p.RetryPauseMS == 0 {
		p.RetryPauseMS = DefaultRetryPauseMS
	}
	if p.MaxRetries == 0 {
		p.MaxRetries = DefaultMaxRetries
	}
	p.BatchSize = min(max(p.BatchSize, p.MinBatchSize), p.MaxBatchSize)
	return p
}

func (p Params) validate() error {
	var errs []error
	if strings.TrimSpace(p.Table) == "" {
		errs = append(errs, errors.New("table is required"))
	}
	if len(strings.Split(p.Table, ".")) > 2 {
		errs = append(errs, fmt.Errorf("table %q: write name or schema.name", p.Table))
	}
	switch {
	case p.Set == "" && p.Update == "":
		errs = append(errs, errors.New("set or update is required"))
	case p.Set != "" && p.Update != "":
		errs = append(errs, errors.New("set and update exclude each other"))
	case p.Update != "":
		if strings.Count(p.Update, RangePlaceholder) != 1 {
			errs = append(errs, fmt.Errorf("update must contain %s exactly once", RangePlaceholder))
		}
		if p.Where != "" {
			errs = append(errs, fmt.Errorf("where goes inside the update template, next to %s", RangePlaceholder))
		}
	}
	if p.Alias != "" && p.Update == "" {
		errs = append(errs, errors.New("alias is only for an update template"))
	}
	seen := map[string]bool{}
	for _, k := range p.Key {
		if strings.TrimSpace(k) == "" || seen[k] {
			errs = append(errs, fmt.Errorf("key %q: empty or repeated column", k))
		}
		seen[k] = true
	}
	if p.MinBatchSize > p.MaxBatchSize {
		errs = append(errs, fmt.Errorf("min_batch_size %d is above max_batch_size %d", p.MinBatchSize, p.MaxBatchSize))
	}
	if p.RowsPerSecond < 0 || p.PauseMS < 0 || p.RetryPauseMS < 0 || p.MaxRetries < 0 {
		errs = append(errs, errors.New("rows_per_second, pause_ms, retry_pause_ms and max_retries may not be negative"))
	}
	return errors.Join(errs...)
}

// tableRef returns the quoted table reference.
func (p Params) tableRef() string {
	return pgx.Identifier(strings.Split(p.Table, ".")).Sanitize()
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// tuning are the parameters that tune how a backfill runs, as opposed to what it does.
var tuning = []string{"batch_size", "min_batch_size", "max_batch_size", "target_batch_ms", "rows_per_second",
	"pause_ms", "lock_timeout_ms", "batch_timeout_ms", "retry_pause_ms", "max_retries", "sample_ms", "dry_run_complete_ms"}

// TuningSchema is the JSON Schema of a backfill's tuning parameters alone (batch sizes, target
// duration, rate, timeouts): what a declaration may set on a backfill defined in Go, whose
// table and statement are fixed in code.
func TuningSchema() json.RawMessage {
	var full struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal([]byte(paramsSchema), &full); err != nil {
		panic(err) // the schema is a constant
	}
	props := map[string]json.RawMessage{}
	for _, k := range tuning {
		props[k] = full.Properties[k]
	}
	out, err := json.Marshal(map[string]any{"type": "object", "additionalProperties": false, "properties": props})
	if err != nil {
		panic(err)
	}
	return out
}
