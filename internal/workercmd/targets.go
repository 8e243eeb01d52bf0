package workercmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/confiture-io/confiture-worker/internal/redact"
	"github.com/confiture-io/confiture-worker/internal/target"
	"github.com/confiture-io/confiture-worker/internal/targetgroup"
)

// targetsCommand is `worker targets list`: the configured targets, and each target group with
// its members as they resolve now.
func targetsCommand(o *options, stdout io.Writer) *cobra.Command {
	targetsCmd := group(&cobra.Command{Use: "targets", Short: "Inspect the targets and target groups this worker can migrate"})
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the targets, and each target group with its current members",
		Long: `List the configured targets (name, schema, tracking schema, database with its credentials
hidden), then each target group with its members. A discovered group (the schemas of a
database, the rows of a catalog query) is resolved now, as a request naming it would be: its
members are those of this moment, or the reason it cannot be resolved. The command exits 1 when a
group cannot be resolved.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.config(slog.New(slog.DiscardHandler))
			if err != nil {
				return err
			}
			cfg = cfg.WithDefaults()
			if err := cfg.Validate(); err != nil {
				return usageError{err}
			}
			set, err := target.NewSet(cfg.Targets)
			if err != nil {
				return usageError{err}
			}
			defer set.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			l := listing{Targets: []targetRow{}, Groups: []groupRow{}}
			for _, name := range set.Names() {
				t, _ := set.Get(name)
				l.Targets = append(l.Targets, targetRow{Name: name, Schema: t.Schema(), TrackingSchema: t.TrackingSchema(), Database: redact.URL(t.DSN())})
			}
			r := targetgroup.NewResolver(cfg.TargetGroups, cfg.Targets)
			failed := 0
			for _, name := range r.Names() {
				g, _ := r.Group(name)
				row := groupRow{Name: name, Kind: g.Kind(), From: r.Describe(name), Members: []targetRow{}}
				members, err := r.Resolve(ctx, name)
				if err != nil {
					row.Error, failed = err.Error(), failed+1
				}
				for _, m := range members {
					row.Members = append(row.Members, targetRow{Name: m.Name, Schema: m.Schema, TrackingSchema: m.TrackingSchema, Database: redact.URL(m.DSN)})
				}
				l.Groups = append(l.Groups, row)
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(l); err != nil {
					return err
				}
			} else {
				printTargets(stdout, l)
			}
			if failed > 0 {
				return fmt.Errorf("%d target group(s) could not be resolved", failed)
			}
			return nil
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of tables")
	targetsCmd.AddCommand(list)
	return targetsCmd
}

// listing is what `worker targets list` shows.
type listing struct {
	Targets []targetRow `json:"targets"`
	Groups  []groupRow  `json:"groups"`
}

type targetRow struct {
	Name           string `json:"name"`
	Schema         string `json:"schema,omitempty"`
	TrackingSchema string `json:"tracking_schema,omitempty"`
	Database       string `json:"database"`
}

type groupRow struct {
	Name    string      `json:"name"`
	Kind    string      `json:"kind"`
	From    string      `json:"from"`
	Members []targetRow `json:"members"`
	Error   string      `json:"error,omitempty"`
}

func printTargets(w io.Writer, l listing) {
	table := func(rows []targetRow, indent string) {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, indent+"TARGET\tSCHEMA\tTRACKING\tDATABASE")
		for _, t := range rows {
			fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\n", indent, t.Name, dash(t.Schema), dash(t.TrackingSchema), t.Database)
		}
		_ = tw.Flush()
	}
	table(l.Targets, "")
	if len(l.Groups) == 0 {
		fmt.Fprintln(w, "\nno target groups (target_groups in the configuration file)")
		return
	}
	for _, g := range l.Groups {
		fmt.Fprintf(w, "\ngroup %s (%s): %s\n", g.Name, g.Kind, g.From)
		if g.Error != "" {
			fmt.Fprintf(w, "  cannot be resolved now: %s\n", g.Error)
			continue
		}
		fmt.Fprintf(w, "  %d member(s)\n", len(g.Members))
		table(g.Members, "  ")
	}
}

func dash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
