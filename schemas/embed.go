// Package schemas holds the JSON Schemas of the public contracts: request.v1.json for the
// migration requests published on confiture.requests.<target>, event.v1.json for the events
// published on confiture.events.<target>.<run>.<kind>, dryrun-report.v2.json for the data of a
// dryrun.report event (dryrun-report.v1.json for the reports of older workers), and plugin-request.v1.json and
// plugin-result.v1.json for the protocol between the worker and an external plugin (one JSON
// request on the plugin's stdin, one JSON result on its stdout).
//
// These schemas are the contract and the documentation of every field. The Go types in
// internal/contract and internal/plugin mirror them, and tests check that the two agree.
package schemas

import "embed"

// FS holds every schema file of this directory, by file name (for example "request.v1.json").
//
//go:embed *.json
var FS embed.FS
