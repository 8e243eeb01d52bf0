// Package observe is the worker's operator surface over HTTP: Prometheus metrics (Metrics),
// liveness and readiness probes (Health), River UI (NewRiverUI), and the Server that mounts
// them on one address.
//
// Nothing here knows River jobs, NATS or the phase pipeline: the worker calls the Metrics
// methods from those packages and registers its readiness checks as plain functions, so this
// package stays a leaf that any part of the worker can import.
//
// Security: neither the endpoints nor River UI authenticate anyone, and River UI can retry,
// cancel and delete jobs. The server therefore binds to loopback by default (DefaultAddr);
// operators who expose it put it behind their own authenticating proxy.
package observe
