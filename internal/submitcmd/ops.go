package submitcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/clip"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/redact"
	"github.com/confiture-io/confiture-worker/internal/runview"
)

// opsTimeout bounds one request to the workers' service API.
const opsTimeout = 15 * time.Second

// opsCommands are the observer's and the operator's commands: status, runs and run, answered by
// the workers' service API (internal/api) on the NATS server that --nats-url and the NATS
// flags of the root command name. They share o with the root command for those flags.
func opsCommands(o *options, stdout, stderr io.Writer, e env) []*cobra.Command {
	var asJSON bool
	var limit int
	var reason string
	// call connects, runs fn with the client, and maps what went wrong to an exit code: 1
	// for a refusal (no such target or run, a state that does not allow the action) or no
	// worker, 2 for a request the API found malformed.
	call := func(cmd *cobra.Command, fn func(ctx context.Context, c *client.Client, s *submitter) (any, error), show func(any)) error {
		s := &submitter{o: *o, stdout: stdout, stderr: stderr, env: e, cmd: cmd}
		if cmd.Flags().Lookup("sign-key") != nil {
			if err := s.signingSetup(); err != nil {
				return err
			}
		}
		c, err := s.dial("nothing was asked")
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(cmd.Context(), opsTimeout)
		defer cancel()
		reply, err := fn(ctx, c, s)
		var ae *client.APIError
		switch {
		case errors.As(err, &ae) && ae.Code == contract.APIErrBadRequest:
			return s.usage("%s", ae.Message)
		case errors.As(err, &ae):
			s.errorf("%s", ae.Message)
			return exit(ExitFailed)
		case errors.Is(err, client.ErrNoWorker):
			s.errorf("no worker answered at %s: start one, or point --nats-url at the NATS server the workers use", redact.URL(s.url))
			return exit(ExitFailed)
		case err != nil:
			s.errorf("%s", s.redact(err.Error()))
			return exit(ExitFailed)
		}
		if asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(reply)
		}
		show(reply)
		return nil
	}

	status := &cobra.Command{
		Use:   "status [DIR]",
		Short: "Show the target's migrations: applied, or incomplete with the phase reached; with DIR, also those of DIR still pending",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var dir []contract.Migration
			if len(args) == 1 {
				s := &submitter{o: *o, stdout: stdout, stderr: stderr, env: e, cmd: cmd}
				s.o.dir = args[0]
				ms, err := s.load()
				if err != nil {
					return err
				}
				dir = ms
			}
			return call(cmd, func(ctx context.Context, c *client.Client, _ *submitter) (any, error) { return c.Status(ctx, o.target) },
				func(r any) { showStatus(stdout, r.(*contract.StatusReply), dir) })
		},
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print the reply (schemas/api.v1.json, status_reply) instead of the table")
	status.Flags().StringVar(&o.format, "format", "", "read DIR as `FORMAT`: confiture, golang-migrate, goose, dbmate or flyway (default: detected)")

	runs := &cobra.Command{
		Use:   "runs",
		Short: "List the target's latest runs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > contract.APIRunsMax {
				return (&submitter{stderr: stderr}).usage("--limit must be 1 to %d, got %d", contract.APIRunsMax, limit)
			}
			return call(cmd, func(ctx context.Context, c *client.Client, _ *submitter) (any, error) {
				return c.Runs(ctx, o.target, limit)
			},
				func(r any) { showRuns(stdout, r.(*contract.RunsReply)) })
		},
	}
	runs.Flags().IntVar(&limit, "limit", contract.APIRunsDefault, "how many runs")
	runs.Flags().BoolVar(&asJSON, "json", false, "print the reply (schemas/api.v1.json, runs_reply) instead of the table")

	run := &cobra.Command{
		Use:   "run show|pause|resume|fail|retry RUN",
		Short: "Show one run of the target with its events, or act on it; RUN is its id or its request id",
	}
	show := &cobra.Command{
		Use:   "show RUN",
		Short: "Show the run and its events (its timeline)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return call(cmd, func(ctx context.Context, c *client.Client, _ *submitter) (any, error) {
				return c.Run(ctx, o.target, args[0])
			},
				func(r any) { showRun(stdout, r.(*contract.RunReply)) })
		},
	}
	show.Flags().BoolVar(&asJSON, "json", false, "print the reply (schemas/api.v1.json, run_reply) instead of the timeline")
	run.AddCommand(show)
	for _, a := range []struct{ action, short string }{
		{contract.ActionPause, "Pause a running run at its step (a running phase finishes; a backfill stops after its batch)"},
		{contract.ActionResume, "Set a paused run going again"},
		{contract.ActionFail, "Fail a queued, running or paused run (a running phase is cancelled; on_error hooks run)"},
		{contract.ActionRetry, "Queue a failed run again: it plans again and resumes from its failed phase"},
	} {
		cmd := &cobra.Command{
			Use:   a.action + " RUN",
			Short: a.short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return call(cmd, func(ctx context.Context, c *client.Client, s *submitter) (any, error) {
					var signer *client.Signer
					if k := s.o.sign; k.key != nil {
						signer = &client.Signer{Key: k.key, KeyID: k.keyID, Expires: k.expires}
					}
					return c.Act(ctx, o.target, args[0], a.action, reason, signer)
				}, func(r any) {
					ar := r.(*contract.ActionReply)
					fmt.Fprintf(stdout, "%s: run %s (request %s) is %s\n", ar.Action, ar.Run.ID, ar.Run.RequestID, ar.Run.Status)
				})
			},
		}
		cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the run's event")
		addSigningFlags(cmd, &o.sign) // a target that accepts only signed requests accepts only signed actions
		cmd.Flags().BoolVar(&asJSON, "json", false, "print the reply (schemas/api.v1.json, action_reply)")
		run.AddCommand(cmd)
	}
	var since time.Duration
	var last int
	follow := &cobra.Command{
		Use:   "follow",
		Short: "Print every event of every run of the target as it happens, until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s := &submitter{o: *o, stdout: stdout, stderr: stderr, env: e, cmd: cmd}
			switch {
			case since < 0 || last < 0:
				return s.usage("--since and --last must not be negative")
			case since > 0 && last > 0:
				return s.usage("--since and --last both say where to begin: give one")
			}
			c, err := s.dial("nothing was followed")
			if err != nil {
				return err
			}
			defer c.Close()
			enc := json.NewEncoder(stdout)
			err = c.FollowTarget(cmd.Context(), o.target, client.Replay{Since: since, Last: last}, func(ev *contract.Event) error {
				if asJSON {
					return enc.Encode(ev)
				}
				fmt.Fprintln(stdout, eventLine(ev))
				return nil
			})
			switch {
			case cmd.Context().Err() != nil:
				return exit(ExitInterrupted)
			case err != nil:
				s.errorf("%s", s.redact(err.Error()))
				return exit(ExitFailed)
			}
			return nil
		},
	}
	follow.Flags().DurationVar(&since, "since", 0, "begin with the events of this long ago (say 30m), not with the next one")
	follow.Flags().IntVar(&last, "last", 0, "begin with the target's last N events, not with the next one")
	follow.Flags().BoolVar(&asJSON, "json", false, "print each event as one JSON line, exactly as published")
	return []*cobra.Command{status, runs, run, follow, rolloutCommand(o, call, &asJSON, stdout)}
}

