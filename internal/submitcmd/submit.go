// Package submitcmd is the submit command: it reads a migrations directory, publishes one
// confiture.request/v1 request on NATS and, with --wait, follows the run's events until the
// run ends.
//
// It depends only on the public contract (packages contract, migrations and client) and on
// packages runview, which shows the run, and dryrunpage, which draws a dry-run report as an
// HTML page, never on the worker's internals.
package submitcmd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/buildinfo"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/dryrunpage"
	"github.com/confiture-io/confiture-worker/internal/migrations"
	"github.com/confiture-io/confiture-worker/internal/natsauth"
	"github.com/confiture-io/confiture-worker/internal/redact"
	"github.com/confiture-io/confiture-worker/internal/runview"
)

// Exit codes of submit.
const (
	// ExitOK: the run completed (with --wait), or the request was published (without).
	ExitOK = 0
	// ExitFailed: the run failed (run.failed), or it ended with incomplete migrations left on
	// the target (a failed run's, not resumed); for a dry-run, a statement or hook failed (the
	// report's success is false). Also: NATS could not be reached or refused the connection
	// (authorization or TLS: "NATS authorization failed at ..."), the request could not be
	// published (a NATS user without the permission: "permission denied"), following the
	// run's events broke down, a dry-run ended without a report to check --fail-on against, or
	// --html could not write the report.
	ExitFailed = 1
	// ExitUsage: bad flags or arguments, or a local validation error (unreadable or invalid
	// migrations directory, a request the contract would reject, a request over 1 MiB).
	// Nothing was published.
	ExitUsage = 2
	// ExitRejected: the worker rejected the request (run.rejected).
	ExitRejected = 3
	// ExitTimeout: --timeout passed before the run's final event.
	ExitTimeout = 4
	// ExitDryRunWarnings: the dry-run succeeded but its report has a warning at or above
	// --fail-on (default: error).
	ExitDryRunWarnings = 5
	// ExitInterrupted: interrupted (SIGINT or SIGTERM) while waiting; the run goes on.
	ExitInterrupted = 130
)

// exitCode is the exit code of a run's verdict; a verdict this version does not know fails.
func exitCode(v runview.Verdict) int {
	switch v {
	case runview.OK:
		return ExitOK
	case runview.Rejected:
		return ExitRejected
	case runview.Warnings:
		return ExitDryRunWarnings
	}
	return ExitFailed
}

// Defaults and limits.
const (
	// DefaultNATSURL is used when neither --nats-url, $CONFITURE_NATS_URL nor a worker's URL file
	// (client.URLFile) gives one.
	DefaultNATSURL = "nats://127.0.0.1:4222"
	// NATSURLEnv names the environment variable that sets the default NATS URL.
	NATSURLEnv = "CONFITURE_NATS_URL"
	// MaxRequestBytes is the largest request submit publishes (the worker's default limit).
	MaxRequestBytes = 1 << 20
	// DefaultTimeout bounds --wait.
	DefaultTimeout = 10 * time.Minute
	// publishTimeout bounds the publish and its JetStream acknowledgement.
	publishTimeout = 30 * time.Second
	// maxRequestedBy is the schema's limit on requested_by, in characters.
	maxRequestedBy = 200
)

