package observe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"riverqueue.com/riverui"
)

// NewRiverUI builds River UI (riverqueue.com/riverui) for client, to be mounted by a Server at
// RiverUIPrefix+"/", and starts its background services (the cache behind its job counts).
// They run until the returned stop function is called, not until ctx ends, so a start-up
// deadline on ctx does not stop them; riverui offers no way to wait for them, so their
// goroutines wind down shortly after stop returns.
//
// client may be insert-only (never started): River UI reads and changes jobs through the
// client's driver. The River tables must be migrated.
//
// River UI has no authentication of its own and can retry, cancel and delete jobs. The Server
// binds to loopback by default, and beyond loopback serves River UI only to operators'
// credentials (ServerOptions.Credentials).
func NewRiverUI(ctx context.Context, client *river.Client[pgx.Tx], logger *slog.Logger) (http.Handler, func(), error) {
	if client == nil {
		return nil, nil, errors.New("observe: NewRiverUI needs a River client")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h, err := riverui.NewHandler(&riverui.HandlerOpts{
		Endpoints: riverui.NewEndpoints[pgx.Tx](client, nil),
		Logger:    logger,
		Prefix:    RiverUIPrefix,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("observe: River UI: %w", err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if err := h.Start(ctx); err != nil {
		cancel()
		return nil, nil, fmt.Errorf("observe: start River UI: %w", err)
	}
	return h, cancel, nil
}