// rolloutCommand is 'submit rollout show|resume': a rollout of --group, through the service API.
func rolloutCommand(o *options, call func(*cobra.Command, func(context.Context, *client.Client, *submitter) (any, error), func(any)) error, asJSON *bool, stdout io.Writer) *cobra.Command {
	var group, failed, reason string
	cmd := &cobra.Command{
		Use:   "rollout show|resume [ROLLOUT]",
		Short: "Show a rollout of a target group (--group), or resume it when halted; ROLLOUT is its id or request id",
	}
	cmd.PersistentFlags().StringVar(&group, "group", "", "the target group (required)")
	needGroup := func(cmd *cobra.Command) error {
		if group == "" {
			return (&submitter{stderr: cmd.ErrOrStderr()}).usage("name the target group with --group")
		}
		return nil
	}
	show := &cobra.Command{
		Use:   "show [ROLLOUT]",
		Short: "Show the rollout (default: the group's latest): its waves, counts and failed targets",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needGroup(cmd); err != nil {
				return err
			}
			ref := ""
			if len(args) == 1 {
				ref = args[0]
			}
			return call(cmd, func(ctx context.Context, c *client.Client, _ *submitter) (any, error) {
				return c.Rollout(ctx, group, ref)
			}, func(r any) { showRollout(stdout, r.(*contract.RolloutStatus)) })
		},
	}
	show.Flags().BoolVar(asJSON, "json", false, "print the rollout's status (schemas/api.v1.json, rollout_status)")
	resume := &cobra.Command{
		Use:   "resume ROLLOUT",
		Short: "Resume a halted rollout: --failed retry runs its failed targets again from their failed phase, --failed skip leaves them failed",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needGroup(cmd); err != nil {
				return err
			}
			if failed != contract.FailedRetry && failed != contract.FailedSkip {
				return (&submitter{stderr: cmd.ErrOrStderr()}).usage("--failed must be retry or skip, got %q", failed)
			}
			return call(cmd, func(ctx context.Context, c *client.Client, s *submitter) (any, error) {
				var signer *client.Signer
				if k := s.o.sign; k.key != nil {
					signer = &client.Signer{Key: k.key, KeyID: k.keyID, Expires: k.expires}
				}
				return c.ResumeRollout(ctx, group, args[0], failed, reason, signer)
			}, func(r any) { showRollout(stdout, r.(*contract.RolloutStatus)) })
		},
	}
	resume.Flags().StringVar(&failed, "failed", "", "what becomes of the failed targets: retry or skip (required)")
	resume.Flags().StringVar(&reason, "reason", "", "why, recorded in the rollout's event")
	resume.Flags().BoolVar(asJSON, "json", false, "print the rollout's status after it (schemas/api.v1.json, rollout_status)")
	addSigningFlags(resume, &o.sign)
	cmd.AddCommand(show, resume)
	return cmd
}

