package observe_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/confiture-io/confiture-worker/internal/observe"
)

// The worker's wiring, minus River UI: metrics, readiness checks and the server.
func ExampleNewServer() {
	metrics := observe.NewMetrics()
	metrics.SetOutboxLag(func(context.Context) (time.Duration, error) { return 0, nil })
	health := observe.NewHealth(observe.HealthOptions{})
	health.Add("postgres", func(ctx context.Context) error { return nil }) // pool.Ping(ctx)

	srv, err := observe.NewServer(observe.ServerOptions{Addr: "127.0.0.1:0", Metrics: metrics, Health: health})
	if err != nil {
		panic(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		panic(err)
	}
	defer srv.Shutdown(context.Background()) //nolint:errcheck // example

	metrics.RunFinished(observe.RunCompleted)

	resp, err := http.Get("http://" + srv.Addr() + "/readyz") //nolint:noctx // example
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	fmt.Print(resp.StatusCode, " ", string(body))
	// Output: 200 {"status":"ready","checks":{"postgres":"ok"}}
}
