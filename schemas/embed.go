// Package schemas holds the JSON Schemas of the public NATS contract: request.v1.json for the
// migration requests published on confiture.requests.<target>, and event.v1.json for the events
// published on confiture.events.<target>.<run>.<kind>.
//
// These schemas are the contract and the documentation of every field. The Go types in
// internal/contract mirror them, and tests check that the two agree.
package schemas

import "embed"

// FS holds every schema file of this directory, by file name (for example "request.v1.json").
//
//go:embed *.json
var FS embed.FS