// showRollout prints a rollout's status.
func showRollout(w io.Writer, st *contract.RolloutStatus) {
	fmt.Fprintf(w, "rollout %s of group %s (request %s): %s\n", st.Rollout, st.Group, st.RequestID, st.State)
	wave := fmt.Sprintf("wave %d of %d", st.Wave+1, st.Waves)
	if st.Canary && st.Wave == 0 {
		wave += " (the canary)"
	}
	fmt.Fprintf(w, "  %s, %d target(s) in it\n", wave, st.WaveSize)
	fmt.Fprintf(w, "  %d target(s): %d completed, %d failed, %d skipped, %d running, %d not started\n",
		st.Total, st.Completed, st.Failed, st.Skipped, st.Running, st.Pending)
	if st.NextWaveAt != nil {
		fmt.Fprintf(w, "  next wave at %s\n", st.NextWaveAt.UTC().Format(time.RFC3339))
	}
	for i := range st.Failures {
		f := &st.Failures[i]
		reason := f.State
		if f.Error != nil {
			reason = f.Error.Code + ": " + f.Error.Message
		}
		fmt.Fprintf(w, "  failed: %s (run %s): %s\n", f.Target, f.Run, reason)
	}
}

// eventLine is one line for an event of any run: its time, run, request, kind, where and what.
func eventLine(ev *contract.Event) string {
	where := strings.TrimSpace(strings.Join([]string{ev.Migration, ev.Phase, ev.Hook}, " "))
	what := ev.Message
	if ev.Error != nil {
		what = ev.Error.Code + ": " + ev.Error.Message
	}
	if ev.DurationMS > 0 && ev.Kind != contract.KindRunAccepted {
		what = strings.TrimSpace(runview.Duration(ev.DurationMS) + "  " + what)
	}
	line := fmt.Sprintf("%s  %s  %-20s  %-19s  %s", ev.Time.UTC().Format("15:04:05.000"), shortID(ev.Run),
		clip.String(ev.RequestID, 20, "…"), ev.Kind, where)
	if what != "" {
		line = strings.TrimRight(line, " ") + "  " + clip.String(what, 80, "…")
	}
	return strings.TrimRight(line, " ")
}