const longHelp = `Reads the migrations in DIR (<version>_<name>.up.sql, optional .down.sql and
.hooks.yaml), checks them locally, and publishes one confiture.request/v1 request on NATS
(subject confiture.requests.<target>), where a worker picks it up.

DIR may also be a directory written for golang-migrate, goose, dbmate or Flyway, read as it
is: submit detects the format from its files (--format, or format: in DIR's confiture.yaml,
says it). --adopt TOOL takes over a target that tool migrated: the run records the versions
the tool's history table says are applied, after checking them against DIR, then migrates on.
See docs/COMING_FROM.md.

The request id (--id) makes the request idempotent: publishing the same id again for the same
target does not start a second run; submit then follows the run the first request started. The
same id for another target is another request.

Without --wait, submit prints the run id and how to follow it, and exits once the request is
stored. With --wait it follows the run's events (confiture.events.<target>.<run>.>) with a live
display, or with --json one event per line, exactly as published, until the run ends. On a
terminal a running backfill is a progress bar (rows, rows/s, ETA); elsewhere one line a second.

With --dry-run the worker runs every pending migration for real (transactional hooks and DDL)
inside one transaction, measures each statement and hook (time, rows, locks, table rewrites),
then rolls everything back. With --wait the report is shown as tables: per migration, phase,
statement and hook, then the warnings grouped by severity (error, warning, info); with --json
it is the data of the dryrun.report event. --fail-on chooses which warnings fail the command:
"error" (the default), "warning" (warnings and errors), or "none". --html FILE (with
--dry-run --wait) also writes the report as one self-contained HTML page: a lock timeline with
a lane per table and a bar per statement or hook, coloured by what it blocks, then its tables.
See docs/DRY_RUN.md.

With --group G instead of --target, the request is for every member of the worker's target
group G: a rollout, one run per member, the canary first (--canary, default 1), then in waves
(--wave-size or --wave-percent) of at most --max-concurrent runs at once, --pause between waves;
a wave whose failures pass --failure-threshold or --failure-percent halts it. With --wait it
shows the waves, the failed targets with their reasons and a progress bar, and exits 0 only when
every target completed. 'submit rollout show|resume --group G' shows a rollout or resumes a
halted one (--failed retry|skip). See docs/FLEETS.md.

` + signingHelp + `

'submit status [DIR]', 'submit runs' and 'submit run show|pause|resume|fail|retry RUN' ask
the workers' service API (confiture.api.<endpoint>.<target>) about --target: its migrations
(with DIR, also DIR's still pending and those changed since they were applied), its latest runs, one run and its events (RUN is the run's id or its request id), or an operator
action on a run. --json prints the reply as the API sends it (schemas/api.v1.json). They exit
0 when answered, 1 when refused (no such target or run, a state that does not allow the
action), when no worker answers or NATS cannot be reached, and 2 on a usage error.
'submit follow' prints every event of every run of --target as it is stored (--json: as
published), from now, --since a while ago, or from the target's --last N events, until
interrupted (exit 130).

Exit codes:
  0    the run completed (with --wait), or the request was published (without --wait); for a
       dry-run: it succeeded with no warning at or above --fail-on
  1    the run failed (run.failed), or the target is left with incomplete migrations (an
       earlier run failed after their DDL; submitting them again resumes them); for a
       dry-run: a statement or hook failed, or no report arrived to check --fail-on
       against or to write with --html; or NATS could not be reached, refused the
       credentials or TLS ("NATS authorization failed"), or the request was not published
       (for one, "permission denied" on its subject)
  2    usage error or local validation error (bad flags, unreadable or invalid directory, a
       request the contract rejects or one over 1 MiB); nothing was published
  3    the worker rejected the request (run.rejected: invalid, unknown target or hook, bad
       signature); a request it accepted ends completed or failed, never rejected
  4    timed out waiting for the run to end (--timeout); the run may still be going on
  5    dry-run succeeded but found warnings at or above --fail-on
  130  interrupted while waiting; the run goes on in the worker`

const examples = `  submit ./migrations --wait
  submit ./migrations --id deploy-42 --target orders --wait --json
  submit ./migrations --direction down --to 20240101000000 --wait
  submit ./migrations --dry-run --wait --fail-on warning
  submit ./db/migrations --adopt goose --dry-run --wait
  submit ./db/migrations --adopt goose --wait
  submit ./migrations --dry-run --wait --html dryrun.html
  submit ./migrations --group tenants --wave-size 100 --max-concurrent 20 --wait
  submit ./migrations --target app --sign-key deploy.pem --key-id ci --wait
  submit keygen --out deploy.pem --key-id ci --target app`

// exitError ends the command with an exit code; its message (if any) is already printed.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func exit(code int) error { return &exitError{code: code} }

// env is what submit takes from its environment, replaceable in tests.
type env struct {
	getenv   func(string) string
	hostname func() (string, error)
	username func() string
	now      func() time.Time
	color    bool // stdout is a terminal that takes colours
	terminal bool // stdout is a terminal that can redraw its last line (a progress bar)
}

