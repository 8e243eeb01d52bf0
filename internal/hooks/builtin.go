package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/confiture-io/confiture-worker/internal/sqlscript"
)

// RegisterBuiltins adds the hooks compiled into the worker: sql and assert.
func RegisterBuiltins(r *Registry) error {
	return errors.Join(
		r.Register(Definition{
			Name:          "sql",
			Description:   "run SQL statements in the phase's transaction",
			Source:        SourceBuiltin,
			Transactional: true,
			ParamsSchema: json.RawMessage(`{
				"type": "object", "additionalProperties": false, "required": ["sql"],
				"properties": {"sql": {"type": "string", "minLength": 1,
					"description": "one or more statements, run in order in the phase's transaction"}}}`),
			Example: map[string]any{"sql": "UPDATE users SET email = lower(email) WHERE email <> lower(email);"},
			New:     newSQLHook,
		}),
		r.Register(Definition{
			Name:          "assert",
			Description:   "fail unless a query returns true",
			Source:        SourceBuiltin,
			Transactional: true,
			ParamsSchema: json.RawMessage(`{
				"type": "object", "additionalProperties": false, "required": ["sql"],
				"properties": {
					"sql": {"type": "string", "minLength": 1, "description": "a query returning one row with one boolean column"},
					"message": {"type": "string", "description": "why the assertion matters, shown when it fails"}}}`),
			Example: map[string]any{"sql": "SELECT count(*) = 0 FROM users WHERE email IS NULL", "message": "every user has an email"},
			New:     newAssertHook,
		}),
	)
}

// SQLParams are the parameters of the sql hook.
type SQLParams struct {
	// SQL holds one or more statements, run in order.
	SQL string `json:"sql"`
}

type sqlHook struct{ stmts []sqlscript.Statement }

func newSQLHook(params map[string]any) (Hook, error) {
	var p SQLParams
	if err := DecodeParams(params, &p); err != nil {
		return nil, err
	}
	stmts, err := transactionalStatements(p.SQL)
	if err != nil {
		return nil, err
	}
	return &sqlHook{stmts: stmts}, nil
}

func (h *sqlHook) Run(ctx context.Context, hc *Context) (Result, error) {
	var rows int64
	for _, s := range h.stmts {
		tag, err := hc.Tx.Exec(ctx, s.SQL)
		if err != nil {
			return Result{RowsAffected: rows}, fmt.Errorf("statement at line %d (%s): %w", s.Line, s.Summary(), err)
		}
		rows += tag.RowsAffected()
	}
	return Result{RowsAffected: rows}, nil
}

// AssertParams are the parameters of the assert hook.
type AssertParams struct {
	// SQL is a query returning one row with one boolean column.
	SQL string `json:"sql"`
	// Message explains the failure when the query does not return true.
	Message string `json:"message,omitempty"`
}

type assertHook struct {
	query   sqlscript.Statement
	message string
}

func newAssertHook(params map[string]any) (Hook, error) {
	var p AssertParams
	if err := DecodeParams(params, &p); err != nil {
		return nil, err
	}
	stmts, err := transactionalStatements(p.SQL)
	if err != nil {
		return nil, err
	}
	if len(stmts) != 1 {
		return nil, fmt.Errorf(`parameter "sql" must hold exactly one query, found %d statements`, len(stmts))
	}
	return &assertHook{query: stmts[0], message: p.Message}, nil
}

func (h *assertHook) Run(ctx context.Context, hc *Context) (Result, error) {
	var ok *bool
	err := hc.Tx.QueryRow(ctx, h.query.SQL).Scan(&ok)
	if errors.Is(err, pgx.ErrNoRows) {
		return Result{Failed: true, Message: h.failure("the query returned no row")}, nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("assert query (%s): %w", h.query.Summary(), err)
	}
	if ok == nil {
		return Result{Failed: true, Message: h.failure("the query returned NULL")}, nil
	}
	if !*ok {
		return Result{Failed: true, Message: h.failure("the query returned false")}, nil
	}
	return Result{RowsAffected: 1, Message: "assertion held"}, nil
}

func (h *assertHook) failure(why string) string {
	if h.message == "" {
		return fmt.Sprintf("assertion failed: %s: %s", why, h.query.Summary())
	}
	return fmt.Sprintf("assertion failed: %s (%s)", h.message, why)
}

// transactionalStatements splits a hook's SQL, refusing what cannot run in the phase's
// transaction.
func transactionalStatements(script string) ([]sqlscript.Statement, error) {
	if strings.TrimSpace(script) == "" {
		return nil, errors.New(`parameter "sql" is required`)
	}
	stmts, err := sqlscript.Split(script)
	if err != nil {
		return nil, fmt.Errorf(`parameter "sql": %w`, err)
	}
	if len(stmts) == 0 {
		return nil, errors.New(`parameter "sql" holds no statement`)
	}
	for _, s := range stmts {
		switch s.Class {
		case sqlscript.TxControl:
			return nil, fmt.Errorf("line %d: %s: a hook runs inside the phase's transaction and may not control it", s.Line, s.Summary())
		case sqlscript.NonTransactional:
			return nil, fmt.Errorf("line %d: %s: %s; put it in the migration's SQL, which runs such statements outside a transaction", s.Line, s.Summary(), s.Reason)
		}
	}
	return stmts, nil
}