// dial resolves the NATS URL and credentials (flags, environment, the worker's URL file) and
// connects; what goes wrong is reported, its hint ending with consequence, and returned as the
// exit code.
func (s *submitter) dial(consequence string) (*client.Client, error) {
	if err := s.resolveURL(); err != nil {
		return nil, err
	}
	if err := s.natsAuth(); err != nil {
		return nil, err
	}
	return s.connect(consequence)
}

// table writes rows under a header, in columns, without trailing blanks.
func table(w io.Writer, header string, rows [][]string) {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
	for line := range strings.Lines(b.String()) {
		fmt.Fprintln(w, strings.TrimRight(line, " \n"))
	}
}

// showStatus shows a target's migrations and, with the migrations of a directory (dir), the
// directory's that are pending and those whose SQL changed since they were applied.
func showStatus(w io.Writer, r *contract.StatusReply, dir []contract.Migration) {
	incomplete := 0
	applied := map[string]contract.MigrationStatus{}
	for _, m := range r.Migrations {
		applied[contract.VersionKey(m.Version)] = m
		if m.State == contract.MigrationIncomplete {
			incomplete++
		}
	}
	var pending, changed int
	type row struct {
		version string
		cells   []string
	}
	var rows []row
	for _, m := range r.Migrations {
		state := m.State
		if m.State == contract.MigrationIncomplete {
			state += " (" + m.Phase + ")"
		}
		rows = append(rows, row{m.Version, []string{m.Version, clip.String(m.Name, 28, "…"), state, m.AppliedAt.UTC().Format("2006-01-02 15:04:05"),
			runview.Duration(m.ExecutionTimeMS), shortID(m.Run)}})
	}
	for _, m := range dir {
		a, ok := applied[contract.VersionKey(m.Version)]
		switch {
		case !ok:
			pending++
			rows = append(rows, row{m.Version, []string{m.Version, clip.String(m.Name, 28, "…"), "pending", "", "", ""}})
		case a.Checksum != m.Checksum:
			changed++
			for i := range rows {
				if contract.SameVersion(rows[i].version, m.Version) {
					rows[i].cells[2] += ", SQL changed"
				}
			}
		}
	}
	// The latest run's failure, at a migration: the DDL of one that has no row, or a later
	// phase of one that is incomplete.
	if lr := r.LastRun; lr != nil && lr.Status == "failed" && lr.FailedVersion != "" {
		where := "failed in " + lr.FailedPhase + " (run " + shortID(lr.ID) + ")"
		found := false
		for i := range rows {
			if contract.SameVersion(rows[i].version, lr.FailedVersion) {
				rows[i].cells[2] += ", " + where
				found = true
			}
		}
		if !found {
			rows = append(rows, row{lr.FailedVersion, []string{lr.FailedVersion, "", where, "", "", ""}})
		}
	}
	slices.SortStableFunc(rows, func(a, b row) int { return contract.CompareVersions(a.version, b.version) })
	fmt.Fprintf(w, "target %s: %d migration(s) applied", r.Target, len(r.Migrations)-incomplete)
	if incomplete > 0 {
		fmt.Fprintf(w, ", %d incomplete (a run that includes it resumes it)", incomplete)
	}
	if dir != nil {
		fmt.Fprintf(w, "; %d pending in the directory", pending)
		if changed > 0 {
			fmt.Fprintf(w, ", %d changed since applied (submit refuses them without --force)", changed)
		}
	}
	fmt.Fprintln(w)
	if len(rows) == 0 {
		return
	}
	cells := make([][]string, 0, len(rows))
	for _, r := range rows {
		cells = append(cells, r.cells)
	}
	table(w, "VERSION\tNAME\tSTATE\tAPPLIED (UTC)\tDDL\tRUN", cells)
}