func osEnv(stdout io.Writer) env {
	return env{
		getenv:   os.Getenv,
		hostname: os.Hostname,
		username: func() string {
			if u, err := user.Current(); err == nil {
				return u.Username
			}
			return ""
		},
		now:      time.Now,
		color:    colorTerminal(stdout),
		terminal: isTerminal(stdout),
	}
}

// isTerminal reports whether w is a terminal that understands cursor movement (not
// TERM=dumb).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && os.Getenv("TERM") != "dumb" && term.IsTerminal(int(f.Fd()))
}

// colorTerminal reports whether w is a terminal that should get colours.
func colorTerminal(w io.Writer) bool {
	return os.Getenv("NO_COLOR") == "" && isTerminal(w)
}

// Main runs submit with args (without the program name) and returns its exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, args, stdout, stderr, osEnv(stdout))
}

type options struct {
	dir         string
	format      string // --format: the directory's format, empty to detect it
	adopt       string // --adopt: the tool whose history the run takes over
	adoptTable  string
	id          string
	target      string
	group       string
	rollout     rolloutFlags
	direction   string
	to          string
	force       bool
	dryRun      bool
	requestedBy string
	natsURL     string
	nats        natsauth.Options // the --nats-* security flags
	sign        signOptions      // --sign-key, --key-id, --sign-expires
	wait        bool
	json        bool
	timeout     time.Duration
	failOn      string
	html        string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, e env) int {
	var o options
	cmd := &cobra.Command{
		Use:           "submit DIR",
		Version:       buildinfo.String(),
		Short:         "Publish a migrations directory as a request to the Confiture worker",
		Long:          longHelp,
		Example:       examples,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args: func(_ *cobra.Command, args []string) error {
			switch len(args) {
			case 0:
				return errors.New("missing DIR: the migrations directory to submit")
			case 1:
				return nil
			default:
				return fmt.Errorf("submit takes one migrations directory, got %d arguments: %s", len(args), strings.Join(args, " "))
			}
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.dir = args[0]
			s := &submitter{o: o, stdout: stdout, stderr: stderr, env: e, cmd: cmd}
			return s.run(ctx)
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringVar(&o.id, "id", "", "request id, the idempotency key: 1 to 200 of A-Z a-z 0-9 . _ : - (default: generated, submit-<UTC time>-<random hex>)")
	cmd.PersistentFlags().StringVar(&o.target, "target", "default", "target database, as named in the worker's configuration")
	f.StringVar(&o.group, "group", "", "a target group of the worker's configuration instead of --target: a rollout, one run per member, the canary first, then in waves (see docs/FLEETS.md)")
	addRolloutFlags(f, &o.rollout)
	f.StringVar(&o.direction, "direction", contract.DirectionUp, "up or down")
	f.StringVar(&o.to, "to", "", "version to stop at: up applies nothing after it; down reverts everything after it (default: up applies all, down reverts the latest)")
	f.BoolVar(&o.force, "force", false, "accept changed checksums of applied migrations")
	f.StringVar(&o.format, "format", "", "read DIR as `FORMAT`: confiture, golang-migrate, goose, dbmate or flyway (default: from a confiture.yaml in DIR, else detected from its files)")
	f.StringVar(&o.adopt, "adopt", "", "take the target over from `TOOL` (goose, golang-migrate, dbmate or flyway): record the versions its history table says are applied, then migrate (see docs/COMING_FROM.md)")
	f.StringVar(&o.adoptTable, "adopt-table", "", "with --adopt: the tool's history `TABLE` ([schema.]table) when it is not the tool's default")
	f.BoolVar(&o.dryRun, "dry-run", false, "ask for a dry-run: run everything in a transaction, report, roll back")
	f.StringVar(&o.requestedBy, "requested-by", "", "who asks, recorded as applied_by (default $USER@$HOSTNAME)")
	cmd.PersistentFlags().StringVar(&o.natsURL, "nats-url", "", "NATS server URL (default $"+NATSURLEnv+", else the URL a worker with an embedded NATS server wrote in "+
		client.URLPath(client.DefaultDataDir)+" ($"+client.DataDirEnv+"), else "+DefaultNATSURL+")")
	addNATSFlags(cmd, &o.nats)
	f.BoolVar(&o.wait, "wait", false, "follow the run's events until it ends; the exit code then tells how it ended")
	f.BoolVar(&o.json, "json", false, "with --wait: print each event as one JSON line on stdout instead of the live display")
	f.DurationVar(&o.timeout, "timeout", DefaultTimeout, "with --wait: how long to wait for the run to end")
	f.StringVar(&o.failOn, "fail-on", runview.DefaultFailOn, "with --dry-run --wait: exit 5 when the report has a warning of this severity or graver: warning, error or none")
	f.StringVar(&o.html, "html", "", "with --dry-run --wait: also write the report to `FILE` as one self-contained HTML page (a lock timeline per table, then its tables)")
	addSigningFlags(cmd, &o.sign)
	cmd.AddCommand(keygenCommand(stdout, stderr))
	cmd.AddCommand(opsCommands(&o, stdout, stderr, e)...)

	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return err })
	err := cmd.ExecuteContext(ctx)
	var ee *exitError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ee.code
	default: // a usage error found by cobra or by the Args check
		fmt.Fprintf(stderr, "error: %v\nRun 'submit --help' for usage.\n", err)
		return ExitUsage
	}
}

