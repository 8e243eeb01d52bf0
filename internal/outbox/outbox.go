// Package outbox records events in the queue database in the same transaction as the state
// change they report, and relays them to the bus in order, with the event id as the message id
// so that the bus drops repeats. An event that was committed is never lost: it stays in the
// outbox until the bus has acknowledged it.
package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/confiture-io/confiture-worker/internal/clip"
	"github.com/confiture-io/confiture-worker/internal/contract"
)

// notifyChannel is the LISTEN/NOTIFY channel that wakes the relay after an insert.
const notifyChannel = "confiture_outbox"

// eventNamespace is the UUID namespace of event ids.
var eventNamespace = uuid.MustParse("b8a3f6d2-0c4e-4e59-8f0b-6a3d9c2e7f15")

// EventID derives an event's id from what identifies the fact it reports, so that the same fact
// recorded twice (a job that commits, crashes before River hears of it, and runs again) has the
// same id and is delivered once after de-duplication.
func EventID(parts ...string) string {
	return uuid.NewSHA1(eventNamespace, []byte(strings.Join(parts, "\x1f"))).String()
}

// RunRef identifies the run an event belongs to.
type RunRef struct {
	Run       string
	RequestID string
	Target    string
	// Epoch counts the times the run was resumed or retried: the facts of a new epoch are new
	// even where they repeat an earlier one's (a second run.started), so their ids differ.
	Epoch int
}

// New returns an event of kind for run with the time set to now and an id derived from the run,
// its epoch, the kind and idParts.
func New(ref RunRef, kind string, idParts ...string) contract.Event {
	parts := append([]string{ref.Run, kind}, idParts...)
	if ref.Epoch > 0 {
		parts = append(parts, "epoch", strconv.Itoa(ref.Epoch))
	}
	return contract.Event{
		Schema:    contract.EventSchemaV1,
		ID:        EventID(parts...),
		Time:      time.Now().UTC(),
		Kind:      kind,
		Run:       ref.Run,
		RequestID: ref.RequestID,
		Target:    ref.Target,
	}
}

// MaxText bounds an event's message and error message, so that an event built from a huge
// request (say, a rejection listing its problems) stays far below any server's max_payload.
const MaxText = 8 << 10

// Truncate returns s cut to at most n bytes (on a rune boundary), saying so.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return clip.String(s, n, "... (truncated)")
}

// Insert records events in tx, in one round trip. An event whose id is already recorded is
// skipped. schema is the quoted schema of the outbox table.
func Insert(ctx context.Context, tx pgx.Tx, schema string, events ...contract.Event) error {
	if len(events) == 0 {
		return nil
	}
	sql, args, err := insertStatement(schema, events, true)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("outbox: insert: %w", err)
	}
	return nil
}

// Queue adds the insert of events to batch, for callers that send several statements in one
// round trip. With notify false the relay is not woken: the events go out with the next
// notified batch or poll, which spares a relay round for events nobody waits on.
func Queue(batch *pgx.Batch, schema string, notify bool, events ...contract.Event) error {
	if len(events) == 0 {
		return nil
	}
	sql, args, err := insertStatement(schema, events, notify)
	if err != nil {
		return err
	}
	batch.Queue(sql, args...)
	return nil
}

// Encode returns the outbox rows of events, in order: their ids, subjects and payloads (an
// event's messages cut to MaxText), for a statement that inserts them into the outbox.
func Encode(events []contract.Event) (ids, subjects []string, payloads [][]byte, err error) {
	ids = make([]string, len(events))
	subjects = make([]string, len(events))
	payloads = make([][]byte, len(events))
	for i, ev := range events {
		ev.Message = Truncate(ev.Message, MaxText)
		if ev.Error != nil {
			e := *ev.Error
			e.Message = Truncate(e.Message, MaxText)
			ev.Error = &e
		}
		b, err := json.Marshal(ev)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("outbox: encode %s event: %w", ev.Kind, err)
		}
		ids[i], subjects[i], payloads[i] = ev.ID, contract.EventSubject(ev.Target, ev.Run, ev.Kind), b
	}
	return ids, subjects, payloads, nil
}

// insertStatement inserts events in order and notifies the relay, in one statement.
func insertStatement(schema string, events []contract.Event, notify bool) (string, []any, error) {
	ids, subjects, payloads, err := Encode(events)
	if err != nil {
		return "", nil, err
	}
	channel := ""
	if notify {
		channel = notifyChannel
	}
	return `WITH ins AS (INSERT INTO ` + schema + `.outbox (id, subject, payload)
		SELECT id, subject, payload
		FROM unnest($1::uuid[], $2::text[], $3::bytea[]) WITH ORDINALITY AS e(id, subject, payload, n)
		ORDER BY n ON CONFLICT (id) DO NOTHING RETURNING 1)
		SELECT CASE WHEN $4 <> '' THEN pg_notify($4, '') END`, []any{ids, subjects, payloads, channel}, nil
}

// RunEvents returns the events of run (of target) that the outbox still holds, in the order
// they were recorded. schema is the quoted schema of the outbox table.
func RunEvents(ctx context.Context, q interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, schema, target, run string) ([]contract.Event, error) {
	prefix := contract.EventSubjectPrefix + target + "." + run + "."
	rows, err := q.Query(ctx, `SELECT payload FROM `+schema+`.outbox WHERE starts_with(subject, $1) ORDER BY seq`, prefix)
	if err != nil {
		return nil, fmt.Errorf("outbox: events of run %s: %w", run, err)
	}
	payloads, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("outbox: events of run %s: %w", run, err)
	}
	evs := make([]contract.Event, 0, len(payloads))
	for _, p := range payloads {
		var ev contract.Event
		if err := json.Unmarshal(p, &ev); err != nil {
			return nil, fmt.Errorf("outbox: an event of run %s: %w", run, err)
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

// Latest returns the latest event of kind for target that the outbox still holds, or nil when
// it holds none. schema is the quoted schema of the outbox table.
func Latest(ctx context.Context, q interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, schema, target, kind string) (*contract.Event, error) {
	// Subjects are confiture.events.<target>.<run>.<kind>; a target has no dot.
	suffix := "." + kind
	rows, err := q.Query(ctx, `SELECT payload FROM `+schema+`.outbox
		WHERE starts_with(subject, $1) AND right(subject, $3) = $2 ORDER BY seq DESC LIMIT 1`,
		contract.EventSubjectPrefix+target+".", suffix, len(suffix))
	if err != nil {
		return nil, fmt.Errorf("outbox: latest %s of %s: %w", kind, target, err)
	}
	payloads, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("outbox: latest %s of %s: %w", kind, target, err)
	}
	if len(payloads) == 0 {
		return nil, nil
	}
	var ev contract.Event
	if err := json.Unmarshal(payloads[0], &ev); err != nil {
		return nil, fmt.Errorf("outbox: latest %s of %s: %w", kind, target, err)
	}
	return &ev, nil
}