func showRuns(w io.Writer, r *contract.RunsReply) {
	if len(r.Runs) == 0 {
		fmt.Fprintf(w, "target %s: no run\n", r.Target)
		return
	}
	rows := make([][]string, 0, len(r.Runs))
	for _, ri := range r.Runs {
		rows = append(rows, []string{shortID(ri.ID), clip.String(ri.RequestID, 32, "…"), runState(ri), fmt.Sprint(ri.Migrations),
			ri.CreatedAt.UTC().Format("2006-01-02 15:04:05"), runview.Duration(ri.DurationMS)})
	}
	table(w, "RUN\tREQUEST\tSTATUS\tMIGRATIONS\tCREATED (UTC)\tTOOK", rows)
}

// runState is a run's status, with where it is or where it failed.
func runState(ri contract.RunInfo) string {
	s := ri.Status
	if ri.DryRun {
		s += " (dry-run)"
	}
	switch {
	case ri.Status == "failed" && ri.FailedVersion != "":
		s += " at " + ri.FailedVersion + " " + ri.FailedPhase
	case (ri.Status == "running" || ri.Status == "paused") && ri.Version != "":
		s += " at " + ri.Version + " " + ri.Phase
	case ri.Status == "running":
		s += " (planning)"
	}
	return s
}

func showRun(w io.Writer, r *contract.RunReply) {
	ri := r.Run
	fmt.Fprintf(w, "run %s\nrequest %s, target %s, %s", ri.ID, ri.RequestID, ri.Target, ri.Direction)
	if ri.DryRun {
		fmt.Fprint(w, ", dry-run")
	}
	fmt.Fprintf(w, "\nstatus %s, %d migration(s), created %s UTC, %s\n", runState(ri), ri.Migrations,
		ri.CreatedAt.UTC().Format("2006-01-02 15:04:05"), runview.Duration(ri.DurationMS))
	if ri.Error != nil {
		fmt.Fprintf(w, "error %s: %s\n", ri.Error.Code, ri.Error.Message)
	}
	if len(r.Events) == 0 {
		fmt.Fprintln(w, "no events left in the outbox (events are kept 24 hours)")
		return
	}
	if !r.EventsComplete {
		fmt.Fprintln(w, "its first events have left the outbox (events are kept 24 hours)")
	}
	start := r.Events[0].Time
	rows := make([][]string, 0, len(r.Events))
	for _, ev := range r.Events {
		where := strings.TrimSpace(strings.Join([]string{ev.Migration, ev.Phase, ev.Hook}, " "))
		what := ev.Message
		if ev.Error != nil {
			what = ev.Error.Code + ": " + ev.Error.Message
		}
		took := ""
		if ev.DurationMS > 0 {
			took = runview.Duration(ev.DurationMS)
		}
		att := ""
		if ev.Attempt > 1 {
			att = fmt.Sprint(ev.Attempt)
		}
		rows = append(rows, []string{"+" + runview.Duration(ev.Time.Sub(start).Milliseconds()), ev.Kind, where, att, took, clip.String(what, 40, "…")})
	}
	table(w, "AT\tEVENT\tWHERE\tATTEMPT\tTOOK\tWHAT", rows)
}

func shortID(id string) string { return clip.String(id, 8, "") }