// submitter carries one invocation.
type submitter struct {
	o      options
	stdout io.Writer
	stderr io.Writer
	env    env
	cmd    *cobra.Command
	url    string           // NATS URL in use
	auth   natsauth.Options // NATS credentials and TLS in use
	// urlFile is the worker's URL file that url was read from, if it was.
	urlFile string
}

func (s *submitter) errorf(format string, args ...any) {
	fmt.Fprintf(s.stderr, "error: "+format+"\n", args...)
}

func (s *submitter) usage(format string, args ...any) error {
	s.errorf(format, args...)
	fmt.Fprintln(s.stderr, "Run 'submit --help' for usage.")
	return exit(ExitUsage)
}

// info prints a status line for a person: on stdout, or on stderr when stdout carries JSON.
func (s *submitter) info(format string, args ...any) {
	w := s.stdout
	if s.o.json {
		w = s.stderr
	}
	fmt.Fprintf(w, format+"\n", args...)
}

func (s *submitter) run(ctx context.Context) error {
	o := &s.o
	if o.direction != contract.DirectionUp && o.direction != contract.DirectionDown {
		return s.usage("--direction must be up or down, got %q", o.direction)
	}
	if o.timeout <= 0 {
		return s.usage("--timeout must be positive, got %s", o.timeout)
	}
	if o.json && !o.wait {
		return s.usage("--json applies to the events that --wait follows: add --wait, or drop --json")
	}
	if !runview.ValidFailOn(o.failOn) {
		return s.usage("--fail-on must be warning, error or none, got %q", o.failOn)
	}
	if s.cmd.Flags().Changed("fail-on") && (!o.dryRun || !o.wait) {
		return s.usage("--fail-on applies to the report of a dry-run that submit follows: add --dry-run --wait, or drop --fail-on")
	}
	if o.html != "" {
		if !o.dryRun || !o.wait {
			return s.usage("--html writes the report of a dry-run that submit follows: add --dry-run --wait, or drop --html")
		}
		if dir := filepath.Dir(o.html); !isDir(dir) {
			return s.usage("--html %s: there is no directory %s to write it in", o.html, dir)
		}
	}
	if err := s.checkGroupFlags(); err != nil {
		return err
	}
	if err := s.checkAdoptFlags(); err != nil {
		return err
	}
	if o.id == "" {
		o.id = generateID(s.env.now())
	}
	if !s.cmd.Flags().Changed("requested-by") {
		o.requestedBy = s.defaultRequestedBy()
	}
	if err := s.resolveURL(); err != nil {
		return err
	}
	if err := s.natsAuth(); err != nil {
		return err
	}
	if err := s.signingSetup(); err != nil {
		return err
	}

	req, data, err := s.build()
	if err != nil {
		return err
	}
	return s.publish(ctx, req, data)
}

