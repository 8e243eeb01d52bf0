// Package chaos runs a randomized fault campaign against worker processes: seeded random
// schedules of crashes, cancellations and outages, each followed by a check of the guarantees
// of SPEC.md that survive any fault.
package chaos
