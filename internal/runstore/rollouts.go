package runstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// Rollout is one row of the rollout table: a request naming a target group.
type Rollout struct {
	ID            string
	Group         string
	RequestID     string
	DryRun        bool
	Direction     string
	Request       json.RawMessage
	RequestSHA256 string
	Policy        contract.RolloutPolicy
	State         string
	// Wave is the current wave (from 0); Waves counts them; Canary says wave 0 is the canary.
	Wave   int
	Waves  int
	Canary bool
	// NextWaveAt is when the next wave starts, while the rollout pauses between two.
	NextWaveAt *time.Time
	// Seq counts the rollout's events, so that each has an id of its own.
	Seq       int
	CreatedAt time.Time
	// Members and WaveOf are what InsertRollout records: the members in order, and the wave
	// of each.
	Members []string
	WaveOf  []int
}

// Member is one member of a rollout.
type Member struct {
	Position int
	Target   string
	Wave     int
	State    string
	Error    *contract.EventError
}

// ErrRolloutNotFound is returned when a rollout id is not in the rollout table.
var ErrRolloutNotFound = errors.New("rollout not found")

const rolloutColumns = `id::text, group_name, request_id, dry_run, direction, request, request_sha256, policy,
	state, wave, waves, canary, next_wave_at, seq, created_at`

func scanRollout(row pgx.Row) (*Rollout, error) {
	var r Rollout
	var policy []byte
	err := row.Scan(&r.ID, &r.Group, &r.RequestID, &r.DryRun, &r.Direction, &r.Request, &r.RequestSHA256, &policy,
		&r.State, &r.Wave, &r.Waves, &r.Canary, &r.NextWaveAt, &r.Seq, &r.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrRolloutNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read rollout: %w", err)
	}
	if err := json.Unmarshal(policy, &r.Policy); err != nil {
		return nil, fmt.Errorf("read rollout policy: %w", err)
	}
	return &r, nil
}

// InsertRollout records a new rollout with its members (r.Members in order, r.Members[i] in
// wave r.WaveOf[i]). If the group already has a rollout for the request id, it inserts nothing
// and returns that rollout with created false.
func (s *Store) InsertRollout(ctx context.Context, tx pgx.Tx, r *Rollout) (created bool, existing *Rollout, err error) {
	members, waveOf := r.Members, r.WaveOf
	policy, err := json.Marshal(r.Policy)
	if err != nil {
		return false, nil, err
	}
	tag, err := tx.Exec(ctx, `INSERT INTO `+s.schema+`.rollouts
		(id, group_name, request_id, dry_run, direction, request, request_sha256, policy, state, waves, canary)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (group_name, request_id) DO NOTHING`,
		r.ID, r.Group, r.RequestID, r.DryRun, r.Direction, r.Request, r.RequestSHA256, policy, r.State, r.Waves, r.Canary)
	if err != nil {
		return false, nil, fmt.Errorf("insert rollout: %w", err)
	}
	if tag.RowsAffected() == 0 {
		existing, err = s.FindRollout(ctx, tx, r.Group, r.RequestID)
		return false, existing, err
	}
	positions := make([]int, len(members))
	for i := range positions {
		positions[i] = i
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+s.schema+`.rollout_members (rollout, position, target, wave)
		SELECT $1, p, t, w FROM unnest($2::int[], $3::text[], $4::int[]) AS m(p, t, w)`,
		r.ID, positions, members, waveOf); err != nil {
		return false, nil, fmt.Errorf("insert rollout members: %w", err)
	}
	return true, nil, nil
}

// FindRollout reads the rollout of group for requestID.
func (s *Store) FindRollout(ctx context.Context, q Querier, group, requestID string) (*Rollout, error) {
	return scanRollout(q.QueryRow(ctx, `SELECT `+rolloutColumns+` FROM `+s.schema+`.rollouts
		WHERE group_name = $1 AND request_id = $2`, group, requestID))
}

// RolloutExists reports whether group has a rollout for requestID.
func (s *Store) RolloutExists(ctx context.Context, group, requestID string) (bool, error) {
	var ok bool
	err := s.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+s.schema+`.rollouts WHERE group_name = $1 AND request_id = $2)`, group, requestID).Scan(&ok)
	return ok, err
}