// checkAdoptFlags refuses an --adopt that cannot be: an unknown tool, going down, or
// --adopt-table alone.
func (s *submitter) checkAdoptFlags() error {
	o := &s.o
	switch {
	case o.adopt != "" && !slices.Contains(contract.AdoptTools, o.adopt):
		return s.usage("--adopt must be one of %s, got %q", strings.Join(contract.AdoptTools, ", "), o.adopt)
	case o.adopt != "" && o.direction != contract.DirectionUp:
		return s.usage("--adopt takes a target over before migrating it up: drop --direction %s, or --adopt", o.direction)
	case o.adoptTable != "" && o.adopt == "":
		return s.usage("--adopt-table names the history table of the tool that --adopt takes over: add --adopt TOOL")
	}
	return nil
}

// load reads the migrations directory; a problem is reported, each with its file and line, and
// returned as a usage error.
func (s *submitter) load() ([]contract.Migration, error) {
	o := &s.o
	ms, format, err := migrations.LoadFormat(o.dir, migrations.Format(o.format))
	if err == nil {
		if format != migrations.FormatConfiture {
			s.info("read %s as %s migrations: %d", o.dir, format, len(ms))
		}
		return ms, nil
	}
	var le *migrations.LoadError
	if errors.As(err, &le) {
		if len(le.Problems) > 1 {
			fmt.Fprintf(s.stderr, "error: %d problems in the migrations directory %s:\n", len(le.Problems), o.dir)
		} else {
			fmt.Fprint(s.stderr, "error: ")
		}
		for _, p := range le.Problems {
			loc := o.dir
			if p.File != "" {
				loc = filepath.Join(o.dir, p.File)
			}
			if p.Line > 0 {
				loc = fmt.Sprintf("%s:%d", loc, p.Line)
			}
			fmt.Fprintf(s.stderr, "%s: %s\n", loc, p.Message)
		}
	} else {
		s.errorf("%s: %v", o.dir, err)
	}
	fmt.Fprintln(s.stderr, "hint: fix the files above and submit again (submit reads its own <version>_<name>.up.sql, .down.sql and .hooks.yaml, and golang-migrate's, goose's, dbmate's and Flyway's directories: see docs/COMING_FROM.md); nothing was published")
	return nil, exit(ExitUsage)
}

// build loads the directory and builds and validates the request.
func (s *submitter) build() (*contract.Request, []byte, error) {
	o := &s.o
	ms, err := s.load()
	if err != nil {
		return nil, nil, err
	}
	req := &contract.Request{
		Schema:      contract.RequestSchemaV1,
		ID:          o.id,
		Target:      o.target,
		Direction:   o.direction,
		Group:       o.group,
		Rollout:     s.rolloutPolicy(),
		To:          o.to,
		DryRun:      o.dryRun,
		Force:       o.force,
		Adopt:       o.adopt,
		AdoptTable:  o.adoptTable,
		RequestedBy: o.requestedBy,
		Migrations:  ms,
	}
	data, err := s.encode(req) // signed with --sign-key
	if err != nil {
		s.errorf("encode the request: %v", err)
		return nil, nil, exit(ExitUsage)
	}
	if _, err := contract.DecodeRequest(data); err != nil {
		msg := err.Error()
		var de *contract.DecodeError
		if errors.As(err, &de) {
			msg = de.Message
		}
		s.errorf("the request built from %s is invalid: %s", o.dir, msg)
		fmt.Fprintln(s.stderr, "hint: check --id, --target, --to, --adopt-table and --requested-by (see 'submit --help'); nothing was published")
		return nil, nil, exit(ExitUsage)
	}
	if len(data) > MaxRequestBytes {
		s.errorf("the request built from %s is %d bytes, over the limit of %d bytes (1 MiB) of one request", o.dir, len(data), MaxRequestBytes)
		fmt.Fprintln(s.stderr, "hint: submit the migrations in several smaller directories; nothing was published")
		return nil, nil, exit(ExitUsage)
	}
	return req, data, nil
}

// resolveURL decides which NATS server to talk to: --nats-url, else $CONFITURE_NATS_URL, else
// the URL a worker with an embedded NATS server recorded in its data directory
// ($CONFITURE_DATA_DIR, else ./.confiture), else DefaultNATSURL.
func (s *submitter) resolveURL() error {
	if s.url = s.o.natsURL; s.url != "" {
		return nil
	}
	if s.url = s.env.getenv(NATSURLEnv); s.url != "" {
		return nil
	}
	dir := s.env.getenv(client.DataDirEnv)
	if dir == "" {
		dir = client.DefaultDataDir
	}
	url, path, err := client.ReadURL(dir)
	if err != nil {
		return s.usage("%v", err)
	}
	if url != "" {
		s.url, s.urlFile = url, path
		return nil
	}
	s.url = DefaultNATSURL
	return nil
}

