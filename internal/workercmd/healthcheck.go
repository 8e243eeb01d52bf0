package workercmd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// healthcheckCommand is `worker healthcheck`: asks this worker's HTTP server whether it is
// ready, for a container's health check (the image has no curl or wget).
func healthcheckCommand(o *options, stdout io.Writer) *cobra.Command {
	var url string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "Exit 0 when the worker's HTTP server answers /readyz with 200, else 1 (for container health checks)",
		Long: `Ask the worker's HTTP server for /readyz (200 once the worker has started: queue database
migrated, NATS connected, consuming requests) and exit 0 when it answers 200, 1 otherwise, with
the reason on stderr. The address is --url, else the configuration's http_addr (file,
CONFITURE_HTTP_ADDR, --http-addr) on loopback when it listens on every interface.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if url == "" {
				cfg, err := o.config(slog.New(slog.DiscardHandler))
				if err != nil {
					return err
				}
				if url, err = readyURL(cfg.HTTPAddr); err != nil {
					return usageError{err}
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return usageError{fmt.Errorf("--url: %w", err)}
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("not healthy: %w", err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("not healthy: %s answered %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
			}
			fmt.Fprintf(stdout, "healthy: %s answered %s\n", url, resp.Status)
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "url", "", "the URL to ask (default: /readyz on the configured http_addr)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "give up after this long")
	return cmd
}

// readyURL is the /readyz URL of a worker listening on addr (http_addr; 127.0.0.1:9090 when
// empty), asked on loopback when addr is every interface.
func readyURL(addr string) (string, error) {
	switch addr {
	case "":
		addr = "127.0.0.1:9090"
	case "off":
		return "", fmt.Errorf("http_addr is off: this worker serves no health check; set http_addr or pass --url")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("http_addr %q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/readyz", nil
}
