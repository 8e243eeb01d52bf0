package dryrun

// PostgreSQL's table lock modes and their conflicts, as the report computes what a lock
// blocks from them, for the tests of package dryrun_test.
var (
	LockModes = lockModes
	Conflicts = conflicts
	BlockedBy = blockedBy
)