// connect connects to NATS with the URL and credentials resolved (resolveURL, natsAuth). A
// failure is reported, its hint ending with consequence ("nothing was published"), and returned
// as the exit code.
func (s *submitter) connect(consequence string) (*client.Client, error) {
	shown := redact.URL(s.url)
	natsOpts, err := s.auth.NATSOptions() // validated by natsAuth
	if err != nil {
		return nil, s.usage("%v", err)
	}
	c, err := client.Connect(s.url, natsOpts...)
	if err != nil {
		if d, ok := s.auth.Diagnose(err); ok {
			return nil, s.refused(d, shown, consequence)
		}
		s.errorf("cannot connect to NATS at %s: %s", shown, s.redact(err.Error()))
		if s.urlFile != "" {
			fmt.Fprintf(s.stderr, "hint: %s, which a worker with an embedded NATS server writes while it runs, names that URL: the worker that wrote it may have stopped without removing it (start it again, or remove the file); %s\n", s.urlFile, consequence)
		} else {
			fmt.Fprintf(s.stderr, "hint: start a worker (it embeds a NATS server) or point --nats-url or $%s at a NATS server; %s\n", NATSURLEnv, consequence)
		}
		return nil, exit(ExitFailed)
	}
	return c, nil
}

func (s *submitter) publish(ctx context.Context, req *contract.Request, data []byte) error {
	o := &s.o
	shown := redact.URL(s.url)
	c, err := s.connect("nothing was published")
	if err != nil {
		return err
	}
	defer c.Close()

	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	addressee := req.Target
	if req.Group != "" {
		addressee = req.Group
	}
	pub, err := c.PublishRaw(pctx, addressee, req.ID, data)
	cancel()
	if req.Group != "" {
		pub.Run = contract.RolloutID(req.Group, req.ID)
	}
	if err != nil {
		if ctx.Err() != nil {
			s.errorf("interrupted while publishing request %s; it may or may not have been stored", req.ID)
			return exit(ExitInterrupted)
		}
		s.errorf("could not publish request %s on %s at %s: %s", req.ID, contract.RequestSubject(addressee), shown, s.redact(err.Error()))
		if pe := (*client.PermissionError)(nil); errors.As(err, &pe) {
			s.permissionHint(pe, addressee)
		}
		return exit(ExitFailed)
	}
	if req.Group != "" {
		return s.publishedRollout(ctx, c, req, pub)
	}

	if !o.wait {
		if pub.Duplicate {
			s.info("request %s was already published; nothing new was sent (run %s)", req.ID, pub.Run)
		} else {
			s.info("published request %s for target %s: run %s", req.ID, req.Target, pub.Run)
		}
		s.info("follow it with: %s", s.followCommand())
		s.info("or subscribe to %s (stream %s)", contract.RunEventsFilter(req.Target, pub.Run), contract.EventStream)
		return nil
	}
	if pub.Duplicate {
		s.info("request %s was already published; following the existing run", req.ID)
	}
	return s.wait(ctx, c, req, pub.Run)
}