// GetRollout reads a rollout; ForUpdate locks it for the rest of the transaction.
func (s *Store) GetRollout(ctx context.Context, q Querier, id string, forUpdate bool) (*Rollout, error) {
	sql := `SELECT ` + rolloutColumns + ` FROM ` + s.schema + `.rollouts WHERE id = $1`
	if forUpdate {
		sql += ` FOR UPDATE`
	}
	return scanRollout(q.QueryRow(ctx, sql, id))
}

// RolloutMembers returns a rollout's members in order.
func (s *Store) RolloutMembers(ctx context.Context, q Querier, id string) ([]Member, error) {
	rows, err := q.Query(ctx, `SELECT position, target, wave, state, error FROM `+s.schema+`.rollout_members
		WHERE rollout = $1 ORDER BY position`, id)
	if err != nil {
		return nil, fmt.Errorf("read rollout members: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Member, error) {
		var m Member
		var e []byte
		if err := row.Scan(&m.Position, &m.Target, &m.Wave, &m.State, &e); err != nil {
			return m, err
		}
		if len(e) > 0 {
			m.Error = &contract.EventError{}
			if err := json.Unmarshal(e, m.Error); err != nil {
				return m, err
			}
		}
		return m, nil
	})
}

// SetMemberStates sets the state (and error, nil clearing it) of members of a rollout.
func (s *Store) SetMemberStates(ctx context.Context, tx pgx.Tx, rollout string, targets []string, state string, e *contract.EventError) error {
	var errJSON []byte
	if e != nil {
		var err error
		if errJSON, err = json.Marshal(e); err != nil {
			return err
		}
	}
	_, err := tx.Exec(ctx, `UPDATE `+s.schema+`.rollout_members SET state = $3, error = $4, updated_at = now()
		WHERE rollout = $1 AND target = ANY($2)`, rollout, targets, state, errJSON)
	if err != nil {
		return fmt.Errorf("update rollout members: %w", err)
	}
	return nil
}

// UpdateRollout writes a rollout's state, wave, pause and event count; finished stamps
// finished_at.
func (s *Store) UpdateRollout(ctx context.Context, tx pgx.Tx, r *Rollout) error {
	_, err := tx.Exec(ctx, `UPDATE `+s.schema+`.rollouts SET state = $2, wave = $3, next_wave_at = $4, seq = $5,
		updated_at = now(), finished_at = CASE WHEN $2 = 'completed' THEN now() END WHERE id = $1`,
		r.ID, r.State, r.Wave, r.NextWaveAt, r.Seq)
	if err != nil {
		return fmt.Errorf("update rollout: %w", err)
	}
	return nil
}

// LinkRun makes run (recorded before, by a request for the member's target with the same id)
// a run of rollout.
func (s *Store) LinkRun(ctx context.Context, tx pgx.Tx, run, rollout string) error {
	_, err := tx.Exec(ctx, `UPDATE `+s.schema+`.runs SET rollout = $2 WHERE id = $1 AND rollout IS NULL`, run, rollout)
	return err
}

// GroupOfMember returns the group of the latest rollout target is a member of, or "" when it
// is a member of none.
func (s *Store) GroupOfMember(ctx context.Context, target string) (string, error) {
	var group string
	err := s.Pool.QueryRow(ctx, `SELECT r.group_name FROM `+s.schema+`.rollout_members m
		JOIN `+s.schema+`.rollouts r ON r.id = m.rollout WHERE m.target = $1 ORDER BY r.created_at DESC LIMIT 1`, target).Scan(&group)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return group, err
}

// ListRollouts returns the latest rollouts of group (all groups when ""), newest first.
func (s *Store) ListRollouts(ctx context.Context, group string, limit int) ([]*Rollout, error) {
	rows, err := s.Pool.Query(ctx, `SELECT `+rolloutColumns+` FROM `+s.schema+`.rollouts
		WHERE $1 = '' OR group_name = $1 ORDER BY created_at DESC LIMIT $2`, group, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Rollout
	for rows.Next() {
		r, err := scanRollout(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// DueRollouts returns the running rollouts that may have something to start: none pausing
// between waves, or a pause that is over. The reconciler drives them, as a backstop.
func (s *Store) DueRollouts(ctx context.Context) ([]string, error) {
	rows, err := s.Pool.Query(ctx, `SELECT id::text FROM `+s.schema+`.rollouts
		WHERE state = 'running' AND (next_wave_at IS NULL OR next_wave_at <= now()) ORDER BY created_at LIMIT 100`)
	if err != nil {
		return nil, fmt.Errorf("due rollouts: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
