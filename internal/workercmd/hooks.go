package workercmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/goccy/go-yaml"
	"github.com/spf13/cobra"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/worker"
)

func hooksCommand(o *options, stdout io.Writer) *cobra.Command {
	hooksCmd := group(&cobra.Command{Use: "hooks", Short: "Inspect the hooks this worker can run"})
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List every hook the worker can see, where it came from, and those that failed to load",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			reg, err := o.registry()
			if err != nil {
				return err
			}
			return printHooks(stdout, reg.List(), reg.Failures(), asJSON)
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	describe := &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a hook's parameter schema and an example hooks.yaml snippet",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(_ *cobra.Command, args []string) error {
			reg, err := o.registry()
			if err != nil {
				return err
			}
			return describeHook(stdout, reg, args[0])
		},
	}
	hooksCmd.AddCommand(list, describe)
	return hooksCmd
}

// registry builds the hook registry exactly as the daemon does (worker.New: built-in hooks,
// compiled-in hooks, plugins), without connecting to anything. Load failures are not logged:
// the commands show them.
func (o *options) registry() (*hooks.Registry, error) {
	cfg, err := o.config(slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	w, err := worker.New(cfg)
	if err != nil {
		return nil, usageError{err}
	}
	return w.Registry(), nil
}

// hookList is the JSON of `worker hooks list --json`.
type hookList struct {
	Hooks      []hookInfo          `json:"hooks"`
	LoadErrors []hooks.LoadFailure `json:"load_errors"`
}

// hookInfo is one hook of `worker hooks list`.
type hookInfo struct {
	Name          string   `json:"name"`
	Source        string   `json:"source"`
	Version       string   `json:"version,omitempty"`
	Phases        []string `json:"phases"`
	Transactional bool     `json:"transactional"`
	Description   string   `json:"description"`
}

// printHooks prints the hooks and those that failed to load, as a table or JSON; the listing is
// an error when a hook failed to load, once it is printed.
func printHooks(w io.Writer, defs []hooks.Definition, failures []hooks.LoadFailure, asJSON bool) error {
	if err := writeHooks(w, defs, failures, asJSON); err != nil {
		return err
	}
	switch len(failures) {
	case 0:
		return nil
	case 1:
		return errors.New("1 hook failed to load")
	}
	return fmt.Errorf("%d hooks failed to load", len(failures))
}

func writeHooks(w io.Writer, defs []hooks.Definition, failures []hooks.LoadFailure, asJSON bool) error {
	list := hookList{Hooks: make([]hookInfo, 0, len(defs)), LoadErrors: failures}
	if list.LoadErrors == nil {
		list.LoadErrors = []hooks.LoadFailure{}
	}
	for _, d := range defs {
		list.Hooks = append(list.Hooks, hookInfo{
			Name: d.Name, Source: d.Source, Version: d.Version, Phases: phasesOf(&d),
			Transactional: d.Transactional, Description: d.Description,
		})
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	// The table fits listWidth columns: a source is cut at its start, a long list of phases is
	// counted, and descriptions wrap under their column (or, when the other columns leave them
	// too little room, under the row). `hooks describe` and --json show everything whole.
	var table strings.Builder
	tw := tabwriter.NewWriter(&table, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSOURCE\tVERSION\tPHASES\tTX\tSTATUS\tDESCRIPTION")
	descriptions := make([]string, 0, len(list.Hooks)+len(list.LoadErrors))
	for _, h := range list.Hooks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\tok\t\n", h.Name, tail(h.Source, sourceWidth), orDash(h.Version),
			phaseSummary(h.Phases), yesNo(h.Transactional))
		descriptions = append(descriptions, oneLine(h.Description))
	}
	// A hook that failed to load has only what its source said about it; its reason, which can
	// be long, follows the table, so that it does not widen every row.
	for i, f := range list.LoadErrors {
		fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\tfailed (%d)\t\n", orDash(f.Name), tail(orDash(f.Source), sourceWidth), i+1)
		descriptions = append(descriptions, "")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	lines := strings.Split(strings.TrimRight(table.String(), "\n"), "\n")
	at := strings.Index(lines[0], "DESCRIPTION")
	if listWidth-at < minDescriptionWidth { // the descriptions go under their rows
		fmt.Fprintln(w, strings.TrimRight(lines[0][:at], " "))
	} else {
		fmt.Fprintln(w, strings.TrimRight(lines[0], " "))
	}
	for i, line := range lines[1:] {
		parts := wrap(descriptions[i], listWidth-at)
		if listWidth-at < minDescriptionWidth || len(parts) == 0 { // the description under the row
			fmt.Fprintln(w, strings.TrimRight(line, " "))
			for _, part := range wrap(descriptions[i], listWidth-4) {
				fmt.Fprintln(w, "    "+part)
			}
			continue
		}
		prefix := line + strings.Repeat(" ", max(at-len(line), 0))
		fmt.Fprintln(w, prefix[:at]+parts[0])
		for _, part := range parts[1:] {
			fmt.Fprintln(w, strings.Repeat(" ", at)+part)
		}
	}
	if len(list.LoadErrors) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("\nFailed to load:\n")
	for i, f := range list.LoadErrors {
		fmt.Fprintf(&b, "  (%d) %s, from %s:\n", i+1, orDash(f.Name), orDash(f.Source))
		for _, l := range wrap(oneLine(f.Reason), reasonWidth) {
			fmt.Fprintf(&b, "      %s\n", l)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// reasonWidth is where the reasons below the hooks table wrap.
const reasonWidth = 90

// wrap breaks s into lines of at most width bytes at spaces; a word longer than width has a
// line of its own.
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		switch {
		case line == "":
			line = word
		case len(line)+1+len(word) <= width:
			line += " " + word
		default:
			lines = append(lines, line)
			line = word
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// describeHook prints one hook: what it is, where it comes from, its parameter schema and a
// hooks.yaml snippet that uses it.
func describeHook(w io.Writer, reg *hooks.Registry, name string) error {
	failure, failed := findFailure(reg.Failures(), name)
	def, ok := reg.Lookup(name)
	if !ok {
		if failed {
			return fmt.Errorf("hook %q failed to load from %s: %s", name, orDash(failure.Source), failure.Reason)
		}
		var names []string
		for _, d := range reg.List() {
			names = append(names, d.Name)
		}
		known := "known hooks: " + strings.Join(names, ", ")
		if near := reg.Suggest(name); near != "" {
			known = fmt.Sprintf("did you mean %q? %s", near, known)
		}
		return usageError{fmt.Errorf("unknown hook %q; %s", name, known)}
	}
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 4, 1, ' ', 0)
	fmt.Fprintf(tw, "Name:\t%s\n", def.Name)
	fmt.Fprintf(tw, "Description:\t%s\n", orDash(def.Description))
	fmt.Fprintf(tw, "Source:\t%s\n", def.Source)
	fmt.Fprintf(tw, "Version:\t%s\n", orDash(def.Version))
	fmt.Fprintf(tw, "Phases:\t%s\n", strings.Join(phasesOf(def), ", "))
	fmt.Fprintf(tw, "Transactional:\t%s\n", transactionalNote(*def))
	if failed {
		fmt.Fprintf(tw, "Note:\tanother hook named %q, from %s, failed to load: %s\n", name, orDash(failure.Source), oneLine(failure.Reason))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	b.WriteString("\nParameters:\n")
	if len(def.ParamsSchema) == 0 {
		b.WriteString("  no parameter schema\n")
	} else {
		var schema bytes.Buffer
		if err := json.Indent(&schema, bytes.TrimSpace(def.ParamsSchema), "  ", "  "); err != nil {
			return fmt.Errorf("hook %q: parameter schema: %w", name, err)
		}
		b.WriteString("  ")
		b.Write(schema.Bytes())
		b.WriteString("\n")
	}
	snippet, err := exampleSnippet(def)
	if err != nil {
		return fmt.Errorf("hook %q: example: %w", name, err)
	}
	b.WriteString("\nExample (<version>_<name>.hooks.yaml):\n")
	b.Write(snippet)
	_, err = w.Write(b.Bytes())
	return err
}

// exampleSnippet renders a hooks.yaml declaration of def in the first phase it may run in,
// after_ddl when it may run there, with def.Example as its parameters.
func exampleSnippet(def *hooks.Definition) ([]byte, error) {
	phases := phasesOf(def)
	phase := phases[0]
	if slices.Contains(phases, contract.PhaseAfterDDL) {
		phase = contract.PhaseAfterDDL
	}
	decl := yaml.MapSlice{{Key: "name", Value: def.Name}, {Key: "hook", Value: def.Name}}
	if len(def.Example) > 0 {
		decl = append(decl, yaml.MapItem{Key: "params", Value: def.Example})
	}
	doc := yaml.MapSlice{{Key: phase, Value: []yaml.MapSlice{decl}}}
	return yaml.MarshalWithOptions(doc, yaml.Indent(2), yaml.IndentSequence(true), yaml.UseLiteralStyleIfMultiline(true))
}

func findFailure(failures []hooks.LoadFailure, name string) (hooks.LoadFailure, bool) {
	for _, f := range failures {
		if f.Name == name {
			return f, true
		}
	}
	return hooks.LoadFailure{}, false
}

// phasesOf returns the phases def may run in; a definition without phases runs in all.
func phasesOf(def *hooks.Definition) []string {
	if len(def.Phases) == 0 {
		return hooks.HookPhases
	}
	return def.Phases
}

// Widths of hooks list: it fits listWidth columns.
const (
	listWidth           = 100
	sourceWidth         = 24
	phasesWidth         = 28
	minDescriptionWidth = 24
)

func phaseSummary(phases []string) string {
	if slices.Equal(phases, hooks.HookPhases) {
		return "all"
	}
	if s := strings.Join(phases, ","); len(s) <= phasesWidth {
		return s
	}
	return fmt.Sprintf("%d phases", len(phases))
}

// tail is s cut at its start to at most n runes, the cut marked: the end of a source (its
// package or file) says the most.
func tail(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return "…" + string(r[len(r)-n+1:])
}

func transactionalNote(def hooks.Definition) string {
	switch {
	case def.Transactional && def.External:
		return "yes, in a transaction of its own (a plugin never joins the phase's; a retried phase runs it again with the same idempotency key)"
	case def.Transactional:
		return "yes (commits with the phase's transaction)"
	}
	return "no (commits its own work: it must be idempotent)"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a table row on one line whatever a reason holds.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