func (s *submitter) wait(ctx context.Context, c *client.Client, req *contract.Request, run string) error {
	o := &s.o
	r := runview.NewRenderer(s.stdout, runview.RenderOptions{JSON: o.json, Color: s.env.color && !o.json, Terminal: s.env.terminal && !o.json})
	wctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	final, err := c.Wait(wctx, req.Target, run, r.Render)
	r.Close() // a progress bar still drawn goes before anything else is printed
	htmlOK := s.writeHTML(r.Report())
	switch {
	case err == nil && final != nil:
	case ctx.Err() != nil:
		s.errorf("interrupted while waiting for run %s; it goes on in the worker", run)
		fmt.Fprintf(s.stderr, "follow it again with: %s\n", s.followCommand())
		return exit(ExitInterrupted)
	case wctx.Err() != nil:
		last := "none yet"
		if ev := r.Last(); ev != nil {
			last = describe(ev)
		}
		s.errorf("timed out after %s waiting for run %s to end (last event: %s); it may still be running", o.timeout, run, last)
		fmt.Fprintf(s.stderr, "follow it again with: %s\n", s.followCommand())
		return exit(ExitTimeout)
	default:
		if err == nil {
			err = errors.New("the event stream ended before the run's final event")
		}
		s.errorf("following run %s: %s", run, s.redact(err.Error()))
		return exit(ExitFailed)
	}
	verdict, reason := r.Verdict(final, o.dryRun, o.failOn)
	code := exitCode(verdict)
	if code == ExitOK && !htmlOK {
		code, reason = ExitFailed, "the dry-run report could not be written to "+o.html
	}
	if reason != "" {
		if code == ExitOK {
			s.info("%s", reason)
		} else {
			s.errorf("%s (exit %d)", reason, code)
		}
	}
	if code == ExitOK {
		return nil
	}
	return exit(code)
}

// writeHTML writes rep as an HTML page to --html's file, if given: into a temporary file of
// the same directory, renamed when complete, so the file is whole or left as it was. It says
// what it did and reports whether it went well.
func (s *submitter) writeHTML(rep *contract.DryRunReport) bool {
	path := s.o.html
	if path == "" {
		return true
	}
	if rep == nil {
		s.errorf("no dry-run report arrived, so --html wrote nothing to %s", path)
		return false
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err == nil {
		err = dryrunpage.Render(f, rep)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Chmod(f.Name(), 0o644)
		}
		if err == nil {
			err = os.Rename(f.Name(), path)
		}
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}
	if err != nil {
		s.errorf("could not write the dry-run report to %s: %v", path, err)
		return false
	}
	s.info("dry-run report written to %s (open it in a browser)", path)
	return true
}

// isDir reports whether path is a directory.
func isDir(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.IsDir()
}

// describe names an event for a message: its kind and what it is about.
func describe(ev *contract.Event) string {
	parts := []string{ev.Kind}
	for _, p := range []string{ev.Migration, ev.Phase, ev.Hook} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, " ")
}

// followCommand is the command that follows the run again: republishing the same id is a
// no-op that follows the existing run.
func (s *submitter) followCommand() string {
	parts := []string{"submit", shellQuote(s.o.dir), "--id", shellQuote(s.o.id)}
	if s.o.target != "default" {
		parts = append(parts, "--target", shellQuote(s.o.target))
	}
	if s.cmd.Flags().Changed("nats-url") {
		parts = append(parts, "--nats-url", shellQuote(redact.URL(s.url)))
	}
	parts = append(parts, natsFlagsShown(s.cmd)...)
	parts = append(parts, signFlagsShown(s.cmd, &s.o.sign)...)
	return strings.Join(append(parts, "--wait"), " ")
}

// redact removes the NATS URL's credentials, and the password or token given, from an error
// message.
func (s *submitter) redact(msg string) string {
	return redact.String(msg, append(redact.Secrets(s.url), string(s.auth.Password), string(s.auth.Token))...)
}

// generateID returns a fresh request id: submit-<UTC time>-<8 random hex digits>.
func generateID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "submit-" + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// defaultRequestedBy is $USER@$HOSTNAME, best effort, at most maxRequestedBy characters.
func (s *submitter) defaultRequestedBy() string {
	name := s.env.getenv("USER")
	if name == "" {
		name = s.env.getenv("USERNAME")
	}
	if name == "" && s.env.username != nil {
		name = s.env.username()
	}
	host := s.env.getenv("HOSTNAME")
	if host == "" && s.env.hostname != nil {
		host, _ = s.env.hostname()
	}
	by := name
	switch {
	case name != "" && host != "":
		by = name + "@" + host
	case name == "":
		by = host
	}
	by = strings.ToValidUTF8(by, "?")
	if utf8.RuneCountInString(by) > maxRequestedBy {
		by = string([]rune(by)[:maxRequestedBy])
	}
	return by
}

// shellQuote quotes s for a POSIX shell when it needs quoting.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:@,+=%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
